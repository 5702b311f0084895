"""Inbound deliveries (MLflow and GitHub webhooks): how one is refused, and body parsing.

A refusal carries the HTTP status the route answers and a reason from a fixed set, which
is also the metrics label; the signature schemes themselves live with their senders
(`registry/webhook.py`, `manifests/git_webhook.py`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

BodyModel = TypeVar("BodyModel", bound=BaseModel)
SIGNATURE_VERSION = "v1"


def v1_digest(secret: str, delivery_id: str, timestamp: str, raw_body: bytes) -> bytes:
    """HMAC-SHA256 over `{delivery_id}.{timestamp}.{raw_body}`: MLflow's webhook scheme,
    which our own outgoing notifications use too, so one verifier serves both."""
    signed = f"{delivery_id}.{timestamp}.".encode() + raw_body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()


def v1_signature(secret: str, delivery_id: str, timestamp: str, raw_body: bytes) -> str:
    """The header value: `v1,<base64 digest>`."""
    digest = v1_digest(secret, delivery_id, timestamp, raw_body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


class RejectReason(StrEnum):
    MISSING_HEADER = "missing_header"
    MALFORMED_SIGNATURE = "malformed_signature"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    MALFORMED_BODY = "malformed_body"


class WebhookRejected(Exception):  # noqa: N818 - a rejection, not an error of ours
    """A delivery we refuse; `status_code` is what the HTTP route answers."""

    def __init__(self, reason: RejectReason, status_code: int, detail: str = "") -> None:
        self.reason = reason
        self.status_code = status_code
        self.detail = detail or reason.value
        super().__init__(f"{status_code} {reason.value}: {self.detail}")


def json_body(raw_body: bytes) -> Any:
    """The parsed body of a verified delivery; not JSON is a 400."""
    try:
        return json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected(
            RejectReason.MALFORMED_BODY, 400, f"body is not JSON: {exc}"
        ) from None


def validated_body(model: type[BodyModel], payload: Any) -> BodyModel:
    """`payload` as `model`; every missing or wrong field is named in the 400."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise WebhookRejected(RejectReason.MALFORMED_BODY, 400, problems) from None
