"""Open Inference Protocol V2 (KServe, Triton, Seldon clients) on our port.

Routes from kserve/open-inference-protocol `specification/protocol/inference_rest.md`:
server metadata `GET /v2`, `GET /v2/health/live`, `GET /v2/health/ready`, model metadata
`GET /v2/models/{name}[/versions/{version}]`, `.../ready` and `POST .../infer`. The V2
model name is the MLflow registered model name and its version the model version. The
predictions are output "output-1" (MLServer's MLflow runtime's name), and scikit-learn
classifiers add "probabilities" and "labels" when a request names them in `outputs`.
Errors are `{"error": "..."}` (errors.py). The binary tensor extension is in `v2_codec`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from model_server.batching import PREDICTIONS
from model_server.errors import InputError
from model_server.loading import LoadedModel
from model_server.protocols.v2_codec import (
    DATATYPE_OF_MLFLOW,
    HEADER_LENGTH,
    PREDICTIONS_OUTPUT,
    as_tensor,
    decode_request,
    encode_response,
)
from model_server.responses import JSONBytesResponse
from model_server.routing import ROLE_HEADER, Choice
from model_server.schemas import (
    V2InferRequest,
    V2InferResponse,
    V2ModelMetadata,
    V2ModelReady,
    V2ServerLive,
    V2ServerMetadata,
    V2ServerReady,
)
from model_server.service import InferenceService, Reply, model_name

SERVER_NAME = "aliasflow"
EXTENSIONS = ["binary_tensor_data"]
_V2_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"content": {"application/json": {"schema": {"type": "object"}}}}
    for code in (400, 404, 413, 503)
}


def router(service: InferenceService) -> APIRouter:
    api = APIRouter(prefix="/v2", tags=["v2"], responses=_V2_ERRORS)

    @api.get("", response_model=V2ServerMetadata)
    async def server_metadata() -> JSONBytesResponse:
        from importlib.metadata import version

        return JSONBytesResponse(
            {"name": SERVER_NAME, "version": version("aliasflow"), "extensions": EXTENSIONS}
        )

    @api.get("/health/live", response_model=V2ServerLive)
    async def live() -> JSONBytesResponse:
        return JSONBytesResponse({"live": True})

    @api.get("/health/ready", response_model=V2ServerReady)
    async def ready() -> JSONBytesResponse:
        service.served()  # 503 until the model serves
        return JSONBytesResponse({"ready": True})

    @api.get("/models/{name}", response_model=V2ModelMetadata)
    async def model_metadata(name: str) -> JSONBytesResponse:
        return JSONBytesResponse(_metadata(service.model_for(name, None)))

    @api.get("/models/{name}/versions/{version}", response_model=V2ModelMetadata)
    async def model_version_metadata(name: str, version: str) -> JSONBytesResponse:
        return JSONBytesResponse(_metadata(service.model_for(name, version)))

    @api.get("/models/{name}/ready", response_model=V2ModelReady)
    async def model_ready(name: str) -> JSONBytesResponse:
        return JSONBytesResponse({"name": model_name(service.model_for(name, None)), "ready": True})

    @api.get("/models/{name}/versions/{version}/ready", response_model=V2ModelReady)
    async def model_version_ready(name: str, version: str) -> JSONBytesResponse:
        model = service.model_for(name, version)
        return JSONBytesResponse({"name": model_name(model), "ready": True})

    infer_doc: dict[str, Any] = {
        "responses": {
            "200": {
                "content": {
                    "application/json": {"schema": V2InferResponse.model_json_schema()},
                    "application/octet-stream": {"schema": {"type": "string"}},
                }
            }
        },
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": V2InferRequest.model_json_schema()},
                "application/octet-stream": {"schema": {"type": "string"}},
            },
        },
    }

    @api.post("/models/{name}/infer", openapi_extra=infer_doc)
    async def model_infer(name: str, request: Request) -> Response:
        """Inference on the served model (any version it serves)."""
        body = await service.read_body(request)
        header_length = request.headers.get(HEADER_LENGTH)
        pin = request.headers.get(ROLE_HEADER)
        return (await handle_infer(service, body, header_length, name, None, pin)).response()

    @api.post("/models/{name}/versions/{version}/infer", openapi_extra=infer_doc)
    async def model_version_infer(name: str, version: str, request: Request) -> Response:
        """Inference on this version; 404 when it is not the one served."""
        body = await service.read_body(request)
        header_length = request.headers.get(HEADER_LENGTH)
        pin = request.headers.get(ROLE_HEADER)
        return (await handle_infer(service, body, header_length, name, version, pin)).response()

    return api


async def handle_infer(
    service: InferenceService,
    body: bytes,
    header_length: str | None,
    name: str,
    version: str | None,
    pin: str | None = None,
) -> Reply:
    choice = service.choose_for(name, version, pin)
    return await service.answer(choice, _infer(service, choice, body, header_length))


async def _infer(
    service: InferenceService, choice: Choice, body: bytes, header_length: str | None
) -> Reply:
    model = choice.model
    decoded = decode_request(body, header_length, model.spec)
    extras = frozenset(n for n in decoded.outputs if n != PREDICTIONS_OUTPUT)
    unknown = extras - model.predictor.extras
    if unknown:
        known = [PREDICTIONS_OUTPUT, *sorted(model.predictor.extras)]
        raise InputError(
            f"unknown output(s) {', '.join(sorted(unknown))}; this model has {', '.join(known)}"
        )
    batch = service.parse(decoded.payload, model)
    prediction = await service.infer(choice, batch, extras)
    names = decoded.outputs or [PREDICTIONS_OUTPUT]
    tensors = {
        output: as_tensor(prediction[PREDICTIONS if output == PREDICTIONS_OUTPUT else output])
        for output in names
    }
    content, headers = encode_response(model_name(model), model.version, decoded, tensors)
    if choice.version_headers is not None:
        headers.update(choice.version_headers)
    return Reply(content, media_type=headers.pop("content-type"), headers=headers)


def _metadata(model: LoadedModel) -> dict[str, Any]:
    """Model metadata in MLServer's MLflow runtime's shape (mlserver_mlflow.metadata)."""
    inputs = [
        {
            "name": column.name,
            "datatype": DATATYPE_OF_MLFLOW.get(column.mlflow_type, "BYTES"),
            "shape": [-1, 1],
        }
        for column in (model.spec.columns if model.spec else ())
    ]
    outputs: list[dict[str, Any]] = [
        {"name": PREDICTIONS_OUTPUT, "datatype": _predictions_datatype(model), "shape": [-1, -1]}
    ]
    classes = model.predictor.classes
    for extra in sorted(model.predictor.extras):
        width = len(classes) if classes is not None and extra == "probabilities" else 1
        datatype = "FP64" if extra == "probabilities" else _labels_datatype(classes)
        outputs.append({"name": extra, "datatype": datatype, "shape": [-1, width]})
    return {
        "name": model_name(model),
        "versions": [model.version] if model.version else [],
        "platform": f"mlflow-{model.predictor.flavor}",
        "inputs": inputs,
        "outputs": outputs,
    }


def _predictions_datatype(model: LoadedModel) -> str:
    """From the signature's first output column when it has one, else FP64."""
    outputs = (model.signature or {}).get("outputs") or []
    if model.predict_fn != "predict" or not outputs or not isinstance(outputs[0], dict):
        return "FP64"
    return DATATYPE_OF_MLFLOW.get(str(outputs[0].get("type")), "BYTES")


def _labels_datatype(classes: list[Any] | None) -> str:
    if not classes:
        return "BYTES"
    kind = np.asarray(classes).dtype.kind
    return {"i": "INT64", "u": "UINT64", "f": "FP64", "b": "BOOL"}.get(kind, "BYTES")
