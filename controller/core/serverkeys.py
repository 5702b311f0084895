"""The per-deployment key a model server holds, and the signature its requests carry.

docs/server-contract.md: the controller derives one key per deployment from its own
secret and the deployment's name, so one leaked key exposes one deployment, and a server
signs what it sends the controller (the optional link: which version to serve, what it
serves) with that key:

    X-Aliasflow-Timestamp: <unix seconds>
    X-Aliasflow-Signature: v1,<base64 HMAC-SHA256(key, "{timestamp}.{method}.{path}.{raw_body}")>

`path` is the request target as sent: the path, and `?query` when there is one. The
model server implements the signing side in `model_server/link.py` (it does not import
the controller); `tests/model_server/test_link.py` keeps the two in step.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable
from enum import StrEnum

SIGNATURE_VERSION = "v1"
TIMESTAMP_HEADER = "X-Aliasflow-Timestamp"
SIGNATURE_HEADER = "X-Aliasflow-Signature"
# How far a signed timestamp may be from the controller's clock, either way.
MAX_SKEW_SECONDS = 60
_KEY_CONTEXT = b"aliasflow/v1/deployment-key\x00"
_KEYS_CONTEXT = b"aliasflow/v1/api-keys\x00"


def deployment_key(secret: str, name: str) -> str:
    """The key of deployment `name`: HMAC-SHA256 of the name under the controller's
    secret, URL-safe base64 (it travels as a bearer token and an environment value)."""
    digest = hmac.new(secret.encode(), _KEY_CONTEXT + name.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signature(key: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The `X-Aliasflow-Signature` value for one request."""
    signed = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    digest = hmac.new(key.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def api_keys_fingerprint(keys: Iterable[str]) -> str:
    """What a model server reports (`"api_keys"` in /readyz) for the client keys it holds,
    "" for none: a truncated SHA-256 over the keys' own SHA-256 digests, so the controller
    sees which keys a server holds without the keys being shown (use random keys: a short
    one could be guessed from it). `model_server/apikeys.py` computes the same."""
    digests = sorted(hashlib.sha256(key.encode()).digest() for key in keys)
    if not digests:
        return ""
    return hashlib.sha256(_KEYS_CONTEXT + b"".join(digests)).hexdigest()[:16]


class Refusal(StrEnum):
    """Why a signed request is refused (all answered 401, the reason in the detail)."""

    MISSING = "missing X-Aliasflow-Timestamp or X-Aliasflow-Signature"
    MALFORMED_TIMESTAMP = "X-Aliasflow-Timestamp is not unix seconds"
    STALE = "X-Aliasflow-Timestamp is more than 60 s away from the controller's clock"
    BAD_SIGNATURE = "signature does not match this deployment's key"


def check_signature(
    key: str,
    timestamp: str | None,
    given: str | None,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
) -> Refusal | None:
    """None when the request is signed by `key` within the window, else why not."""
    if not timestamp or not given:
        return Refusal.MISSING
    try:
        stamp = int(timestamp)
    except ValueError:
        return Refusal.MALFORMED_TIMESTAMP
    if abs((time.time() if now is None else now) - stamp) > MAX_SKEW_SECONDS:
        return Refusal.STALE
    expected = signature(key, timestamp, method, path, body)
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return Refusal.BAD_SIGNATURE
    return None
