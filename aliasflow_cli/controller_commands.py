"""Controller-side commands: controller, validate, schema, status, history, diff, sync,
rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from aliasflow_cli.api_client import (
    API_URL_ENV,
    TOKEN_ENV,
    api_url,
    fail,
    request,
    require_token,
)
from aliasflow_cli.plainhelp import PlainCommand
from aliasflow_cli.tables import format_history_table, format_status_table

URL_OPTION = typer.Option(
    None,
    "--url",
    metavar="URL",
    help=f"Controller address (or {API_URL_ENV}); default: the one `make up` started.",
)
TOKEN_OPTION = typer.Option(
    None,
    "--token",
    envvar=TOKEN_ENV,
    metavar="TOKEN",
    help=f"The controller's API token (or {TOKEN_ENV}).",
)


def register(app: typer.Typer) -> None:
    app.command("controller", cls=PlainCommand)(controller)
    app.command("validate", cls=PlainCommand)(validate)
    app.command("schema", cls=PlainCommand)(schema)
    app.command("status", cls=PlainCommand)(status)
    app.command("history", cls=PlainCommand)(history)
    app.command("diff", cls=PlainCommand)(diff)
    app.command("sync", cls=PlainCommand)(sync)
    app.command("rollback", cls=PlainCommand)(rollback)


def _setting(flag: str, metavar: str | None, words: str, env: str) -> Any:
    """An option that overrides one controller setting, in words, naming its variable."""
    if metavar is None:  # an on/off flag
        return typer.Option(None, flag, help=f"{words} (or {env}).", show_default=False)
    return typer.Option(None, flag, metavar=metavar, help=f"{words} (or {env}).")


MANIFESTS_SETTING = _setting(
    "--manifests", "DIR", "Directory of manifests; default manifests", "ALIASFLOW_MANIFESTS_DIR"
)
DATA_DIR_SETTING = _setting(
    "--data-dir", "DIR", "Where state and history live; default .aliasflow", "ALIASFLOW_DATA_DIR"
)
TRACKING_URI_SETTING = _setting("--tracking-uri", "URL", "MLflow address", "MLFLOW_TRACKING_URI")


def controller(
    manifests: Path | None = MANIFESTS_SETTING,
    host: str | None = _setting("--host", "ADDRESS", "Address to listen on", "ALIASFLOW_HOST"),
    port: int | None = _setting(
        "--port", "PORT", "Port to listen on; default 8000", "ALIASFLOW_PORT"
    ),
    data_dir: Path | None = DATA_DIR_SETTING,
    database_url: str | None = _setting(
        "--database-url",
        "URL",
        "History database; default sqlite in the data dir",
        "ALIASFLOW_DATABASE_URL",
    ),
    tracking_uri: str | None = TRACKING_URI_SETTING,
    poll_interval: float | None = _setting(
        "--poll-interval",
        "SECONDS",
        "How often to poll MLflow",
        "ALIASFLOW_POLL_INTERVAL_SECONDS",
    ),
    register_webhook: bool | None = _setting(
        "--register-webhook/--no-register-webhook",
        None,
        "Register the MLflow webhook at start",
        "ALIASFLOW_REGISTER_WEBHOOK",
    ),
    public_url: str | None = _setting(
        "--public-url", "URL", "Address MLflow calls the controller at", "ALIASFLOW_PUBLIC_URL"
    ),
    git_url: str | None = _setting(
        "--git-url", "URL", "Git remote with the manifests", "ALIASFLOW_GIT_URL"
    ),
    git_branch: str | None = _setting(
        "--git-branch", "BRANCH", "Branch to follow", "ALIASFLOW_GIT_BRANCH"
    ),
    allow_empty: bool | None = _setting(
        "--allow-empty/--no-allow-empty",
        None,
        "Let an empty manifests directory prune everything",
        "ALIASFLOW_ALLOW_EMPTY",
    ),
    log_format: str | None = _setting(
        "--log-format", "FORMAT", "human or json", "ALIASFLOW_LOG_FORMAT"
    ),
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
        raise fail(str(exc)) from None

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
    directory: Path = typer.Argument(
        Path("manifests"), metavar="DIR", help="Directory of manifests (default manifests)."
    ),
    kinds: str | None = typer.Option(
        None,
        "--kinds",
        metavar="KINDS",
        help="Target kinds the controller enables, comma-separated (default: what this "
        "environment's ALIASFLOW_* settings enable: local, plus docker, aci and "
        "containerapp when set).",
    ),
) -> None:
    """Check every manifest; exit 0 when all are valid, 1 listing every error."""
    from controller.manifests.loader import load_directory

    enabled = _enabled_kinds(kinds)
    result = load_directory(directory)
    errors = [str(error) for error in result.errors]
    for name, loaded in sorted(result.deployments.items()):
        kind = loaded.deployment.spec.target.kind.value
        if kind not in enabled:
            errors.append(
                f"{loaded.file} (document {loaded.document}): spec.target.kind: {name} "
                f"targets {kind!r}, which the controller does not enable (enabled: "
                f"{', '.join(sorted(enabled))}); {_ENABLE_HINT.get(kind, '')}"
            )
    for error in errors:
        typer.echo(f"error: {error}", err=True)
    if errors:
        typer.echo(f"{len(errors)} error(s); {len(result.deployments)} manifest(s) parsed")
        raise typer.Exit(1)
    typer.echo(f"{len(result.deployments)} manifest(s) valid")


_ENABLE_HINT = {
    "docker": "set ALIASFLOW_DOCKER_ENABLED=true where it runs, or pass --kinds",
    "aci": "set ALIASFLOW_ACI_RESOURCE_GROUPS where it runs, or pass --kinds",
    "containerapp": "set ALIASFLOW_CONTAINERAPP_RESOURCE_GROUPS where it runs, or pass --kinds",
}


def _enabled_kinds(kinds: str | None) -> set[str]:
    """What `--kinds` says, else what the controller would enable with this environment."""
    from controller.core.types import TargetKind

    known = {kind.value for kind in TargetKind}
    if kinds is not None:
        chosen = {kind.strip() for kind in kinds.split(",") if kind.strip()}
        unknown = chosen - known
        if unknown:
            raise fail(f"--kinds: unknown kind(s) {sorted(unknown)}; known: {sorted(known)}")
        return chosen
    from controller.service.settings import ControllerSettings

    settings = ControllerSettings()
    enabled = {TargetKind.LOCAL.value}
    if settings.docker_enabled:
        enabled.add(TargetKind.DOCKER.value)
    if settings.aci_resource_groups.strip():
        enabled.add(TargetKind.ACI.value)
    if settings.containerapp_resource_groups.strip():
        enabled.add(TargetKind.CONTAINERAPP.value)
    return enabled


def schema() -> None:
    """Print the ModelDeployment JSON Schema (for editors and CI)."""
    from controller.core.manifest import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def status(
    url: str | None = URL_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show every deployment's sync and health, as the controller sees them."""
    rows = request("GET", api_url(url), "/api/deployments")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(format_status_table(rows))


def history(
    name: str = typer.Argument(..., metavar="NAME", help="The deployment."),
    limit: int = typer.Option(20, "--limit", metavar="N", min=1, max=1000, help="Rows to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    url: str | None = URL_OPTION,
) -> None:
    """Show a deployment's syncs, newest first: trigger, version, action, result."""
    rows = request("GET", api_url(url), f"/api/deployments/{name}/history", params={"limit": limit})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(format_history_table(rows) if rows else f"{name}: no syncs recorded yet")


def diff(
    manifests: Path | None = MANIFESTS_SETTING,
    data_dir: Path | None = DATA_DIR_SETTING,
    tracking_uri: str | None = TRACKING_URI_SETTING,
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
        raise fail(str(exc)) from None
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
    name: str | None = typer.Argument(
        None, metavar="NAME", help="One deployment; all when omitted."
    ),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Ask the controller to reconcile now (needs the API token)."""
    path = f"/api/deployments/{name}/sync" if name else "/api/sync"
    result = request("POST", api_url(url), path, require_token(token))
    typer.echo(f"sync queued: {', '.join(result['accepted']) or 'nothing'}")


def rollback(
    name: str = typer.Argument(..., metavar="NAME", help="The deployment."),
    to: str | None = typer.Option(
        None,
        "--to",
        metavar="VERSION",
        help="Version to go back to (default: the one served before the current one).",
    ),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Move the deployment's alias back, as the dashboard's button does (needs the token)."""
    body = {"to_version": to} if to is not None else None
    plan = request(
        "POST", api_url(url), f"/api/deployments/{name}/rollback", require_token(token), body
    )
    typer.echo(
        f"{plan['deployment']}: alias {plan['alias']} of {plan['model_name']} moved back "
        f"from version {plan['from_version'] or '?'} to {plan['to_version']}; the controller "
        f"rolls it out now (watch it with `aliasflow status`)"
    )


def steer_canaries(model: str, alias: str, action: str, url: str | None, token: str | None) -> None:
    """`aliasflow promote MODEL --advance|--hold|--abort`: every canary of MODEL@alias."""
    base = api_url(url)
    rows = request("GET", base, "/api/deployments", None)
    names = [
        row["name"]
        for row in rows
        if row.get("model_name") == model
        and row.get("alias") == alias
        and row.get("reason") == "Canary"
    ]
    if not names:
        raise fail(f"no canary under way for {model}@{alias} (see `aliasflow status`)")
    key = require_token(token)
    for name in names:
        done = request("POST", base, f"/api/deployments/{name}/canary", key, {"action": action})
        typer.echo(f"{name}: {action} asked; {done['message']}")
