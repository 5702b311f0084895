"""The model server in-process (ASGI, lifespan running) against real MLflow models."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.fixtures_models import COLUMNS, BadVersions, IrisModels
from tests.model_server.conftest import ADMIN_TOKEN, AppFactory, admin_request

ROW = [5.1, 3.5, 1.4, 0.2]
RECORD = dict(zip(COLUMNS, ROW, strict=True))


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [ROW, [6.7, 3.0, 5.2, 2.3]]},
        {"records": [RECORD, dict(zip(COLUMNS, [6.7, 3.0, 5.2, 2.3], strict=True))]},
        {"dataframe_split": {"columns": COLUMNS, "data": [ROW, [6.7, 3.0, 5.2, 2.3]]}},
        {
            "dataframe_split": {
                "columns": list(reversed(COLUMNS)),
                "data": [list(reversed(ROW)), [2.3, 5.2, 3.0, 6.7]],
                "index": [0, 1],
            }
        },
        {"dataframe_records": [RECORD, dict(zip(COLUMNS, [6.7, 3.0, 5.2, 2.3], strict=True))]},
        {"inputs": [ROW, [6.7, 3.0, 5.2, 2.3]]},
        {"inputs": [RECORD, dict(zip(COLUMNS, [6.7, 3.0, 5.2, 2.3], strict=True))]},
        {"inputs": {c: [v, w] for c, v, w in zip(COLUMNS, ROW, [6.7, 3.0, 5.2, 2.3], strict=True)}},
        {"instances": [[5, 3, 1, 0], [6.7, 3.0, 5.2, 2.3]]},  # integers are numbers too
    ],
    ids=[
        "instances",
        "records",
        "dataframe_split",
        "dataframe_split-reordered",
        "dataframe_records",
        "inputs-rows",
        "inputs-records",
        "inputs-columns",
        "integers",
    ],
)
def test_every_input_format_predicts(
    v1_client: TestClient, iris_models: IrisModels, body: dict
) -> None:
    response = v1_client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["predictions"] == [0, 2]  # setosa, virginica
    assert data["model"] == {"name": iris_models.name, "version": "1"}


def _bad(**record_changes: object) -> dict:
    record = dict(RECORD)
    for key, value in record_changes.items():
        if value is ...:
            del record[key]
        else:
            record[key] = value
    return {"records": [RECORD, RECORD, RECORD, record]}


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (_bad(petal_width_cm=...), 422, "record 3: missing column 'petal_width_cm'"),
        (_bad(colour="red"), 422, "record 3: unexpected column 'colour'"),
        (
            _bad(petal_width_cm="0.2"),
            422,
            "record 3: column 'petal_width_cm' expects a number (double), got string '0.2'",
        ),
        (
            _bad(sepal_length_cm=True),
            422,
            "record 3: column 'sepal_length_cm' expects a number (double), got boolean true",
        ),
        (
            _bad(sepal_width_cm=None),
            422,
            "record 3: column 'sepal_width_cm' expects a number (double), got null",
        ),
        (
            _bad(sepal_width_cm=[1.0]),
            422,
            "record 3: column 'sepal_width_cm' expects a number (double), got array",
        ),
        ({"instances": [ROW, [1.0, 2.0, 3.0]]}, 422, "row 1: expected 4 values"),
        ({"instances": [ROW, [1.0, 2.0, 3.0, 4.0, 5.0]]}, 422, "row 1: expected 4 values"),
        ({"instances": [ROW, 5.0]}, 422, "row 1: expected a list of 4 values, got number"),
        ({"records": [RECORD, [1, 2, 3, 4]]}, 422, "record 1: expected an object, got array"),
        ({"instances": []}, 422, "empty batch"),
        ({"instances": [ROW] * 51}, 422, "batch has 51 rows, over the limit of 50"),
        ({"instances": ROW, "records": []}, 422, "expected exactly one of"),
        ({"rows": [ROW]}, 422, "unknown top-level key(s) 'rows'"),
        ([ROW], 422, "expected a JSON object"),
        ({"instances": {"a": 1}}, 422, "'instances' must be a list of rows"),
        (
            {"dataframe_split": {"columns": COLUMNS[:3], "data": [ROW[:3]]}},
            422,
            "missing column 'petal_width_cm'",
        ),
        (
            {"inputs": {**{c: [1.0] for c in COLUMNS}, "petal_width_cm": [1.0, 2.0]}},
            422,
            "columns have different lengths",
        ),
    ],
)
def test_bad_input_is_a_4xx_that_says_what_was_wrong(
    v1_client: TestClient, body: object, status: int, detail: str
) -> None:
    response = v1_client.post("/predict", json=body)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


@pytest.mark.parametrize(
    ("raw", "status", "detail"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"", 400, "malformed JSON: empty body"),
        (b'{"instances": [[NaN, 1, 2, 3]]}', 400, "malformed JSON"),
        (b'{"instances": [[1e400, 1, 2, 3]]}', 400, "malformed JSON"),
        (b'{"instances": [[1' + b"0" * 400 + b", 1, 2, 3]]}", 400, "malformed JSON"),
        (b'{"instances": [[' + b"1.0," * 6000 + b"1.0]]}", 413, "over the limit of 20000 bytes"),
    ],
)
def test_malformed_or_oversized_bodies(
    v1_client: TestClient, raw: bytes, status: int, detail: str
) -> None:
    response = v1_client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_health_metadata_and_probes(v1_client: TestClient, iris_models: IrisModels) -> None:
    assert v1_client.get("/livez").status_code == 200
    assert v1_client.get("/readyz").status_code == 200
    health = v1_client.get("/health").json()
    assert health == {
        "status": "ok",
        "model": {"name": iris_models.name, "version": "1", "run_id": iris_models.v1_run_id},
    }
    meta = v1_client.get("/metadata").json()
    assert meta["model_uri"] == iris_models.uri(1)
    assert meta["source"] == "registry"
    assert meta["flavor"] == "sklearn"
    assert meta["git_sha"] == "0123abc"
    assert meta["metrics"]["accuracy"] > 0.9
    assert [c["name"] for c in meta["input_columns"]] == COLUMNS
    assert meta["signature"]["inputs"][0] == {
        "type": "double",
        "name": "sepal_length_cm",
        "required": True,
    }
    assert meta["loaded_at"]


def test_metrics_count_requests_and_show_the_served_version(
    v1_client: TestClient, iris_models: IrisModels
) -> None:
    v1_client.post("/predict", json={"instances": [ROW]})
    v1_client.post("/predict", json={"instances": []})
    text = v1_client.get("/metrics").text
    assert 'aliasflow_server_requests_total{endpoint="/predict",status="200"}' in text
    assert 'aliasflow_server_requests_total{endpoint="/predict",status="422"}' in text
    assert 'aliasflow_server_request_duration_seconds_bucket{endpoint="/predict"' in text
    assert (
        f'aliasflow_server_model_info{{name="{iris_models.name}",'
        f'run_id="{iris_models.v1_run_id}",version="1"}} 1.0' in text
    )
    assert "aliasflow_server_model_version 1.0" in text
    assert "aliasflow_server_predict_batch_rows_count" in text


def test_readiness_is_503_until_the_model_is_loaded(
    app_client: AppFactory, iris_models: IrisModels
) -> None:
    # Without the lifespan nothing loads: the server is alive but not ready.
    from model_server.app import create_app
    from model_server.settings import ServerSettings

    app = create_app(ServerSettings(model_uri=iris_models.uri(1)))
    client = TestClient(app)  # not entered: no lifespan, no model
    assert client.get("/livez").status_code == 200
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert "still loading" in not_ready.json()["detail"]
    assert client.post("/predict", json={"instances": [ROW]}).status_code == 503

    loaded = app_client(iris_models.uri(1))  # lifespan runs, waits for /readyz
    assert loaded.get("/readyz").json()["model"]["version"] == "1"


def test_a_model_that_fails_to_load_keeps_the_server_unready_with_a_reason(
    app_client: AppFactory, iris_models: IrisModels
) -> None:
    client = app_client(f"models:/{iris_models.name}/99", wait=False)
    for _ in range(200):
        response = client.get("/readyz")
        if "failed to load" in response.text:
            break
        import time

        time.sleep(0.05)
    assert response.status_code == 503
    assert f"models:/{iris_models.name}/99" in response.json()["detail"]


def test_admin_endpoint_is_disabled_without_a_token(
    v1_client: TestClient, app_client: AppFactory
) -> None:
    client = app_client()  # no admin token configured
    response = admin_request(client, "POST", "/admin/model", {"model_uri": "models:/x/1"})
    assert response.status_code == 403
    assert "ALIASFLOW_ADMIN_TOKEN is not set" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "model_uri: Field required"),
        ({"model_uri": "models:/x/1", "extra": 1}, "extra: Extra inputs are not permitted"),
        ({"model_uri": 5}, "model_uri: Input should be a valid string"),
    ],
)
def test_admin_body_is_validated(v1_client: TestClient, body: dict, detail: str) -> None:
    response = admin_request(v1_client, "POST", "/admin/model", body)
    assert response.status_code == 422
    assert detail in response.json()["detail"]


def test_swap_in_process_then_refuse_incompatible_unless_forced(
    app_client: AppFactory, bad_versions: BadVersions
) -> None:
    # One registered model holds both (a server swaps only to versions of its own model).
    good, incompatible = bad_versions.uri(7), bad_versions.uri(5)
    client = app_client(bad_versions.uri(1), admin_token=ADMIN_TOKEN)
    swapped = admin_request(client, "POST", "/admin/model", {"model_uri": good})
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["model"]["version"] == "7"
    assert swapped.json()["previous"]["version"] == "1"
    assert client.get("/health").json()["model"]["version"] == "7"

    refused = admin_request(client, "POST", "/admin/model", {"model_uri": incompatible})
    assert refused.status_code == 409
    assert "lacks column(s) 'sepal_length_cm'" in refused.json()["detail"]
    assert client.get("/health").json()["model"]["version"] == "7"

    forced = admin_request(
        client, "POST", "/admin/model", {"model_uri": incompatible, "force": True}
    )
    assert forced.status_code == 200, forced.text
    response = client.post("/predict", json={"records": [{"length": 5.0, "width": 3.0}]})
    assert response.status_code == 200, response.text
    assert 'aliasflow_server_model_swaps_total{result="refused"} 1.0' in client.get("/metrics").text
