"""Domain errors of the model server and the one place that maps them to HTTP.

    ServerError
    ├── MalformedBodyError          400  body is not JSON
    ├── UnauthorizedError           401  missing or wrong bearer token
    ├── AdminDisabledError          403  no ALIASFLOW_ADMIN_TOKEN configured
    ├── IncompatibleSignatureError  409  swap refused: input schema differs (use force)
    ├── BodyTooLargeError           413  body over ALIASFLOW_MAX_BODY_BYTES
    ├── InputError                  422  JSON is fine but does not fit the model's signature
    ├── PredictionError             422  the model raised on input that passed our checks
    ├── ModelLoadError              422  swap: the new version could not be loaded
    │   └── SwapDeadlineError       422  swap: loading outlasted the request's deadline
    ├── ModelCheckError             422  swap: the new version failed warm-up / output check
    └── NotReadyError               503  no model loaded yet

Routes raise these; `install_error_handlers` turns them (and FastAPI's own validation
errors, and anything unforeseen) into `{"detail": "<what was wrong>"}` so no request can
end in an HTML page or a bare 500 traceback.
"""

from __future__ import annotations

import logging
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from model_server.responses import JSONBytesResponse

log = logging.getLogger("model_server")


class ServerError(Exception):
    """Base of every error the server reports to a client; `str(exc)` is the detail."""


class MalformedBodyError(ServerError):
    pass


class UnauthorizedError(ServerError):
    pass


class AdminDisabledError(ServerError):
    pass


class IncompatibleSignatureError(ServerError):
    pass


class BodyTooLargeError(ServerError):
    pass


class InputError(ServerError):
    pass


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
    IncompatibleSignatureError: 409,
    BodyTooLargeError: 413,
    InputError: 422,
    PredictionError: 422,
    ModelLoadError: 422,
    SwapDeadlineError: 422,
    ModelCheckError: 422,
    NotReadyError: 503,
}


def status_for(exc: ServerError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 500


def error_response(exc: ServerError) -> JSONBytesResponse:
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONBytesResponse({"detail": str(exc)}, status_code=status, headers=headers)


def _describe_validation_error(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above on `app`; called once by `create_app`."""

    async def on_server_error(_: Request, exc: Exception) -> JSONBytesResponse:
        assert isinstance(exc, ServerError)
        return error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONBytesResponse:
        assert isinstance(exc, RequestValidationError)
        # FastAPI reports a JSON decode error as a validation error; it is a 400 here.
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(
                MalformedBodyError(f"malformed JSON: {_describe_validation_error(exc)}")
            )
        return error_response(InputError(_describe_validation_error(exc)))

    async def on_http_error(_: Request, exc: Exception) -> JSONBytesResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONBytesResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONBytesResponse:
        # Last resort: a bug of ours. Logged with its traceback, answered without one.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONBytesResponse(
            {"detail": f"internal error: {type(exc).__name__}"}, status_code=500
        )

    app.add_exception_handler(ServerError, on_server_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
