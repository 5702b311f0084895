"""GitHub push webhook: signature verification and the fields we read."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from controller.core.deliveries import RejectReason, WebhookRejected
from controller.manifests.git_webhook import (
    parse_push_event,
    sign_github_payload,
    verify_github_signature,
)

SECRET = "It's a Secret to Everybody"
BODY = json.dumps(
    {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": "a" * 40,
        "repository": {
            "full_name": "acme/deployments",
            "clone_url": "https://github.com/acme/deployments.git",
        },
        "pusher": {"name": "someone"},
    }
).encode()


def test_matches_githubs_documented_example() -> None:
    # From GitHub's "Validating webhook deliveries" docs.
    assert sign_github_payload(SECRET, b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_a_correct_signature_is_accepted() -> None:
    expected = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    verify_github_signature(SECRET, BODY, expected)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, RejectReason.MISSING_HEADER),
        ("", RejectReason.MISSING_HEADER),
        ("sha1=abc", RejectReason.MALFORMED_SIGNATURE),
        ("sha256=" + "0" * 64, RejectReason.BAD_SIGNATURE),
        (sign_github_payload("wrong", BODY), RejectReason.BAD_SIGNATURE),
        (sign_github_payload(SECRET, BODY + b" "), RejectReason.BAD_SIGNATURE),
    ],
)
def test_bad_signatures_are_401(header: str | None, reason: RejectReason) -> None:
    with pytest.raises(WebhookRejected) as caught:
        verify_github_signature(SECRET, BODY, header)
    assert (caught.value.status_code, caught.value.reason) == (401, reason)


def test_parse_push_event() -> None:
    event = parse_push_event(BODY)
    assert event.branch == "main"
    assert event.after == "a" * 40
    assert event.repository.full_name == "acme/deployments"


def test_tag_pushes_have_no_branch() -> None:
    body = json.loads(BODY)
    body["ref"] = "refs/tags/v1"
    assert parse_push_event(json.dumps(body).encode()).branch is None


@pytest.mark.parametrize("raw", [b"nope", b"{}", b'{"ref": "refs/heads/main"}', b"[]"])
def test_malformed_push_bodies_are_400(raw: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_push_event(raw)
    assert caught.value.status_code == 400
