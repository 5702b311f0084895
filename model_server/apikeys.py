"""Client keys for the prediction routes (`ALIASFLOW_API_KEYS`), rotated without a restart.

With keys configured, every inference request of the three protocols (`POST /predict`,
`POST /invocations`, `POST /v2/models/{name}[/versions/{v}]/infer`, fast lane or not)
must carry one of them, as `Authorization: Bearer <key>` or `X-Api-Key: <key>`; anything
else is a 401 with `WWW-Authenticate: Bearer`. Probes (`/livez`, `/readyz`, `/health`,
`/v2/health/*`), metadata and `/metrics` stay open: the platform's probes and the
controller read them, and they carry no prediction (docs/security.md).

`ALIASFLOW_API_KEYS` is a comma-separated list (spaces around a key are ignored; a key
cannot contain a comma or whitespace). `PUT /admin/api-keys` (a signed admin request)
replaces the list in place; an empty list turns the requirement off. Only SHA-256
digests of the keys are kept, so a comparison reveals nothing through its timing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from model_server.errors import UnauthorizedError, error_response, protocol_of

_PREDICTION_PATHS = ("/predict", "/invocations")
_FINGERPRINT_CONTEXT = b"aliasflow/v1/api-keys\x00"


class InvalidApiKeysError(ValueError):
    """A key list that cannot be used (a key with whitespace or a comma)."""


def parse_keys(raw: str | None) -> list[str]:
    """`ALIASFLOW_API_KEYS` as a list; empty entries are ignored."""
    return [key.strip() for key in (raw or "").split(",") if key.strip()]


def is_prediction(method: str, path: str) -> bool:
    if method != "POST":
        return False
    return path in _PREDICTION_PATHS or (path.startswith("/v2/models/") and path.endswith("/infer"))


def _usable(key: str) -> bool:
    return bool(key) and not any(c.isspace() or c == "," for c in key)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """The keys prediction requests must carry; none configured: no requirement."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._digests: frozenset[bytes] = frozenset()
        self.replace(keys)

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def replace(self, keys: Iterable[str]) -> None:
        """Swap the whole list at once (one assignment: a request sees old or new)."""
        listed = list(keys)
        bad = [i for i, key in enumerate(listed) if not _usable(key)]
        if bad:
            raise InvalidApiKeysError(
                f"API key(s) at position {', '.join(map(str, bad))} are empty or contain "
                "whitespace or a comma"
            )
        self._digests = frozenset(_digest(key) for key in listed)

    def fingerprint(self) -> str:
        """What `/readyz` reports as `api_keys` ("" for none): the controller compares it
        with the keys it wants (controller/core/serverkeys.py computes the same), so a
        server that restarted on older keys gets the current ones again. A truncated
        SHA-256 over the keys' own digests: use random keys, a short one could be guessed."""
        if not self._digests:
            return ""
        return hashlib.sha256(_FINGERPRINT_CONTEXT + b"".join(sorted(self._digests))).hexdigest()[
            :16
        ]

    def check(self, headers: Mapping[bytes, bytes]) -> None:
        """Raise 401 unless a configured key is in `Authorization` or `X-Api-Key`."""
        if not self._digests:
            return
        given = headers.get(b"x-api-key")
        if given is None:
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            given = token.strip() if scheme.lower() == b"bearer" else None
        if not given:
            raise UnauthorizedError(
                "this model server requires an API key: send 'Authorization: Bearer <key>' "
                "or 'X-Api-Key: <key>'"
            )
        if hashlib.sha256(given.strip()).digest() not in self._digests:
            raise UnauthorizedError("unknown API key")


class ApiKeyGate:
    """ASGI middleware in front of the fast lane and the routes alike: one check for
    every prediction route of every protocol."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.keys.required
            and is_prediction(scope["method"], scope["path"])
        ):
            try:
                self.keys.check(dict(scope["headers"]))
            except UnauthorizedError as exc:
                await error_response(exc, protocol_of(scope["path"]))(scope, receive, send)
                return
        await self.app(scope, receive, send)
