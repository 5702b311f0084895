"""The `aliasflow` command: one entry point whose subcommands call into the packages.

Heavy imports (MLflow, FastAPI, scikit-learn) happen inside each command so that
`aliasflow --help` and `aliasflow validate` stay fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from aliasflow_cli import controller_commands, stack_commands
from aliasflow_cli.plainhelp import PlainCommand

app = typer.Typer(
    name="aliasflow",
    help="GitOps for MLflow: move an alias, the controller deploys it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: options with their words, no boxes that cut text, no type labels.
    rich_markup_mode=None,
)


@app.command(cls=PlainCommand)
def train(
    config: Path | None = typer.Option(
        None, "--config", metavar="FILE", help="Training config (YAML)."
    ),
    summary_file: Path | None = typer.Option(
        None, "--summary-file", metavar="FILE", help="Also write the JSON summary to this file."
    ),
) -> None:
    """Train, evaluate, log to MLflow and register when the metric gate passes."""
    from training.cli import run_train

    raise typer.Exit(run_train(config, summary_file))


@app.command(cls=PlainCommand)
def promote(
    model: str = typer.Argument(..., metavar="MODEL", help="Registered model name."),
    to: str = typer.Option("champion", "--to", metavar="ALIAS", help="Alias to move."),
    version: int | None = typer.Option(
        None, "--version", metavar="VERSION", help="Version to promote."
    ),
    from_alias: str | None = typer.Option(
        None,
        "--from",
        metavar="ALIAS",
        help="Promote the version this alias points at (e.g. challenger).",
    ),
    require: list[str] = typer.Option(
        [],
        "--require",
        metavar="GATE",
        help="Gate, repeatable, quoted for the shell: 'accuracy>=champion' (at least as good "
        "as the version the alias has now), 'accuracy>=0.9', 'log_loss<=0.3'.",
        show_default=False,
    ),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        metavar="URL",
        help="MLflow address (or MLFLOW_TRACKING_URI).",
    ),
    advance: bool = typer.Option(
        False, "--advance", help="A canary under way: go to its next step now (needs the token)."
    ),
    hold: bool = typer.Option(
        False, "--hold", help="A canary under way: stay at this step until --advance."
    ),
    abort: bool = typer.Option(
        False, "--abort", help="A canary under way: stop it; the served version takes it all."
    ),
    url: str | None = typer.Option(
        None, "--url", metavar="URL", help="Controller address, for --advance/--hold/--abort."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="ALIASFLOW_API_TOKEN",
        metavar="TOKEN",
        help="API token, for --advance/--hold/--abort (or ALIASFLOW_API_TOKEN).",
    ),
) -> None:
    """Move an alias (champion by default) onto a version, if the requirements hold; or,
    with --advance, --hold or --abort, steer the canaries of the deployments following it."""
    steering = [name for name, on in (("advance", advance), ("hold", hold), ("abort", abort)) if on]
    if steering:
        from aliasflow_cli.controller_commands import steer_canaries

        if len(steering) > 1:
            raise typer.BadParameter("choose one of --advance, --hold, --abort")
        steer_canaries(model, to, steering[0], url, token)
        return
    from training.promote import run_promote

    raise typer.Exit(
        run_promote(
            model,
            to=to,
            version=version,
            from_alias=from_alias,
            requirements=require,
            tracking_uri=tracking_uri,
        )
    )


@app.command(cls=PlainCommand)
def unquarantine(
    model: str = typer.Argument(..., metavar="MODEL", help="Registered model name."),
    version: int = typer.Argument(..., metavar="VERSION", help="The quarantined version."),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        metavar="URL",
        help="MLflow address (or MLFLOW_TRACKING_URI).",
    ),
) -> None:
    """Let the controller roll out a version it quarantined after a failed analysis."""
    from training.promote import run_unquarantine

    raise typer.Exit(run_unquarantine(model, version, tracking_uri))


@app.command(cls=PlainCommand)
def serve(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        envvar="ALIASFLOW_SERVER_HOST",
        metavar="ADDRESS",
        help="Address to listen on (or ALIASFLOW_SERVER_HOST).",
    ),
    port: int = typer.Option(
        8080,
        "--port",
        envvar="ALIASFLOW_SERVER_PORT",
        metavar="PORT",
        help="Port to listen on (or ALIASFLOW_SERVER_PORT).",
    ),
) -> None:
    """Serve the model version named by MODEL_URI (the model-server image runs this)."""
    from model_server.cli import run_serve

    raise typer.Exit(run_serve(host, port))


controller_commands.register(app)
stack_commands.register(app)

if __name__ == "__main__":
    app()
