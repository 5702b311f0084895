"""Client API keys (`ALIASFLOW_API_KEYS`) on every prediction route of the three protocols,
fast lane or not; probes and metadata open; rotation through a signed admin request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from controller.core.serverkeys import api_keys_fingerprint
from model_server.cli import describe_settings_error
from model_server.settings import ServerSettings
from tests.fixtures_models import COLUMNS, IrisModels
from tests.model_server.conftest import ADMIN_TOKEN, AppFactory, admin_request

ROW = [5.1, 3.5, 1.4, 0.2]
KEYS = ["alpha-0123456789", "beta-9876543210"]


def _routes(model: str) -> list[tuple[str, dict[str, Any]]]:
    v2 = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    return [
        ("/predict", {"instances": [ROW]}),
        ("/invocations", {"dataframe_split": {"columns": COLUMNS, "data": [ROW]}}),
        (f"/v2/models/{model}/infer", v2),
        (f"/v2/models/{model}/versions/1/infer", v2),
    ]


@pytest.fixture(params=[True, False], ids=["fast-lane", "fastapi-routes"])
def keyed(request: pytest.FixtureRequest, app_client: AppFactory) -> TestClient:
    return app_client(admin_token=ADMIN_TOKEN, api_keys=",".join(KEYS), fast_lane=request.param)


def _statuses(client: TestClient, model: str, headers: dict[str, str]) -> list[int]:
    return [
        client.post(path, json=body, headers=headers).status_code for path, body in _routes(model)
    ]


def test_every_prediction_route_refuses_a_request_without_a_configured_key(
    keyed: TestClient, iris_models: IrisModels
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"X-Api-Key": "nope"},
        {"Authorization": f"Basic {KEYS[0]}"},
    ):
        assert _statuses(keyed, iris_models.name, headers) == [401] * 4, headers
    refused = keyed.post("/predict", json={"instances": [ROW]})
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "requires an API key" in refused.json()["detail"]
    # Each protocol answers in its own error format.
    assert keyed.post("/invocations", json={}).json()["error_code"] == "UNAUTHENTICATED"
    assert "error" in keyed.post(f"/v2/models/{iris_models.name}/infer", json={}).json()


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_each_configured_key_is_accepted_in_either_header(
    keyed: TestClient, iris_models: IrisModels, key: str, header: str
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-Api-Key": key}
    assert _statuses(keyed, iris_models.name, headers) == [200] * 4


def test_probes_metadata_and_metrics_stay_open(keyed: TestClient, iris_models: IrisModels) -> None:
    for path in (
        "/livez",
        "/readyz",
        "/health",
        "/metadata",
        "/metrics",
        "/v2/health/ready",
        f"/v2/models/{iris_models.name}",
    ):
        assert keyed.get(path).status_code == 200, path
    assert keyed.get("/readyz").json()["api_keys"] == api_keys_fingerprint(KEYS)


def test_keys_rotate_without_a_restart(app_client: AppFactory, iris_models: IrisModels) -> None:
    client = app_client(admin_token=ADMIN_TOKEN, api_keys=KEYS[0])
    old, new = {"X-Api-Key": KEYS[0]}, {"X-Api-Key": "gamma-0123456789"}
    assert client.post("/predict", json={"instances": [ROW]}, headers=old).status_code == 200

    rotated = admin_request(client, "PUT", "/admin/api-keys", {"keys": ["gamma-0123456789"]})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json() == {
        "required": True,
        "count": 1,
        "api_keys": api_keys_fingerprint(["gamma-0123456789"]),
    }
    assert "gamma" not in rotated.text
    assert _statuses(client, iris_models.name, old) == [401] * 4
    assert _statuses(client, iris_models.name, new) == [200] * 4
    assert client.get("/readyz").json()["api_keys"] == api_keys_fingerprint(["gamma-0123456789"])

    lifted = admin_request(client, "PUT", "/admin/api-keys", {"keys": []})
    assert lifted.json()["required"] is False
    assert _statuses(client, iris_models.name, {}) == [200] * 4
    assert client.get("/readyz").json()["api_keys"] == ""


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"keys": ["has space"]}, "position 0 are empty or contain whitespace"),
        ({"keys": ["ok-key", "a,b"]}, "position 1"),
        ({"keys": [""]}, "position 0"),
        ({"keys": "single"}, "keys: Input should be a valid list"),
        ({"key": ["x"]}, "keys: Field required"),
    ],
)
def test_a_bad_key_list_is_refused_and_the_old_keys_stay(
    app_client: AppFactory, body: dict[str, Any], detail: str
) -> None:
    client = app_client(admin_token=ADMIN_TOKEN, api_keys=KEYS[0])
    response = admin_request(client, "PUT", "/admin/api-keys", body)
    assert response.status_code == 422
    assert detail in response.json()["detail"]
    assert "has space" not in response.text
    ok = client.post("/predict", json={"instances": [ROW]}, headers={"X-Api-Key": KEYS[0]})
    assert ok.status_code == 200


def test_rotation_is_a_signed_admin_request(app_client: AppFactory) -> None:
    client = app_client(admin_token=ADMIN_TOKEN, api_keys=KEYS[0])
    unsigned = client.put("/admin/api-keys", json={"keys": []})
    assert unsigned.status_code == 401
    bearer = client.put(
        "/admin/api-keys", json={"keys": []}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert bearer.status_code == 401
    assert client.post("/predict", json={"instances": [ROW]}).status_code == 401


def test_without_keys_prediction_is_open(v1_client: TestClient) -> None:
    assert v1_client.post("/predict", json={"instances": [ROW]}).status_code == 200
    assert v1_client.get("/readyz").json()["api_keys"] == ""


def test_a_key_with_whitespace_fails_at_boot_without_showing_it() -> None:
    with pytest.raises(ValidationError) as failure:
        ServerSettings(model_uri="models:/iris/1", api_keys="good-key, bad key")
    message = describe_settings_error(failure.value)
    assert "ALIASFLOW_API_KEYS: Value error, key 1 contains whitespace" in message
    assert "bad key" not in message


def test_keys_over_real_http_with_the_fast_lane(served_keyed: str) -> None:
    refused = httpx.post(f"{served_keyed}/predict", json={"instances": [ROW]})
    accepted = httpx.post(
        f"{served_keyed}/predict", json={"instances": [ROW]}, headers={"X-Api-Key": KEYS[1]}
    )
    assert (refused.status_code, accepted.status_code) == (401, 200)


@pytest.fixture(scope="module")
def served_keyed(iris_models: IrisModels, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from controller.runtimes.netutil import stop_process
    from tests.model_server.conftest import start_v1

    server = start_v1(
        iris_models,
        tmp_path_factory.mktemp("keyed") / "server.log",
        ALIASFLOW_API_KEYS=",".join(KEYS),
    )
    try:
        yield server.url
    finally:
        stop_process(server.process)
