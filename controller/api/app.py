"""`create_app(settings)`: the controller's HTTP surface, with the controller in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from controller.api import dashboard, rollback, routes, webhooks
from controller.service import Controller
from controller.settings import ControllerSettings
from controller.store.sql import StoreUnavailableError


def create_app(settings: ControllerSettings, controller: Controller | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = controller or Controller(settings)
        app.state.controller = running
        running.start()
        try:
            yield
        finally:
            running.stop()

    app = FastAPI(title="aliasflow controller", version="1", lifespan=lifespan)
    app.include_router(webhooks.router)
    app.include_router(routes.router)
    app.include_router(rollback.router)
    app.include_router(dashboard.router)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(StoreUnavailableError)
    async def _store_down(_request: Request, exc: StoreUnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    return app
