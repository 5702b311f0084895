"""The API token, checked in one place for the JSON API and the dashboard.

State-changing endpoints are disabled, not open, without `ALIASFLOW_API_TOKEN`. Reads
are open unless `ALIASFLOW_DASHBOARD_AUTH=true`, and then need the same token, as a
bearer header or (pages only) the login cookie. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from controller.service.settings import ControllerSettings

COOKIE = "aliasflow_token"


def settings_of(request: Request) -> ControllerSettings:
    settings: ControllerSettings = request.app.state.controller.settings
    return settings


def bearer(request: Request) -> str | None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def token_matches(settings: ControllerSettings, given: str | None) -> bool:
    token = settings.api_token
    if token is None or not given:
        return False
    return hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def check_token(settings: ControllerSettings, given: str | None, what: str) -> None:
    if settings.api_token is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{what} is disabled: set ALIASFLOW_API_TOKEN on the controller to enable it",
        )
    if not token_matches(settings, given):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def requires_token(what: str) -> Callable[[Request], None]:
    """A dependency for a state-changing route: the bearer token, always."""

    def dependency(request: Request) -> None:
        check_token(settings_of(request), bearer(request), what)

    return dependency


def read_access(request: Request) -> None:
    """A dependency for reads: open, or the bearer token with ALIASFLOW_DASHBOARD_AUTH."""
    settings = settings_of(request)
    if settings.dashboard_auth:
        check_token(settings, bearer(request), "reading the API")


ReadAccess = Annotated[None, Depends(read_access)]
