"""Controller-side commands: controller, validate, schema, status, diff, sync."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

API_URL_ENV = "ALIASFLOW_URL"
DEFAULT_API_URL = "http://127.0.0.1:8000"


def register(app: typer.Typer) -> None:
    app.command("controller")(controller)
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.command("status")(status)
    app.command("diff")(diff)
    app.command("sync")(sync)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def controller(
    manifests: Path | None = typer.Option(None, "--manifests", help="ALIASFLOW_MANIFESTS_DIR"),
    host: str | None = typer.Option(None, "--host", help="ALIASFLOW_HOST"),
    port: int | None = typer.Option(None, "--port", help="ALIASFLOW_PORT (default 8000)"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="ALIASFLOW_DATA_DIR"),
    database_url: str | None = typer.Option(None, "--database-url", help="ALIASFLOW_DATABASE_URL"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLFLOW_TRACKING_URI"),
    poll_interval: float | None = typer.Option(
        None, "--poll-interval", help="ALIASFLOW_POLL_INTERVAL_SECONDS"
    ),
    register_webhook: bool | None = typer.Option(
        None, "--register-webhook/--no-register-webhook", help="ALIASFLOW_REGISTER_WEBHOOK"
    ),
    public_url: str | None = typer.Option(None, "--public-url", help="ALIASFLOW_PUBLIC_URL"),
    git_url: str | None = typer.Option(None, "--git-url", help="ALIASFLOW_GIT_URL"),
    git_branch: str | None = typer.Option(None, "--git-branch", help="ALIASFLOW_GIT_BRANCH"),
    allow_empty: bool | None = typer.Option(
        None, "--allow-empty/--no-allow-empty", help="ALIASFLOW_ALLOW_EMPTY"
    ),
    log_format: str | None = typer.Option(None, "--log-format", help="json | human"),
) -> None:
    """Run the controller: HTTP API, webhook receiver, poller and reconcile workers."""
    from controller.service.settings import SettingsError, load_settings

    try:
        settings = load_settings(
            manifests_dir=manifests,
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=database_url,
            mlflow_tracking_uri=tracking_uri,
            poll_interval_seconds=poll_interval,
            register_webhook=register_webhook,
            public_url=public_url,
            git_url=git_url,
            git_branch=git_branch,
            allow_empty=allow_empty,
            log_format=log_format,
        )
    except SettingsError as exc:
        raise _fail(str(exc)) from None

    import uvicorn

    from controller.api.app import create_app
    from controller.service.logging_setup import configure_logging

    configure_logging(settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
    )


def validate(
    directory: Path = typer.Argument(Path("manifests"), help="Directory of manifests."),
) -> None:
    """Check every manifest; exit 0 when all are valid, 1 listing every error."""
    from controller.manifests.loader import load_directory

    result = load_directory(directory)
    for error in result.errors:
        typer.echo(f"error: {error}", err=True)
    if result.errors:
        typer.echo(f"{len(result.errors)} error(s); {len(result.deployments)} valid manifest(s)")
        raise typer.Exit(1)
    typer.echo(f"{len(result.deployments)} manifest(s) valid")


def schema() -> None:
    """Print the ModelDeployment JSON Schema (for editors and CI)."""
    from controller.core.manifest import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def _api(url: str | None) -> str:
    return (url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")


def _request(method: str, url: str, token: str | None = None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, headers=headers, timeout=30, trust_env=False)
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the controller at {url}: {type(exc).__name__}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise _fail(f"{response.status_code}: {detail}")
    return response.json()


def status(
    url: str | None = typer.Option(None, "--url", help=f"Controller URL (${API_URL_ENV})."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show every deployment's sync and health, as the controller sees them."""
    rows = _request("GET", f"{_api(url)}/api/deployments")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(format_status_table(rows))


def format_status_table(rows: list[dict[str, Any]]) -> str:
    columns = [
        "NAME",
        "SYNC",
        "HEALTH",
        "REASON",
        "MODEL",
        "DESIRED",
        "SERVED",
        "TARGET",
        "ENDPOINT",
        "MESSAGE",
    ]
    table = [columns]
    for row in rows:
        selector = f"@{row['alias']}" if row.get("alias") else f"v{row.get('pinned_version')}"
        reason = row.get("reason") or "-"
        # The reason has its own column; the message repeats it as a prefix.
        message = str(row.get("message") or "").removeprefix(f"{reason}: ")
        table.append(
            [
                row["name"],
                row["sync"],
                row["health"],
                reason,
                f"{row.get('model_name') or '-'}{selector}",
                row.get("desired_version") or "-",
                row.get("served_version") or "-",
                row.get("target_kind") or "-",
                row.get("endpoint") or "-",
                message[:60],
            ]
        )
    widths = [max(len(str(line[i])) for line in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
        for line in table
    )


def diff(
    manifests: Path | None = typer.Option(None, "--manifests", help="ALIASFLOW_MANIFESTS_DIR"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="ALIASFLOW_DATA_DIR"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLFLOW_TRACKING_URI"),
) -> None:
    """What a sync would do. Exit 0: nothing to do; 1: changes; 2: errors."""
    from controller.core.errors import ControllerError
    from controller.manifests.source import GitManifestSource
    from controller.reconcile.reconciler import Reconciler
    from controller.registry.mlflow_registry import MlflowRegistry
    from controller.service.settings import SettingsError, load_settings
    from controller.service.wiring import build_runtimes, load_or_create_token
    from controller.store.sql import SqlHistoryStore

    try:
        settings = load_settings(
            manifests_dir=manifests, data_dir=data_dir, mlflow_tracking_uri=tracking_uri
        )
        token = load_or_create_token(settings.data_dir / "server-admin-token")
        store = SqlHistoryStore("sqlite://")  # a dry run records nothing
        reconciler = Reconciler(
            GitManifestSource(settings.manifests_dir),
            MlflowRegistry(settings.mlflow_tracking_uri),
            build_runtimes(settings, token),
            store,
            prune=settings.prune,
            allow_empty=settings.allow_empty,
        )
        actions, problems = reconciler.diff()
    except (SettingsError, ControllerError) as exc:
        raise _fail(str(exc)) from None
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    changes = [a for a in actions if a.changes_anything]
    for action in actions:
        marker = "  " if not action.changes_anything else "* "
        typer.echo(f"{marker}{action.name}: {action.operation.value} ({action.reason})")
    if problems:
        raise typer.Exit(2)
    raise typer.Exit(1 if changes else 0)


def sync(
    name: str | None = typer.Argument(None, help="One deployment; all when omitted."),
    url: str | None = typer.Option(None, "--url", help=f"Controller URL (${API_URL_ENV})."),
    token: str | None = typer.Option(
        None, "--token", envvar="ALIASFLOW_API_TOKEN", help="API token (ALIASFLOW_API_TOKEN)."
    ),
) -> None:
    """Ask the controller to reconcile now (needs the API token)."""
    if not token:
        raise _fail("an API token is needed: pass --token or set ALIASFLOW_API_TOKEN")
    path = f"/api/deployments/{name}/sync" if name else "/api/sync"
    result = _request("POST", f"{_api(url)}{path}", token)
    typer.echo(f"sync queued: {', '.join(result['accepted']) or 'nothing'}")
