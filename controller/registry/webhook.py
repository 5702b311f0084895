"""Verifying and parsing MLflow webhook deliveries, as pure functions.

The HTTP route (`POST /webhooks/mlflow`) stays thin: it hands the raw body and three
headers to `verify_mlflow_signature`, then the body to `parse_alias_event`, and maps a
`WebhookRejected` to its status code. No FastAPI here, so this is tested without a server.

What MLflow sends (mlflow/webhooks/delivery.py, `_send_webhook_request` and
`_generate_hmac_signature`, MLflow 3.3+; checked against a real delivery in the tests):

    X-MLflow-Delivery-Id: <uuid4>
    X-MLflow-Timestamp:   <unix seconds>
    X-MLflow-Signature:   v1,<base64(HMAC-SHA256(secret, f"{delivery_id}.{timestamp}.{body}"))>

The signature covers the exact body bytes, so verification must run on the raw body,
before any JSON parsing. The body's own `"timestamp"` is an ISO-8601 string and is not
what is signed; the header timestamp is the one checked for freshness.

Status codes (chosen here, documented for the route):
    401  anything that stops us authenticating the delivery: a missing or malformed
         signature, delivery id or timestamp header; a signature that does not match; a
         timestamp older or further in the future than `max_age_seconds` (a replayed or
         forged delivery is an authentication failure, not a malformed request).
    400  the body, once authenticated, is not JSON or not an MLflow event envelope.
MLflow only retries 429/5xx, so neither makes it re-send.

A webhook is only a hint: the reconciler re-reads MLflow and never trusts `version`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from controller.core.deliveries import (
    SIGNATURE_VERSION,
    RejectReason,
    WebhookRejected,
    json_body,
    v1_digest,
    v1_signature,
    validated_body,
)

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
DEFAULT_MAX_AGE_SECONDS = 300


ALIAS_EVENTS = frozenset({"model_version_alias.created", "model_version_alias.deleted"})


class AliasEventData(BaseModel):
    # Unknown keys are ignored: MLflow may add fields, and this is someone else's schema.
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    alias: str
    # Absent on `deleted`; informational only, the reconciler resolves the alias itself.
    version: str | None = None


class AliasEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    entity: Literal["model_version_alias"]
    action: Literal["created", "deleted"]
    timestamp: datetime
    data: AliasEventData
    workspace: str | None = None

    @property
    def event(self) -> str:
        return f"{self.entity}.{self.action}"

    @property
    def model_name(self) -> str:
        return self.data.name

    @property
    def alias(self) -> str:
        return self.data.alias


def sign_mlflow_payload(secret: str, delivery_id: str, timestamp: str, raw_body: bytes) -> str:
    """The `X-MLflow-Signature` value MLflow would send; for tests and `aliasflow` tooling."""
    return v1_signature(secret, delivery_id, timestamp, raw_body)


def verify_mlflow_signature(
    secret: str,
    delivery_id: str | None,
    timestamp: str | None,
    raw_body: bytes,
    signature_header: str | None,
    now: float,
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS,
) -> None:
    """Accept (return None) or raise `WebhookRejected`; `now` is passed in to stay pure.

    Header values may be None or empty when the request lacked them. Replay of a fresh,
    valid delivery is not caught here: the route must also ignore delivery ids it has
    already seen (they are persisted by the store).
    """
    if not secret:
        # A receiver without a secret would accept anything; refuse rather than pretend.
        raise ValueError("an MLflow webhook secret is required to verify deliveries")
    signature_header = _required(SIGNATURE_HEADER, signature_header)
    delivery_id = _required(DELIVERY_ID_HEADER, delivery_id)
    timestamp = _required(TIMESTAMP_HEADER, timestamp)

    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRejected(
            RejectReason.MALFORMED_TIMESTAMP, 401, f"{TIMESTAMP_HEADER} is not unix seconds"
        ) from None
    if now - sent_at > max_age_seconds:
        raise WebhookRejected(
            RejectReason.STALE_TIMESTAMP, 401, f"timestamp is {int(now - sent_at)} s old"
        )
    if sent_at - now > max_age_seconds:
        raise WebhookRejected(
            RejectReason.FUTURE_TIMESTAMP, 401, f"timestamp is {int(sent_at - now)} s ahead"
        )

    expected = v1_digest(secret, delivery_id, timestamp, raw_body)
    candidates = _v1_signatures(signature_header)
    # Compare against every candidate without short-circuiting on the first mismatch.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate, expected)
    if not matched:
        raise WebhookRejected(RejectReason.BAD_SIGNATURE, 401, "signature does not match")


def _required(header: str, value: str | None) -> str:
    if not value:
        raise WebhookRejected(RejectReason.MISSING_HEADER, 401, f"missing {header}")
    return value


def _v1_signatures(header: str) -> list[bytes]:
    """Decode `v1,<b64>` entries; Standard Webhooks allows several, space-separated."""
    found: list[bytes] = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION or not encoded:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not found:
        raise WebhookRejected(
            RejectReason.MALFORMED_SIGNATURE, 401, f"{SIGNATURE_HEADER} has no v1 signature"
        )
    return found


def parse_alias_event(raw_body: bytes) -> AliasEvent | None:
    """The alias event in an (already verified) body, or None for events we do not act on.

    Other MLflow events (model versions, tags, prompts) are accepted and ignored, so the
    route answers 202 and MLflow does not log failures for a webhook shared with others.
    """
    payload = json_body(raw_body)
    if not isinstance(payload, dict):
        raise WebhookRejected(RejectReason.MALFORMED_BODY, 400, "body is not a JSON object")
    entity, action = payload.get("entity"), payload.get("action")
    if not isinstance(entity, str) or not isinstance(action, str):
        raise WebhookRejected(
            RejectReason.MALFORMED_BODY, 400, "body lacks the string fields entity and action"
        )
    if f"{entity}.{action}" not in ALIAS_EVENTS:
        return None
    return validated_body(AliasEvent, payload)
