"""The checked-in generated gRPC code matches proto/strata.proto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("strata_pb2.py", "strata_pb2.pyi", "strata_pb2_grpc.py")


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    (tmp_path / "proto").mkdir()
    shutil.copy(ROOT / "proto" / "strata.proto", tmp_path / "proto" / "strata.proto")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.",
         "--grpc_python_out=.", "--pyi_out=.", "proto/strata.proto"],
        cwd=tmp_path, check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "proto" / name).read_text()
        assert fresh == (ROOT / "proto" / name).read_text(), (
            f"proto/{name} is stale: run ./dev proto and commit the result"
        )
