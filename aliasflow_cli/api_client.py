"""How the CLI reaches a controller: which address, which token, and errors in plain words.

The address is `--url`, else `ALIASFLOW_URL`, else the controller the local stack (`make
up`) recorded in its data dir, else the default port. A refusal is explained as what to
do next: a missing token says where the local stack keeps it and how to pass it; an
unreachable controller says how to start one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

API_URL_ENV = "ALIASFLOW_URL"
TOKEN_ENV = "ALIASFLOW_API_TOKEN"  # noqa: S105 - a variable name, not a secret
DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_DATA_DIR = Path(".aliasflow")
STACK_FILE = "stack.json"
TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def data_dir() -> Path:
    return Path(os.environ.get("ALIASFLOW_DATA_DIR") or DEFAULT_DATA_DIR)


def api_url(url: str | None) -> str:
    """`--url`, `ALIASFLOW_URL`, the local stack's controller, or the default."""
    chosen = url or os.environ.get(API_URL_ENV) or _stack_controller_url() or DEFAULT_API_URL
    return chosen.rstrip("/")


def _stack_controller_url() -> str | None:
    try:
        record = json.loads((data_dir() / STACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    url = record.get("controller_url") if isinstance(record, dict) else None
    return url if isinstance(url, str) else None


def token_hint() -> str:
    token_file = data_dir().resolve() / TOKEN_FILE
    where = (
        f"the stack `make up` started keeps it in {token_file}"
        if token_file.exists()
        else f"`make up` writes it to {token_file}; another controller has its own "
        "ALIASFLOW_API_TOKEN"
    )
    return (
        f"this needs the controller's API token: {where}. Pass it with "
        f'--token "$(cat {token_file})" or export {TOKEN_ENV}="$(cat {token_file})"'
    )


def require_token(token: str | None) -> str:
    if not token:
        raise fail(token_hint())
    return token


def request(
    method: str,
    base: str,
    path: str,
    token: str | None = None,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(
            method,
            f"{base}{path}",
            headers=headers,
            json=body,
            params=params,
            timeout=30,
            trust_env=False,
        )
    except httpx.HTTPError:
        raise fail(
            f"no controller answers at {base}. Start one with `make up` (or `aliasflow "
            f"controller`), or point --url / {API_URL_ENV} at the one you run"
        ) from None
    if response.status_code >= 400:
        raise fail(_refusal(response.status_code, _detail(response)))
    return response.json()


def _detail(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text)
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)


def _refusal(status: int, detail: str) -> str:
    if status == 401:
        return f"the controller refused the API token ({detail}); {token_hint()}"
    return f"{status}: {detail}"
