"""Open Inference Protocol V2 through real clients: Triton's `tritonclient[http]`
(binary tensors, its default, and JSON), KServe's `InferenceRESTClient`, and MLServer
with `mlserver-mlflow` serving the same model version (same answers, same metadata shape).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.model_server.protocols.conftest import MLServer, ServedPair
from tests.model_server.protocols.models import ProtocolModels, example_frame
from tests.model_server.protocols.reference_venv import ensure_reference_venv

REQUEST_ID = "req-42"


def _mlflow_answer(models: ProtocolModels, kind: str, frame: Any) -> np.ndarray:
    import mlflow.pyfunc

    return np.asarray(mlflow.pyfunc.load_model(models.uri(kind)).predict(frame))


def _triton(url: str) -> Any:
    import tritonclient.http as triton

    return triton.InferenceServerClient(url=url.removeprefix("http://"))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("layout", ["column-per-input", "one-2d-input"])
def test_tritonclient_infers_with_mlflows_answer(
    served_pair: ServedPair, protocol_models: ProtocolModels, binary: bool, layout: str
) -> None:
    import tritonclient.http as triton

    name = protocol_models.names[served_pair.kind]
    client = _triton(served_pair.ours.url)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(name, "1")
    assert not client.is_model_ready(name, "2")

    frame = example_frame(served_pair.kind, rows=6)
    matrix = frame.to_numpy(dtype=np.float64)
    if layout == "column-per-input":
        inputs = []
        for i, column in enumerate(frame.columns):
            tensor = triton.InferInput(column, [len(frame), 1], "FP64")
            tensor.set_data_from_numpy(
                np.ascontiguousarray(matrix[:, i : i + 1]), binary_data=binary
            )
            inputs.append(tensor)
    else:
        tensor = triton.InferInput("input-0", list(matrix.shape), "FP64")
        tensor.set_data_from_numpy(matrix, binary_data=binary)
        inputs = [tensor]
    outputs = [
        triton.InferRequestedOutput("output-1", binary_data=binary),
        triton.InferRequestedOutput("labels", binary_data=binary),
    ]
    result = client.infer(name, inputs, model_version="1", outputs=outputs, request_id=REQUEST_ID)

    expected = _mlflow_answer(protocol_models, served_pair.kind, frame)
    assert result.as_numpy("output-1").tolist() == expected.tolist()
    assert result.as_numpy("labels").ravel().tolist() == expected.argmax(axis=1).tolist()
    response = result.get_response()
    assert response["id"] == REQUEST_ID
    assert (response["model_name"], response["model_version"]) == (name, "1")


def test_tritonclient_default_request_gets_binary_predictions(
    served_pair: ServedPair, protocol_models: ProtocolModels
) -> None:
    """No outputs named: tritonclient asks for `binary_data_output`; we send output-1."""
    import tritonclient.http as triton

    name = protocol_models.names[served_pair.kind]
    frame = example_frame(served_pair.kind, rows=2)
    tensor = triton.InferInput("input-0", [2, frame.shape[1]], "FP32")
    tensor.set_data_from_numpy(frame.to_numpy(dtype=np.float32))
    result = _triton(served_pair.ours.url).infer(name, [tensor])
    got = result.as_numpy("output-1")
    assert got.shape == (2, 2)
    expected = _mlflow_answer(
        protocol_models, served_pair.kind, frame.astype(np.float32).astype(np.float64)
    )
    assert got.tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"inputs": []}, 400, "'inputs' must be a non-empty list"),
        (
            {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "BYTES", "data": ["a"] * 30}]},
            400,
            "datatype BYTES does not fit a float column",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": [1.0] * 29}]},
            400,
            "shape [1, 30] holds 30 values, but 29 were given",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1.0] * 3}]},
            400,
            "one 2-D input of shape [n, 30]",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP99", "data": [1.0] * 30}]},
            400,
            "unknown datatype 'FP99'",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": [1.0] * 30}],
                "outputs": [{"name": "colour"}],
            },
            400,
            "unknown output(s) colour",
        ),
    ],
)
def test_bad_v2_requests_are_400_with_an_error_message(
    served_pair: ServedPair, protocol_models: ProtocolModels, body: dict, status: int, error: str
) -> None:
    name = protocol_models.names[served_pair.kind]
    response = httpx.post(f"{served_pair.ours.url}/v2/models/{name}/infer", json=body)
    assert response.status_code == status, response.text
    assert error in response.json()["error"]


def test_unknown_model_or_version_is_404(
    served_pair: ServedPair, protocol_models: ProtocolModels
) -> None:
    name = protocol_models.names[served_pair.kind]
    for path in ("/v2/models/nope", f"/v2/models/{name}/versions/9", "/v2/models/nope/ready"):
        response = httpx.get(f"{served_pair.ours.url}{path}")
        assert response.status_code == 404
        assert "not served here" in response.json()["error"]


def test_binary_body_that_lies_about_its_sizes_is_a_400(
    served_pair: ServedPair, protocol_models: ProtocolModels
) -> None:
    name = protocol_models.names[served_pair.kind]
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 30],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 240},
                }
            ]
        }
    ).encode()
    for extra, length in ((b"\0" * 100, len(header)), (b"\0" * 240, len(header) + 999)):
        response = httpx.post(
            f"{served_pair.ours.url}/v2/models/{name}/infer",
            content=header + extra,
            headers={"inference-header-content-length": str(length)},
        )
        assert response.status_code == 400, response.text
        assert "error" in response.json()


def test_server_metadata_names_the_binary_extension(served_pair: ServedPair) -> None:
    meta = _triton(served_pair.ours.url).get_server_metadata()
    assert meta["name"] == "aliasflow"
    assert "binary_tensor_data" in meta["extensions"]


def test_kserve_rest_client(
    served_pair: ServedPair, protocol_models: ProtocolModels, tmp_path: Path
) -> None:
    python = ensure_reference_venv()
    frame = example_frame(served_pair.kind, rows=3)
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps({"columns": list(frame.columns), "rows": frame.to_numpy().tolist()})
    )
    name = protocol_models.names[served_pair.kind]
    out = subprocess.run(
        [
            str(python),
            str(Path(__file__).parent / "kserve_client.py"),
            served_pair.ours.url,
            name,
            str(request),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert (seen["live"], seen["ready"], seen["model_ready"]) == (True, True, True)
    assert seen["id"] == "kserve-1"
    assert seen["model_name"] == name
    expected = _mlflow_answer(protocol_models, served_pair.kind, frame)
    assert seen["outputs"]["output-1"] == expected.tolist()


def _v2_columns(frame: Any) -> dict[str, Any]:
    return {
        "id": REQUEST_ID,
        "inputs": [
            {"name": c, "shape": [len(frame), 1], "datatype": "FP64", "data": frame[c].tolist()}
            for c in frame.columns
        ],
    }


def test_same_answers_as_mlserver(served_pair: ServedPair, mlserver: MLServer) -> None:
    body = _v2_columns(example_frame(served_pair.kind, rows=5))
    theirs = httpx.post(f"{mlserver.url}/v2/models/{mlserver.model_name}/infer", json=body)
    ours = httpx.post(f"{served_pair.ours.url}/v2/models/{mlserver.model_name}/infer", json=body)
    assert theirs.status_code == ours.status_code == 200, (theirs.text, ours.text)
    (their_output,) = theirs.json()["outputs"]
    (our_output,) = ours.json()["outputs"]
    for key in ("name", "datatype", "shape", "data"):
        assert our_output[key] == their_output[key], key
    assert ours.json()["id"] == theirs.json()["id"] == REQUEST_ID
    assert ours.json()["model_name"] == theirs.json()["model_name"]


def test_same_metadata_shape_as_mlserver(served_pair: ServedPair, mlserver: MLServer) -> None:
    theirs = httpx.get(f"{mlserver.url}/v2/models/{mlserver.model_name}").json()
    ours = httpx.get(f"{served_pair.ours.url}/v2/models/{mlserver.model_name}").json()
    assert set(theirs) >= set(ours) >= {"name", "versions", "platform", "inputs", "outputs"}
    assert ours["name"] == theirs["name"]
    # MLServer lists no versions for a model whose settings give one; we list the served one.
    assert (theirs["versions"], ours["versions"]) == ([], ["1"])
    strip = lambda tensors: [(t["name"], t["datatype"], t["shape"]) for t in tensors]  # noqa: E731
    assert strip(ours["inputs"]) == strip(theirs["inputs"])


def test_same_health_answers_as_mlserver(served_pair: ServedPair, mlserver: MLServer) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{mlserver.model_name}/ready"):
        theirs = httpx.get(f"{mlserver.url}{path}")
        ours = httpx.get(f"{served_pair.ours.url}{path}")
        assert ours.status_code == theirs.status_code == 200, path
