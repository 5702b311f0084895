"""Bearer-token checks: state-changing endpoints are disabled, not open, without a token."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status
from pydantic import SecretStr


def check_bearer(request: Request, token: SecretStr | None, what: str) -> None:
    if token is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{what} is disabled: set ALIASFLOW_API_TOKEN on the controller to enable it",
        )
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
