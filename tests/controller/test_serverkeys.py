"""Per-deployment server keys and the link signature (controller/core/serverkeys.py)."""

from __future__ import annotations

import time

import pytest

from controller.core.serverkeys import Refusal, check_signature, deployment_key, signature


def test_each_deployment_has_its_own_key_and_each_secret_its_own_keys() -> None:
    keys = {deployment_key(s, n) for s in ("secret-a", "secret-b") for n in ("iris", "wine")}
    assert len(keys) == 4
    assert deployment_key("secret-a", "iris") == deployment_key("secret-a", "iris")
    key = deployment_key("secret-a", "iris")
    # A bearer token and an environment value: URL-safe, no padding, nothing to quote.
    assert key.replace("-", "").replace("_", "").isalnum()
    assert "secret-a" not in key


def sign(key: str, stamp: int, method: str = "GET", target: str = "/p", body: bytes = b"") -> str:
    return signature(key, str(stamp), method, target, body)


@pytest.mark.parametrize(
    ("timestamp", "given", "method", "target", "body", "refusal"),
    [
        (None, "v1,x", "GET", "/p", b"", Refusal.MISSING),
        ("123", None, "GET", "/p", b"", Refusal.MISSING),
        ("soon", "v1,x", "GET", "/p", b"", Refusal.MALFORMED_TIMESTAMP),
        ("0", "SIGNED", "GET", "/p", b"", Refusal.STALE),
        ("NOW", "SIGNED", "POST", "/p", b"", Refusal.BAD_SIGNATURE),  # another method
        ("NOW", "SIGNED", "GET", "/p?revision=r2", b"", Refusal.BAD_SIGNATURE),  # another target
        ("NOW", "SIGNED", "GET", "/p", b"{}", Refusal.BAD_SIGNATURE),  # another body
        ("NOW", "OTHER-KEY", "GET", "/p", b"", Refusal.BAD_SIGNATURE),
        ("NOW", "SIGNED", "GET", "/p", b"", None),
    ],
)
def test_a_signature_covers_time_method_target_and_body(
    timestamp: str | None,
    given: str | None,
    method: str,
    target: str,
    body: bytes,
    refusal: Refusal | None,
) -> None:
    key = deployment_key("secret", "iris")
    now = int(time.time())
    stamp = str(now) if timestamp == "NOW" else timestamp
    if given == "SIGNED":
        given = sign(key, now)
    elif given == "OTHER-KEY":
        given = sign(deployment_key("secret", "wine"), now)
    assert check_signature(key, stamp, given, method, target, body) is refusal


def test_the_window_is_sixty_seconds_either_way() -> None:
    key = deployment_key("secret", "iris")
    now = 1_000_000.0
    for skew, ok in ((-60, True), (60, True), (-61, False), (61, False)):
        stamp = int(now + skew)
        verdict = check_signature(key, str(stamp), sign(key, stamp), "GET", "/p", b"", now=now)
        assert (verdict is None) is ok, skew
