"""`create_app(settings)`: the controller's HTTP surface, with the controller in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from controller.api import dashboard, errors, routes, servers, webhooks
from controller.service.controller import Controller
from controller.service.settings import ControllerSettings


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
    app.include_router(servers.router)
    app.include_router(dashboard.router)
    errors.install(app)
    return app
