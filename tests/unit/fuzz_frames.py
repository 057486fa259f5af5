"""Coverage-guided fuzzing of the framed data plane's parsers with atheris (optional).

``python -m tests.unit.fuzz_frames [-max_total_time=60] [corpus dir]`` (needs ``pip
install atheris``; not part of the test run, which fuzzes the same parsers with
Hypothesis in test_frames.py). The first input byte picks the parser, the rest is its
payload; any exception other than FrameError is a finding.
"""

from __future__ import annotations

import contextlib
import sys

import atheris  # type: ignore[import-not-found, import-untyped, unused-ignore]

with atheris.instrument_imports():
    from common.frames import (
        FrameError,
        decode_ack,
        decode_error,
        decode_header,
        decode_hello,
        decode_pages,
        decode_pages_request,
        decode_record,
    )

PARSERS = (decode_hello, decode_ack, decode_pages_request, decode_pages, decode_error,
           decode_record)


def one_input(data: bytes) -> None:
    if not data:
        return
    parse, payload = PARSERS[data[0] % len(PARSERS)], data[1:]
    with contextlib.suppress(FrameError):
        parse(payload)
    if len(payload) >= 5:
        with contextlib.suppress(FrameError):
            decode_header(payload[:5])


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
