"""Keeps a compute's short-lived token fresh for as long as the compute runs.

Compute tokens live an hour (strata/local/computes.py), so a leaked one is soon useless
and revoking one ends its compute's access within that time. The mount daemon's heartbeat
calls ``renew_if_due`` on every beat; once half of the token's lifetime has passed it asks
the page server for a successor (RenewToken, authenticated by the current token), which the
client uses for every later call and stream. A failed renewal is retried on the next beat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from common.bearer import unverified_lifetime
from common.client import ClientError, StrataClient

log = logging.getLogger(__name__)


class TokenRenewal:
    """Renews ``client``'s token for ``tenant`` once half its lifetime has passed."""

    def __init__(self, client: StrataClient, tenant: str, token: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._tenant = tenant
        self._clock = clock
        issued, expires = unverified_lifetime(token)
        self._renew_at = issued + (expires - issued) / 2
        self.renewals = 0

    def renew_if_due(self) -> None:
        """Renew the token if half its lifetime has passed; log (and retry later) a failure."""
        if self._clock() < self._renew_at:
            return
        try:
            response = self._client.renew_token(self._tenant)
        except ClientError as exc:
            log.warning("token renewal failed (will retry): %s", exc.message)
            return
        issued, expires = unverified_lifetime(response.token)
        self._renew_at = issued + (expires - issued) / 2
        self.renewals += 1
        log.info("renewed the compute's token: %s, valid until %s", response.token_id,
                 time.strftime("%H:%M:%S", time.localtime(expires)))
