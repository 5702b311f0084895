"""`aliasflow serve`: settings from the environment, then uvicorn running the app.

Exit codes: 0 after a clean shutdown, 2 for invalid settings (message, no traceback),
1 when the model cannot be loaded at boot, so a supervisor sees the failure at once
instead of a process that never becomes ready.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    import uvicorn

_ENV_NAMES = {
    "model_uri": "MODEL_URI",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "admin_token": "ALIASFLOW_ADMIN_TOKEN",
    "api_keys": "ALIASFLOW_API_KEYS",
    "model_name": "ALIASFLOW_MODEL_NAME",
    "model_version": "ALIASFLOW_MODEL_VERSION",
    "max_batch_rows": "ALIASFLOW_MAX_BATCH_ROWS",
    "max_body_bytes": "ALIASFLOW_MAX_BODY_BYTES",
    "batch_max_wait_ms": "ALIASFLOW_BATCH_MAX_WAIT_MS",
    "batch_max_rows": "ALIASFLOW_BATCH_MAX_ROWS",
    "fast_lane": "ALIASFLOW_FAST_LANE",
    "log_format": "ALIASFLOW_LOG_FORMAT",
    "log_level": "LOG_LEVEL",
}


_SECRET_FIELDS = frozenset({"admin_token", "api_keys"})


def describe_settings_error(exc: ValidationError) -> str:
    lines = ["invalid model-server settings:"]
    for error in exc.errors():
        field = str(error["loc"][0]) if error.get("loc") else "?"
        env = _ENV_NAMES.get(field, field)
        if error.get("type") == "missing":
            lines.append(f"  {env}: not set (required)")
        elif field in _SECRET_FIELDS:
            lines.append(f"  {env}: {error.get('msg')} (value not shown: it is a secret)")
        else:
            lines.append(f"  {env}: {error.get('msg')} (got {error.get('input')!r})")
    return "\n".join(lines)


def uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """The uvicorn settings of `aliasflow serve` (the benchmark's bare app uses them too)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
    )


def run_serve(host: str, port: int) -> int:
    """Serve `MODEL_URI` on host:port until stopped; returns the process exit code."""
    from model_server.link import LinkSettingsError, controller_link
    from model_server.settings import ServerSettings

    try:
        settings = ServerSettings()
        link = controller_link(settings)
    except ValidationError as exc:
        print(describe_settings_error(exc), file=sys.stderr)
        return 2
    except LinkSettingsError as exc:
        print(exc, file=sys.stderr)
        return 2

    import uvicorn

    from model_server.app import create_app
    from model_server.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    # What `mlflow models serve` sets before loading: models whose signature comes from
    # type hints read their input differently when serving (mlflow.types.type_hints).
    os.environ.setdefault("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")
    boot_failure: list[str] = []
    server: uvicorn.Server | None = None

    def on_boot_failure(reason: str) -> None:
        boot_failure.append(reason)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_boot_failure=on_boot_failure, link=link)
    server = uvicorn.Server(uvicorn_config(app, host, port))
    server.run()
    if boot_failure:
        print(f"model server stopped: {boot_failure[0]}", file=sys.stderr)
        return 1
    return 0
