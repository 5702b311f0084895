"""Domain errors of the model server and the one place that maps them to HTTP.

    ServerError
    ├── MalformedBodyError          400  body is not JSON (or not a V2 binary request)
    ├── UnauthorizedError           401  admin: unsigned, stale or wrongly signed request;
    │                                    predict: missing or unknown API key
    ├── AdminDisabledError          403  no ALIASFLOW_ADMIN_TOKEN configured
    ├── ForeignModelError           403  swap: not a version of the server's own model
    ├── ModelNotFoundError          404  V2: no such model name or version served here
    ├── IncompatibleSignatureError  409  swap refused: input schema differs (use force)
    ├── RoleNotServedError          409  a request pinned to a role (canary) not served now
    ├── ReplayedRequestError        409  admin: this signature was already accepted
    ├── BodyTooLargeError           413  body over ALIASFLOW_MAX_BODY_BYTES
    ├── UnsupportedMediaTypeError   415  a content type the protocol does not speak
    ├── TooManyRequestsError        429  admin: the replay memory is full, retry shortly
    ├── InputError                  422  JSON is fine but does not fit the model's signature
    │   └── BatchTooLargeError      422  more rows than ALIASFLOW_MAX_BATCH_ROWS
    ├── PredictionError             422  the model raised on input that passed our checks
    ├── ModelLoadError              422  swap: the new version could not be loaded
    │   └── SwapDeadlineError       422  swap: loading outlasted the request's deadline
    ├── ModelCheckError             422  swap: the new version failed warm-up / output check
    └── NotReadyError               503  no model loaded yet

Routes raise these; `install_error_handlers` turns them (and FastAPI's own validation
errors, and anything unforeseen) into the error body of the protocol the path belongs to,
so no request can end in an HTML page or a bare 500 traceback:

- our own routes: `{"detail": "<what was wrong>"}` with the status above;
- MLflow's scoring protocol (`/invocations`): `{"error_code": "BAD_REQUEST", "message": ...}`
  and 400 where we say 422, as `mlflow models serve` does (`MlflowException` JSON);
- Open Inference Protocol V2 (`/v2/...`): `{"error": "<message>"}` and 400 where we say
  422 (inference_rest.md: "a failed inference request must be indicated by an HTTP error
  status (typically 400)").
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from model_server.responses import JSONBytesResponse

log = logging.getLogger("model_server")


class ServerError(Exception):
    """Base of every error the server reports to a client; `str(exc)` is the detail."""

    # Set on a prediction's error once its version is known: the answer names it too.
    model_version: str | None = None


class MalformedBodyError(ServerError):
    pass


class UnauthorizedError(ServerError):
    # The `WWW-Authenticate` challenge of the 401 (RFC 9110 section 11.6.1).
    challenge = "Bearer"


class SignatureRequiredError(UnauthorizedError):
    """Admin routes take signed requests only (docs/server-contract.md)."""

    challenge = "Aliasflow-Signature"


class AdminDisabledError(ServerError):
    pass


class ForeignModelError(ServerError):
    """A URI that is not the server's own registered model: refused before any load."""


class IncompatibleSignatureError(ServerError):
    pass


class RoleNotServedError(ServerError):
    pass


class ReplayedRequestError(ServerError):
    pass


class BodyTooLargeError(ServerError):
    pass


class UnsupportedMediaTypeError(ServerError):
    pass


class ModelNotFoundError(ServerError):
    pass


class TooManyRequestsError(ServerError):
    pass


class InputError(ServerError):
    pass


class BatchTooLargeError(InputError):
    """A limit of ours, not a judgement on the input's shape: never handed to MLflow."""


class PredictionError(ServerError):
    pass


class ModelLoadError(ServerError):
    pass


class SwapDeadlineError(ModelLoadError):
    """A 422, not a 504: the answer is final (this version was discarded), and callers
    treat 5xx as "try again", which would only load the slow version again."""


class ModelCheckError(ServerError):
    pass


class NotReadyError(ServerError):
    pass


STATUS_BY_ERROR: Final[dict[type[ServerError], int]] = {
    MalformedBodyError: 400,
    UnauthorizedError: 401,
    AdminDisabledError: 403,
    ForeignModelError: 403,
    ModelNotFoundError: 404,
    IncompatibleSignatureError: 409,
    RoleNotServedError: 409,
    ReplayedRequestError: 409,
    BodyTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    TooManyRequestsError: 429,
    InputError: 422,
    PredictionError: 422,
    ModelLoadError: 422,
    SwapDeadlineError: 422,
    ModelCheckError: 422,
    NotReadyError: 503,
}


def status_for(exc: ServerError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


# MLflow's `ErrorCode` names by HTTP status (mlflow/protos/databricks.proto and
# `MlflowException.get_http_status_code`), for errors we answer ourselves on /invocations.
_MLFLOW_CODES: Final[dict[int, str]] = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}


class Protocol(enum.Enum):
    NATIVE = "native"
    MLFLOW = "mlflow"
    V2 = "v2"


def protocol_of(path: str) -> Protocol:
    if path.startswith("/v2"):
        return Protocol.V2
    if path == "/invocations":
        return Protocol.MLFLOW
    return Protocol.NATIVE


def render_error(
    message: str, status: int, protocol: Protocol, headers: Mapping[str, str] | None = None
) -> JSONBytesResponse:
    """The error body and status each protocol's clients expect for `message`."""
    if protocol is Protocol.NATIVE:
        return JSONBytesResponse({"detail": message}, status_code=status, headers=headers)
    if status == 422:
        status = 400  # neither MLflow nor V2 knows 422: bad input is a 400 there
    if protocol is Protocol.MLFLOW:
        body = {"error_code": _MLFLOW_CODES.get(status, "BAD_REQUEST"), "message": message}
        return JSONBytesResponse(body, status_code=status, headers=headers)
    return JSONBytesResponse({"error": message}, status_code=status, headers=headers)


def error_response(exc: ServerError, protocol: Protocol = Protocol.NATIVE) -> JSONBytesResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if status == 401:
        challenge = exc.challenge if isinstance(exc, UnauthorizedError) else "Bearer"
        headers["WWW-Authenticate"] = challenge
    if exc.model_version is not None:
        headers["X-Aliasflow-Model-Version"] = exc.model_version
    return render_error(str(exc), status, protocol, headers or None)


def _describe_validation_error(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above on `app`; called once by `create_app`."""

    async def on_server_error(request: Request, exc: Exception) -> JSONBytesResponse:
        assert isinstance(exc, ServerError)
        return error_response(exc, protocol_of(request.url.path))

    async def on_validation_error(request: Request, exc: Exception) -> JSONBytesResponse:
        assert isinstance(exc, RequestValidationError)
        protocol = protocol_of(request.url.path)
        # FastAPI reports a JSON decode error as a validation error; it is a 400 here.
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(
                MalformedBodyError(f"malformed JSON: {_describe_validation_error(exc)}"),
                protocol,
            )
        return error_response(InputError(_describe_validation_error(exc)), protocol)

    async def on_http_error(request: Request, exc: Exception) -> JSONBytesResponse:
        assert isinstance(exc, StarletteHTTPException)
        return render_error(
            str(exc.detail), exc.status_code, protocol_of(request.url.path), exc.headers
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONBytesResponse:
        # Last resort: a bug of ours. Logged with its traceback, answered without one.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return render_error(
            f"internal error: {type(exc).__name__}", 500, protocol_of(request.url.path)
        )

    app.add_exception_handler(ServerError, on_server_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
