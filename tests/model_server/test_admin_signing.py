"""Signed admin requests (docs/server-contract.md): accepted once, and only when fresh,
unaltered and signed with this server's key; a bearer token is no longer enough."""

from __future__ import annotations

import json
import time

import pytest
from starlette.testclient import TestClient

from controller.core import serverkeys
from model_server.errors import (
    ReplayedRequestError,
    SignatureRequiredError,
    TooManyRequestsError,
)
from model_server.signing import AdminVerifier, signature
from tests.fixtures_models import IrisModels
from tests.model_server.conftest import ADMIN_TOKEN, admin_request, signed_headers


def _unchanged_body(models: IrisModels) -> bytes:
    # A swap to the served version: answered at once, nothing loads.
    return json.dumps({"model_uri": models.uri(1)}).encode()


def test_a_signed_request_is_accepted_once_then_refused_as_a_replay(
    v1_client: TestClient, iris_models: IrisModels
) -> None:
    body = _unchanged_body(iris_models)
    headers = signed_headers(ADMIN_TOKEN, "POST", "/admin/model", body)
    first = v1_client.post("/admin/model", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "unchanged"
    replay = v1_client.post("/admin/model", content=body, headers=headers)
    assert replay.status_code == 409, replay.text
    assert "replay" in replay.json()["detail"]


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("unsigned", "unsigned admin request"),
        ("bearer", "unsigned admin request"),
        ("stale", "more than 60 s away"),
        ("future", "more than 60 s away"),
        ("not-seconds", "not unix seconds"),
        ("altered-body", "does not match"),
        ("other-path", "does not match"),
        ("other-method", "does not match"),
        ("other-deployment-key", "does not match"),
    ],
)
def test_a_request_that_is_not_signed_fresh_and_unaltered_is_refused(
    v1_client: TestClient, iris_models: IrisModels, case: str, detail: str
) -> None:
    body = _unchanged_body(iris_models)
    now = int(time.time())
    headers = signed_headers(ADMIN_TOKEN, "POST", "/admin/model", body, stamp=now)
    if case == "unsigned":
        headers = {}
    elif case == "bearer":
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    elif case in ("stale", "future"):
        headers = signed_headers(
            ADMIN_TOKEN, "POST", "/admin/model", body, stamp=now + (-61 if case == "stale" else 61)
        )
    elif case == "not-seconds":
        headers[serverkeys.TIMESTAMP_HEADER] = "soon"
    elif case == "altered-body":
        body = body.replace(b"/1", b"/2")
    elif case == "other-path":
        headers = signed_headers(ADMIN_TOKEN, "POST", "/admin/traffic", body, stamp=now)
    elif case == "other-method":
        headers = signed_headers(ADMIN_TOKEN, "PUT", "/admin/model", body, stamp=now)
    elif case == "other-deployment-key":
        secret = "the-controllers-secret"
        assert serverkeys.deployment_key(secret, "other") != ADMIN_TOKEN
        headers = signed_headers(
            serverkeys.deployment_key(secret, "other"), "POST", "/admin/model", body, stamp=now
        )
    response = v1_client.post("/admin/model", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert detail in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Aliasflow-Signature"


def test_a_key_for_one_deployment_does_not_work_on_another(
    app_client: object, iris_models: IrisModels
) -> None:
    secret = "controller-secret"
    key_a = serverkeys.deployment_key(secret, "iris-a")
    key_b = serverkeys.deployment_key(secret, "iris-b")
    assert key_a != key_b
    server_b = app_client(admin_token=key_b)  # type: ignore[operator]
    body = {"model_uri": iris_models.uri(1)}
    assert admin_request(server_b, "POST", "/admin/model", body, key=key_a).status_code == 401
    assert admin_request(server_b, "POST", "/admin/model", body, key=key_b).status_code == 200


def test_the_servers_signature_is_the_controllers() -> None:
    body = b'{"model_uri": "models:/iris/2"}'
    assert signature("k", "1700000000", "post", "/admin/model?x=1", body) == (
        serverkeys.signature("k", "1700000000", "POST", "/admin/model?x=1", body)
    )


def _verifier(now: list[float], remembered: int = 3) -> AdminVerifier:
    return AdminVerifier("k", max_remembered=remembered, clock=lambda: now[0])


def _sign(stamp: int, body: bytes = b"{}") -> tuple[str, str]:
    return str(stamp), signature("k", str(stamp), "POST", "/admin/model", body)


def test_accepted_signatures_are_forgotten_once_out_of_the_window() -> None:
    now = [1_000_000.0]
    verifier = _verifier(now)
    stamp, sig = _sign(1_000_000)
    verifier.verify(stamp, sig, "POST", "/admin/model", b"{}")
    with pytest.raises(ReplayedRequestError):
        verifier.verify(stamp, sig, "POST", "/admin/model", b"{}")
    now[0] += 61
    # Out of the window: forgotten, and refused as stale instead.
    with pytest.raises(SignatureRequiredError, match="60 s away"):
        verifier.verify(stamp, sig, "POST", "/admin/model", b"{}")
    verifier.verify(*_sign(1_000_061), "POST", "/admin/model", b"{}")
    assert len(verifier._seen) == 1


def test_the_replay_memory_is_bounded() -> None:
    now = [1_000_000.0]
    verifier = _verifier(now, remembered=3)
    for i in range(3):
        verifier.verify(
            *_sign(1_000_000, f'{{"i": {i}}}'.encode()),
            "POST",
            "/admin/model",
            f'{{"i": {i}}}'.encode(),
        )
    # Full: a new request is asked to retry rather than an old one forgotten too soon.
    with pytest.raises(TooManyRequestsError):
        verifier.verify(*_sign(1_000_000, b"{}"), "POST", "/admin/model", b"{}")
    now[0] += 61
    verifier.verify(*_sign(1_000_061, b"{}"), "POST", "/admin/model", b"{}")
    assert len(verifier._seen) == 1
