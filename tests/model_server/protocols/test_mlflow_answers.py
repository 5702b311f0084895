"""Every model kind answers on /predict, /invocations and V2 exactly what MLflow's pyfunc
predicts for the same rows (`mlflow.pyfunc.load_model(uri).predict`), whether the server
calls the estimator natively or falls back to pyfunc; /metadata says which and why."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.model_server.conftest import wait_ready
from tests.model_server.protocols.models import KINDS, NATIVE, ProtocolModels, example_frame


def _mlflow_predictions(models: ProtocolModels, kind: str, frame: Any) -> Any:
    import mlflow.pyfunc
    from mlflow.utils.proto_json_utils import _get_jsonable_obj

    model = mlflow.pyfunc.load_model(models.uri(kind))
    return _get_jsonable_obj(model.predict(frame), pandas_orient="records")


def _split(frame: Any) -> dict[str, Any]:
    return {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}


def _v2_body(frame: Any) -> dict[str, Any]:
    datatypes = {"i": "INT64", "f": "FP64", "O": "BYTES"}
    return {
        "inputs": [
            {
                "name": column,
                "shape": [len(frame), 1],
                "datatype": datatypes[frame[column].dtype.kind],
                "data": frame[column].tolist(),
            }
            for column in frame.columns
        ]
    }


@pytest.mark.parametrize("kind", KINDS)
def test_every_protocol_answers_mlflows_predictions(
    kind_clients: dict[str, TestClient], protocol_models: ProtocolModels, kind: str
) -> None:
    frame = example_frame(kind, rows=7)
    expected = _mlflow_predictions(protocol_models, kind, frame)
    client = kind_clients[kind]

    ours = client.post("/predict", json={"dataframe_split": _split(frame)})
    assert ours.status_code == 200, ours.text
    assert ours.json()["predictions"] == expected

    invocations = client.post("/invocations", json={"dataframe_split": _split(frame)})
    assert invocations.status_code == 200, invocations.text
    assert invocations.json() == {"predictions": expected}

    if kind != "frame":  # a DataFrame answer has no single V2 tensor to compare with
        name = protocol_models.names[kind]
        v2 = client.post(f"/v2/models/{name}/versions/1/infer", json=_v2_body(frame))
        assert v2.status_code == 200, v2.text
        (output,) = v2.json()["outputs"]
        flat = [v for row in expected for v in (row if isinstance(row, list) else [row])]
        assert output["data"] == flat


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_says_how_the_model_is_served(
    kind_clients: dict[str, TestClient], kind: str
) -> None:
    meta = kind_clients[kind].get("/metadata").json()
    if kind in NATIVE:
        assert (meta["flavor"], meta["fallback_reason"]) == ("sklearn", None)
    else:
        assert meta["flavor"] == "pyfunc"
        assert meta["fallback_reason"]
    assert meta["predict_fn"] == ("predict_proba" if kind == "cancer_proba" else "predict")
    # The bit-exact shortcut is in use for the linear pipelines called through `predict`.
    linear_predict = kind in {"cancer", "iris_long"}
    assert meta["kernel"] == ("StandardScaler>LogisticRegression" if linear_predict else None)


def test_probabilities_and_labels_on_request(
    kind_clients: dict[str, TestClient], protocol_models: ProtocolModels
) -> None:
    import mlflow.sklearn

    frame = example_frame("cancer", rows=4)
    estimator = mlflow.sklearn.load_model(protocol_models.uri("cancer"))
    client = kind_clients["cancer"]
    plain = client.post("/predict", json={"dataframe_split": _split(frame)}).json()
    assert set(plain) == {"predictions", "model"}  # nothing extra unless asked

    rich = client.post(
        "/predict",
        json={"dataframe_split": _split(frame), "outputs": ["probabilities", "labels"]},
    ).json()
    # The same pipeline logged with pyfunc_predict_fn="predict_proba": MLflow's own
    # probabilities for these rows.
    probabilities = _mlflow_predictions(protocol_models, "cancer_proba", frame)
    assert rich["predictions"] == estimator.predict(frame).tolist()
    assert rich["labels"] == estimator.predict(frame).tolist()
    assert rich["probabilities"] == probabilities
    assert rich["classes"] == [0, 1]

    name = protocol_models.names["cancer"]
    v2 = client.post(
        f"/v2/models/{name}/infer",
        json={**_v2_body(frame), "outputs": [{"name": "probabilities"}, {"name": "output-1"}]},
    ).json()
    assert [o["name"] for o in v2["outputs"]] == ["probabilities", "output-1"]
    assert v2["outputs"][0]["shape"] == [4, 2]
    assert v2["outputs"][0]["data"] == [p for row in probabilities for p in row]

    # /invocations stays exactly MLflow's: the option is not one of its keys, so ignored.
    invocations = client.post(
        "/invocations", json={"dataframe_split": _split(frame), "outputs": ["probabilities"]}
    )
    assert invocations.json() == {"predictions": plain["predictions"]}


@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"cancer", "iris_long"}))
def test_models_without_probabilities_say_so(
    kind_clients: dict[str, TestClient], kind: str
) -> None:
    frame = example_frame(kind, rows=1)
    response = kind_clients[kind].post(
        "/predict", json={"dataframe_split": _split(frame), "outputs": ["probabilities"]}
    )
    if kind == "cancer_proba":  # native classifier: it has them
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 422
    assert "cannot give probabilities" in response.json()["detail"]


def test_fast_lane_and_fastapi_routes_answer_alike(
    kind_clients: dict[str, TestClient], protocol_models: ProtocolModels
) -> None:
    """The lane only skips FastAPI's routing: with it off, every answer is the same."""
    from model_server.app import create_app
    from model_server.settings import ServerSettings

    settings = ServerSettings(
        model_uri=protocol_models.uri("cancer"),
        tracking_uri=protocol_models.tracking_uri,
        fast_lane=False,
    )
    frame = example_frame("cancer", rows=3)
    name = protocol_models.names["cancer"]
    requests: list[tuple[str, Any]] = [
        ("/predict", {"dataframe_split": _split(frame), "outputs": ["labels"]}),
        ("/predict", {"instances": [[1.0]]}),
        ("/invocations", {"dataframe_split": _split(frame)}),
        ("/invocations", {"instances": [[1.0]]}),
        (f"/v2/models/{name}/infer", _v2_body(frame)),
        (f"/v2/models/{name}/versions/1/infer", {"inputs": []}),
        ("/v2/models/other/infer", _v2_body(frame)),
    ]
    with TestClient(create_app(settings), raise_server_exceptions=False) as routed:
        wait_ready(routed)
        for path, body in requests:
            lane = kind_clients["cancer"].post(path, json=body)
            route = routed.post(path, json=body)
            assert (lane.status_code, lane.json()) == (route.status_code, route.json()), path
            assert lane.headers["content-type"] == route.headers["content-type"], path
