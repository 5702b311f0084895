"""Verifying and parsing GitHub push webhooks, as pure functions.

`POST /webhooks/git` turns a push into an immediate `ManifestSource.pull()` instead of
waiting for the git poll interval. GitHub signs the raw body with the webhook secret:
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`. There is no timestamp in
the scheme, so a replay of a real push can only cause an extra pull, which is harmless
(pull is idempotent). Only the fields we act on are modelled.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import BaseModel, ConfigDict

from controller.core.deliveries import (
    RejectReason,
    WebhookRejected,
    json_body,
    validated_body,
)

GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
GITHUB_EVENT_HEADER = "X-GitHub-Event"
_PREFIX = "sha256="


def sign_github_payload(secret: str, raw_body: bytes) -> str:
    """The header value GitHub would send; for tests and local tooling."""
    digest = hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    return f"{_PREFIX}{digest}"


def verify_github_signature(secret: str, raw_body: bytes, header: str | None) -> None:
    """Accept (return None) or raise `WebhookRejected` with 401."""
    if not secret:
        raise ValueError("a git webhook secret is required to verify deliveries")
    if not header:
        raise WebhookRejected(
            RejectReason.MISSING_HEADER, 401, f"missing {GITHUB_SIGNATURE_HEADER}"
        )
    if not header.startswith(_PREFIX):
        raise WebhookRejected(
            RejectReason.MALFORMED_SIGNATURE, 401, f"{GITHUB_SIGNATURE_HEADER} is not sha256=..."
        )
    expected = sign_github_payload(secret, raw_body)
    if not hmac.compare_digest(header.strip().lower().encode(), expected.encode()):
        raise WebhookRejected(RejectReason.BAD_SIGNATURE, 401, "signature does not match")


class PushRepository(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    full_name: str
    clone_url: str | None = None


class PushEvent(BaseModel):
    """The part of GitHub's push payload the controller needs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ref: str
    after: str
    repository: PushRepository

    @property
    def branch(self) -> str | None:
        """`main` for `refs/heads/main`; None for tags and other refs."""
        prefix = "refs/heads/"
        return self.ref[len(prefix) :] if self.ref.startswith(prefix) else None


def parse_push_event(raw_body: bytes) -> PushEvent:
    """Parse a verified push body; malformed JSON or missing fields are a 400."""
    return validated_body(PushEvent, json_body(raw_body))
