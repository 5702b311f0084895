"""`aliasflow up | demo | down`: the local system a new user runs first.

`up` says each phase as it finishes (MLflow, controller, training, first rollout), bounds
every wait with a message that says what to look at, and treats SIGTERM and SIGHUP (a
closed terminal) like Ctrl-C: the controller and MLflow stop, nothing is orphaned.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import typer
import yaml

from aliasflow_cli.plainhelp import PlainCommand
from aliasflow_cli.stack import (
    MODEL_NAME,
    SAMPLE_RECORD,
    Stack,
    StackError,
    StackRefusedError,
    port_or_free,
    read_record,
    recorded_processes,
    remembered_ports,
    say,
)
from aliasflow_cli.stack import down as stop_everything
from controller.runtimes.netutil import free_port

DATA_DIR_OPTION = typer.Option(
    Path(".aliasflow"),
    "--data-dir",
    envvar="ALIASFLOW_DATA_DIR",
    metavar="DIR",
    help="Where the stack keeps its state, MLflow data and logs (or ALIASFLOW_DATA_DIR).",
)
MANIFESTS_OPTION = typer.Option(
    Path("manifests"),
    "--manifests",
    envvar="ALIASFLOW_MANIFESTS_DIR",
    metavar="DIR",
    help="Directory of manifests to deploy (or ALIASFLOW_MANIFESTS_DIR).",
)
ROLLOUT_TIMEOUT = 180.0
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_CONTROLLER_PORT = 8000


def register(app: typer.Typer) -> None:
    app.command("up", cls=PlainCommand)(up)
    app.command("env", cls=PlainCommand)(env)
    app.command("demo", cls=PlainCommand)(demo)
    app.command("down", cls=PlainCommand)(down)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop as Ctrl-C does."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def stop_signals_like_ctrl_c() -> None:
    """From now on SIGTERM and SIGHUP (a closed terminal) raise as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)


def ignore_stop_signals() -> None:
    """For the clean-up: a second signal must not cut it short and orphan a process."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def _choose_port(wanted: int | None, remembered: int | None, default: int, what: str) -> int:
    """The port asked for, else the one used last time, else the default; a busy one is
    replaced by a free port and said so."""
    preferred = wanted or remembered or default
    chosen = port_or_free(preferred)
    if chosen != preferred:
        why = " (macOS AirPlay listens there)" if preferred == DEFAULT_MLFLOW_PORT else ""
        say(f"port {preferred} is busy{why}; {what} uses port {chosen} instead")
    return chosen


def up(
    data_dir: Path = DATA_DIR_OPTION,
    manifests: Path = MANIFESTS_OPTION,
    mlflow_port: int | None = typer.Option(
        None,
        "--mlflow-port",
        metavar="PORT",
        help="MLflow's port (default: last time's, else 5000; a free one if it is busy).",
    ),
    port: int | None = typer.Option(
        None,
        "--port",
        metavar="PORT",
        help="The controller's port (default: last time's, else 8000; a free one if busy).",
    ),
) -> None:
    """Start MLflow and the controller, train and promote a first model; Ctrl-C stops."""
    data_dir = data_dir.resolve()
    stop_signals_like_ctrl_c()
    stack = Stack(data_dir, manifests.resolve(), DEFAULT_MLFLOW_PORT, DEFAULT_CONTROLLER_PORT)
    try:
        stack.claim()  # before anything is printed or started: a refusal touches nothing
        remembered = remembered_ports(data_dir)
        stack.mlflow_port = _choose_port(
            mlflow_port, remembered.get("mlflow"), DEFAULT_MLFLOW_PORT, "MLflow"
        )
        stack.controller_port = _choose_port(
            port, remembered.get("controller"), DEFAULT_CONTROLLER_PORT, "the controller"
        )
        _run(stack)
    except KeyboardInterrupt:
        say("stopping the controller and MLflow; model servers keep serving (`make down`)")
    except StackRefusedError as exc:
        say(f"refused: {exc}")
        raise typer.Exit(1) from None
    except (StackError, OSError, httpx.HTTPError) as exc:
        say(f"error: {exc}")
        raise typer.Exit(1) from None
    finally:
        ignore_stop_signals()
        stack.stop()


def _run(stack: Stack) -> None:
    say(f"starting MLflow on {stack.mlflow_url} (the first start takes 10-30 s) ...")
    stack.start(done=lambda phase: say(f"[ok] {phase}"))
    version = _first_model(stack)
    serving = _first_rollout(stack, version)
    _banner(stack, serving)
    while True:
        time.sleep(3600)


def _first_model(stack: Stack) -> str:
    version = stack.champion_version()
    if version is not None:
        say(f"[ok] {MODEL_NAME}@champion is version {version} already; no training needed")
        return version
    say("training a first model (aliasflow train; about 10 s) ...")
    began = time.monotonic()
    summary = stack.train()
    if not summary.get("registered"):
        raise StackError(
            f"training did not register a model (its metric gate failed): "
            f"{summary.get('reason') or 'see ' + str(stack.data_dir / 'train.log')}"
        )
    version = str(summary["version"])
    stack.promote(version)
    say(
        f"[ok] trained and registered {MODEL_NAME} version {version}, promoted to champion "
        f"({time.monotonic() - began:.0f} s)"
    )
    return version


def _first_rollout(stack: Stack, version: str) -> list[dict[str, Any]]:
    rows = stack.deployments()
    for row in rows:
        for problem in row.get("manifest_errors") or []:
            say(
                f"manifest not applied: {problem['file']}: {problem['field']}: {problem['message']}"
            )
    following = [
        row["name"]
        for row in rows
        if row.get("model_name") == MODEL_NAME
        and row.get("alias") == "champion"
        and row.get("manifest_file")
        and row.get("sync") != "Invalid"
    ]
    if not following:
        say(f"no manifest in {stack.manifests_dir} follows {MODEL_NAME}@champion")
        return []
    say(f"rolling out version {version}: {', '.join(following)} ...")
    serving = []
    for name in following:
        began = time.monotonic()
        row = stack.wait_serving(
            name, version, ROLLOUT_TIMEOUT, progress=lambda state: say(f"  {state}")
        )
        say(f"[ok] {name} serves version {version} ({time.monotonic() - began:.0f} s)")
        serving.append(row)
    return serving


def _banner(stack: Stack, serving: list[dict[str, Any]]) -> None:
    token_file = _shown_path(stack.data_dir / "api-token")
    lines = [
        "",
        "aliasflow is up",
        f"  dashboard and API  {stack.controller_url}/",
        f"  MLflow             {stack.mlflow_url}",
    ]
    for row in serving:
        endpoint = row["endpoint"]
        lines.append(f"  {row['name']:<18} {endpoint}  (version {row['served_version']})")
        lines.append(
            f"    curl -s {endpoint}/predict -H 'Content-Type: application/json' "
            f"-d '{{\"records\": [{_json(SAMPLE_RECORD)}]}}'"
        )
    lines += [
        "",
        'In another shell, from this directory (or paste: eval "$(.venv/bin/aliasflow env)"):',
        f"  export MLFLOW_TRACKING_URI={stack.mlflow_url}",
        f"  export ALIASFLOW_URL={stack.controller_url}",
        f'  export ALIASFLOW_API_TOKEN="$(cat {token_file})"',
        "  .venv/bin/aliasflow train && .venv/bin/aliasflow promote "
        f"{MODEL_NAME} --from challenger --require 'accuracy>=champion'",
        "  .venv/bin/aliasflow status",
        "",
        "Ctrl-C stops the controller and MLflow; model servers keep serving until `make down`.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def manifests_on_free_ports(source: Path, target: Path) -> Path:
    """A copy of `source` with every local deployment on a free port: the demo (and
    tests) run beside a `make up` that holds the manifests' own ports."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.y*ml")):
        documents = list(yaml.safe_load_all(path.read_text()))
        for document in documents:
            spec = document.get("spec") if isinstance(document, dict) else None
            if (
                isinstance(spec, dict)
                and (spec.get("target") or {}).get("kind", "local") == "local"
            ):
                spec["port"] = free_port()
        (target / path.name).write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return target


class PredictLoad:
    """A background client that keeps calling /predict and counts what failed."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.ok = 0
        self.failed: list[str] = []
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PredictLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        body = {"records": [SAMPLE_RECORD]}
        with httpx.Client(timeout=10, trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{self.endpoint}/predict", json=body)
                    if response.status_code != 200:
                        self.failed.append(f"HTTP {response.status_code}: {response.text[:200]}")
                        continue
                    version = str(response.json()["model"]["version"])
                    self.first_seen.setdefault(version, time.monotonic())
                    self.ok += 1
                except httpx.HTTPError as exc:
                    self.failed.append(type(exc).__name__)


def demo(
    manifests: Path = MANIFESTS_OPTION,
    keep: bool = typer.Option(False, "--keep", help="Keep the demo's data dir."),
) -> None:
    """The whole story in one go: v1 serving, v2 promoted under load, zero failed requests."""
    data_dir = Path(tempfile.mkdtemp(prefix="aliasflow-demo-"))
    stack = Stack(
        data_dir,
        manifests_on_free_ports(manifests.resolve(), data_dir / "manifests"),
        free_port(),
        free_port(),
        poll_interval=30,
        controller_log=data_dir / "controller.log",
    )
    stop_signals_like_ctrl_c()
    try:
        _demo_story(stack)
    except KeyboardInterrupt:
        say("demo interrupted; stopping everything it started")
    except (StackError, OSError, httpx.HTTPError) as exc:
        say(f"error: {exc} (controller log: {data_dir / 'controller.log'})")
        raise typer.Exit(1) from None
    finally:
        ignore_stop_signals()
        stack.stop(stop_model_servers=True)
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def _demo_story(stack: Stack) -> None:
    stack.start()
    first = stack.train()
    v1 = str(first["version"])
    stack.promote(v1)
    say(f"version {v1} registered and promoted to champion")
    row = stack.wait_serving("iris-local", v1)
    say(f"version {v1} serving at {row['endpoint']}; starting a background client")
    with PredictLoad(str(row["endpoint"])) as load:
        _promote_under_load(stack, load)


def _promote_under_load(stack: Stack, load: PredictLoad) -> None:
    second = stack.train()
    v2 = str(second["version"])
    say(f"version {v2} registered; promoting it while the client keeps calling /predict")
    promoted_at = stack.promote(v2)
    stack.wait_serving("iris-local", v2)
    deadline = time.monotonic() + 30
    while v2 not in load.first_seen and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    load.stop()
    latency = load.first_seen.get(v2, float("nan")) - promoted_at
    print(
        "\n".join(
            [
                "",
                "demo summary",
                f"  alias move -> new version answering /predict: {latency:.2f} s",
                f"  requests answered: {load.ok}",
                f"  failed requests:   {len(load.failed)}",
                "",
            ]
        ),
        flush=True,
    )
    if load.failed or v2 not in load.first_seen:
        for failure in load.failed[:10]:
            say(f"failure: {failure}")
        raise StackError("the demo saw failed requests")


def env(data_dir: Path = DATA_DIR_OPTION) -> None:
    """Print `export` lines for the stack `make up` runs: eval "$(aliasflow env)"."""
    data_dir = data_dir.resolve()
    record = read_record(data_dir)
    if not any(process.alive() for process in recorded_processes(data_dir)):
        typer.echo(
            f"error: no stack is running from {data_dir}; start one with `make up`", err=True
        )
        raise typer.Exit(1)
    token_file = _shown_path(data_dir / "api-token")
    typer.echo(f"export MLFLOW_TRACKING_URI={record['mlflow_url']}")
    typer.echo(f"export ALIASFLOW_URL={record['controller_url']}")
    typer.echo(f'export ALIASFLOW_API_TOKEN="$(cat {token_file})"')


def down(data_dir: Path = DATA_DIR_OPTION) -> None:
    """Stop everything `make up` started: MLflow, the controller and the model servers."""
    stopped = stop_everything(data_dir.resolve())
    for line in stopped:
        say(f"stopped {line}")
    say("nothing was running" if not stopped else f"stopped {len(stopped)} process(es)")
