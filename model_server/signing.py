"""Signed admin requests: the one implementation of the signature on the server's side.

docs/server-contract.md, "Admin requests are signed". Every `/admin/*` request carries

    X-Aliasflow-Timestamp: <unix seconds>
    X-Aliasflow-Signature: v1,<base64 HMAC-SHA256(key, "{timestamp}.{method}.{path}.{raw_body}")>

with `key` the server's admin key (`ALIASFLOW_ADMIN_TOKEN`), `path` the request target as
sent (path and `?query`). The same `signature()` signs what the server sends the
controller (model_server/link.py). The server does not import the controller; its
signing side, controller/core/serverkeys.py, is kept in step by the tests.

An accepted signature is remembered until its timestamp leaves the window, so a captured
request cannot be sent again (409). The memory is bounded: only requests that carry a
valid signature enter it, and when it is full a new one is asked to retry (429) rather
than an old one forgotten while it could still be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import time
from collections.abc import Callable

from model_server.errors import (
    ReplayedRequestError,
    SignatureRequiredError,
    TooManyRequestsError,
)

TIMESTAMP_HEADER = "X-Aliasflow-Timestamp"
SIGNATURE_HEADER = "X-Aliasflow-Signature"
WINDOW_SECONDS = 60
MAX_REMEMBERED = 10_000


def signature(key: str, timestamp: str, method: str, target: str, body: bytes) -> str:
    """The `X-Aliasflow-Signature` value of one request."""
    signed = f"{timestamp}.{method.upper()}.{target}.".encode() + body
    digest = hmac.new(key.encode(), signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode('ascii')}"


class AdminVerifier:
    """Checks admin requests against one key and refuses any signature seen before."""

    def __init__(
        self,
        key: str,
        *,
        window: int = WINDOW_SECONDS,
        max_remembered: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._window = window
        self._max = max_remembered
        self._clock = clock
        self._seen: set[str] = set()
        self._expiry: list[tuple[int, str]] = []  # (when it leaves the window, signature)

    def verify(
        self, timestamp: str | None, given: str | None, method: str, target: str, body: bytes
    ) -> None:
        """Return when the request is signed, fresh and new; else raise why not.

        401 (`SignatureRequiredError`): missing, malformed, stale or wrong; 409
        (`ReplayedRequestError`): accepted before; 429: the replay memory is full.
        """
        if not timestamp or not given:
            raise SignatureRequiredError(
                f"unsigned admin request: send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} "
                "(docs/server-contract.md); a bearer token is not accepted"
            )
        if not timestamp.isascii() or not timestamp.isdigit():
            raise SignatureRequiredError(f"{TIMESTAMP_HEADER} is not unix seconds")
        stamp = int(timestamp)
        now = self._clock()
        if abs(now - stamp) > self._window:
            raise SignatureRequiredError(
                f"{TIMESTAMP_HEADER} is more than {self._window} s away from the server's clock"
            )
        expected = signature(self._key, timestamp, method, target, body)
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise SignatureRequiredError("signature does not match this server's admin key")
        self._forget_expired(now)
        if expected in self._seen:
            raise ReplayedRequestError("this signed request was already accepted (a replay)")
        if len(self._seen) >= self._max:
            raise TooManyRequestsError("too many admin requests in the last minute; retry")
        self._seen.add(expected)
        heapq.heappush(self._expiry, (stamp + self._window, expected))

    def _forget_expired(self, now: float) -> None:
        # Past `stamp + window` the timestamp check refuses it anyway.
        while self._expiry and self._expiry[0][0] < now:
            _, old = heapq.heappop(self._expiry)
            self._seen.discard(old)
