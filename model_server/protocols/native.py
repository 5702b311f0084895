"""aliasflow's own `POST /predict`: MLflow's predictions plus, on request, more.

`{"instances" | "records" | "dataframe_split" | "dataframe_records" | "inputs": ...,
"outputs": ["probabilities", "labels"]}`: "outputs" is optional and adds the class
probabilities (with the class order under "classes") and the predicted class labels for
scikit-learn classifiers; "predictions" is always what MLflow's pyfunc answers.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from model_server.batching import PREDICTIONS
from model_server.inputs import decode_json
from model_server.predictors import PROBABILITIES, jsonable
from model_server.routing import ROLE_HEADER, Choice
from model_server.schemas import PredictRequest, PredictResponse
from model_server.service import InferenceService, Reply, extras_option


def router(service: InferenceService) -> APIRouter:
    api = APIRouter()

    @api.post(
        "/predict",
        tags=["model"],
        response_model=PredictResponse,
        response_model_exclude_none=True,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
            }
        },
    )
    async def predict(request: Request) -> Response:
        """Predict for `instances`, `records`, `dataframe_split`, `dataframe_records` or
        `inputs`; the input is checked against the model signature first. Add
        `"outputs": ["probabilities", "labels"]` for a classifier's class probabilities
        and labels beside MLflow's predictions."""
        body = await service.read_body(request)
        return (await handle_predict(service, body, request.headers.get(ROLE_HEADER))).response()

    return api


async def handle_predict(service: InferenceService, body: bytes, pin: str | None = None) -> Reply:
    choice = service.choose(pin)
    return await service.answer(choice, _predict(service, choice, body))


async def _predict(service: InferenceService, choice: Choice, body: bytes) -> Reply:
    model = choice.model
    payload = decode_json(body)
    extras = frozenset[str]()
    if type(payload) is dict and "outputs" in payload:
        extras = extras_option(payload.pop("outputs"))
    batch = service.parse(payload, model)
    prediction = await service.infer(choice, batch, extras)
    answer: dict[str, Any] = {
        "predictions": jsonable(prediction[PREDICTIONS]),
        "model": {"name": model.name, "version": model.version},
    }
    for name in sorted(extras):
        answer[name] = jsonable(prediction[name])
    if PROBABILITIES in extras:
        answer["classes"] = model.predictor.classes
    return Reply(orjson.dumps(answer), headers=choice.version_headers)
