"""MLflow's scoring protocol on our port: `POST /invocations`, `GET /ping`, `GET /version`.

The contract is `mlflow models serve` (mlflow/pyfunc/scoring_server/__init__.py): the same
body formats (`dataframe_split`, `dataframe_records`, `instances`, `inputs`, `params`; CSV
and Parquet by content type), the same answer `{"predictions": ...}`, the same status codes.

A body takes our shared path (one validator, one batcher) when it provably means to
MLflow exactly what it means to us: JSON, one of MLflow's format keys, named columns of an
all-double signature, every value a JSON float, a model served natively (which already
guarantees no params schema, so `params` are ignored as MLflow ignores them). Anything
else (integers MLflow may refuse, extra columns it drops, CSV, params a model declares,
pyfunc models, bodies our checks refuse) is answered by MLflow's own `invocations()` on
the same loaded model, in a thread, as `mlflow models serve` does: its answer and its
error are MLflow's by construction, with no copy of MLflow's rules here.

Two deliberate differences, both on bodies `mlflow models serve` fails with a 500: a
request without a content type gets a 415, and an unexpected exception inside MLflow's
handler a 400 `BAD_REQUEST`; and MLflow's `stack_trace` is left out of error bodies (a
client never needs our traceback).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from model_server.batching import PREDICTIONS
from model_server.errors import (
    BatchTooLargeError,
    InputError,
    MalformedBodyError,
    ModelLoadError,
    Protocol,
    UnsupportedMediaTypeError,
    render_error,
)
from model_server.inputs import MLFLOW_FORMATS, Batch, decode_json
from model_server.loading import LoadedModel
from model_server.predictors import jsonable
from model_server.routing import ROLE_HEADER, Choice
from model_server.service import InferenceService, Reply

_JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})


def router(service: InferenceService) -> APIRouter:
    api = APIRouter(tags=["mlflow"])

    @api.get("/ping", responses={200: {"content": {"application/json": {}}}})
    async def ping() -> Response:
        """MLflow's health check: 200 with a newline once the model serves."""
        service.served()
        return Response(b"\n", media_type="application/json")

    @api.get("/version", responses={200: {"content": {"application/json": {}}}})
    async def version() -> Response:
        """The MLflow version, as `mlflow models serve` answers it (a bare string)."""
        from mlflow.version import VERSION

        return Response(VERSION, media_type="application/json")

    @api.post(
        "/invocations",
        responses={
            200: {"content": {"application/json": {"schema": {"type": "object"}}}},
            400: {"content": {"application/json": {"schema": {"type": "object"}}}},
            415: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def invocations(request: Request) -> Response:
        """`mlflow models serve`'s scoring endpoint: the same bodies, answers and errors."""
        body = await service.read_body(request)
        headers = request.headers
        reply = await handle_invocations(
            service, body, headers.get("content-type"), headers.get(ROLE_HEADER)
        )
        return reply.response()

    return api


async def handle_invocations(
    service: InferenceService, body: bytes, content_type: str | None, pin: str | None = None
) -> Reply:
    choice = service.choose(pin)
    return await service.answer(choice, _invocations(service, choice, body, content_type))


async def _invocations(
    service: InferenceService, choice: Choice, body: bytes, content_type: str | None
) -> Reply:
    model = choice.model
    if content_type is None:
        raise UnsupportedMediaTypeError(
            "no Content-Type: send application/json, text/csv or application/vnd.apache.parquet"
        )
    batch = _fast_batch(service, model, body, content_type)
    if batch is None:
        service.metrics.mlflow_handled.inc()
        return await asyncio.to_thread(_invoke_mlflow, model, body, content_type)
    prediction = await service.infer(choice, batch)
    content = orjson.dumps({"predictions": jsonable(prediction[PREDICTIONS])})
    return Reply(content, headers=choice.version_headers)


def _fast_batch(
    service: InferenceService, model: LoadedModel, body: bytes, content_type: str
) -> Batch | None:
    """The batch when our path gives MLflow's answer for this body; None to ask MLflow."""
    if model.predictor.flavor != "sklearn" or content_type.lower() not in _JSON_TYPES:
        return None
    try:
        payload = decode_json(body)
    except MalformedBodyError:
        return None
    if type(payload) is not dict:
        return None
    # MLflow reads only its format keys and "params"; any other key is ignored.
    data = {k: v for k, v in payload.items() if k in MLFLOW_FORMATS}
    if len(data) != 1:
        return None
    try:
        return service.parse(data, model, exact=True)
    except BatchTooLargeError:
        raise  # our limit, not a question of MLflow's rules
    except InputError:
        return None


def _invoke_mlflow(model: LoadedModel, body: bytes, content_type: str) -> Reply:
    """MLflow's own `/invocations` handler on the served model (in a thread, as MLflow)."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        pyfunc = model.full().pyfunc  # a boot-file model may still be loading it
    except ModelLoadError as exc:
        return Reply(bytes(render_error(str(exc), 503, Protocol.MLFLOW).body), 503)
    try:
        # MLflow's scoring module and exceptions are untyped; their contract is the
        # `mlflow models serve` behaviour the differential tests pin.
        result = scoring_server.invocations(  # type: ignore[no-untyped-call]
            body, content_type, pyfunc, pyfunc.metadata.get_input_schema()
        )
    except MlflowException as exc:
        error: dict[str, Any] = orjson.loads(exc.serialize_as_json())  # type: ignore[no-untyped-call]
        error.pop("stack_trace", None)
        status: int = exc.get_http_status_code()  # type: ignore[no-untyped-call]
        return Reply(orjson.dumps(error), status)
    except Exception as exc:  # mlflow models serve would answer 500 here
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        rendered = render_error(
            f"could not score this input: {type(exc).__name__}: {first}", 400, Protocol.MLFLOW
        )
        return Reply(bytes(rendered.body), 400)
    return Reply(result.response.encode(), result.status, result.mimetype)
