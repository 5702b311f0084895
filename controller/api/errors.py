"""The one place that maps errors to HTTP statuses; routes just raise."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from controller.core.deliveries import WebhookRejected
from controller.core.errors import (
    ControllerError,
    ModelNotFoundError,
    RegistryUnavailableError,
    StoreUnavailableError,
)
from controller.service.errors import (
    ConflictError,
    DisabledError,
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    ServiceError,
    UnauthorizedError,
)

SERVICE_STATUS: dict[type[ServiceError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    DisabledError: 403,
    UnauthorizedError: 401,
    InvalidRequestError: 422,
    NotReadyError: 503,
}
# Headers a refusal carries: how to authenticate, when to ask again.
SERVICE_HEADERS: dict[type[ServiceError], dict[str, str]] = {
    UnauthorizedError: {"WWW-Authenticate": "X-Aliasflow-Signature"},
    NotReadyError: {"Retry-After": "1"},
}
# Errors from the systems behind us: "not now" is 503, a missing model is a conflict
# with the request (the alias cannot move to what does not exist).
CONTROLLER_STATUS: dict[type[ControllerError], int] = {
    StoreUnavailableError: 503,
    RegistryUnavailableError: 503,
    ModelNotFoundError: 409,
}


def _detail(detail: str, status: int) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        ]
        return _detail("; ".join(problems), 422)

    @app.exception_handler(ServiceError)
    async def _refused(_request: Request, exc: ServiceError) -> JSONResponse:
        response = _detail(exc.detail, SERVICE_STATUS.get(type(exc), 400))
        response.headers.update(SERVICE_HEADERS.get(type(exc), {}))
        return response

    @app.exception_handler(WebhookRejected)
    async def _rejected(_request: Request, exc: WebhookRejected) -> JSONResponse:
        return _detail(exc.detail, exc.status_code)

    @app.exception_handler(ControllerError)
    async def _unavailable(_request: Request, exc: ControllerError) -> JSONResponse:
        status = next(
            (code for kind, code in CONTROLLER_STATUS.items() if isinstance(exc, kind)),
            503 if exc.retryable else 409,
        )
        return _detail(f"{exc.reason}: {exc}", status)
