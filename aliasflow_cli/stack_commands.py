"""`aliasflow up | demo | down`: the local system a new user runs first."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import typer

from aliasflow_cli.stack import (
    MODEL_NAME,
    SAMPLE_RECORD,
    Stack,
    port_or_free,
    say,
)
from aliasflow_cli.stack import (
    down as stop_everything,
)
from controller.runtimes.netutil import free_port

DATA_DIR_OPTION = typer.Option(Path(".aliasflow"), "--data-dir", envvar="ALIASFLOW_DATA_DIR")
MANIFESTS_OPTION = typer.Option(Path("manifests"), "--manifests", envvar="ALIASFLOW_MANIFESTS_DIR")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("demo")(demo)
    app.command("down")(down)


def up(
    data_dir: Path = DATA_DIR_OPTION,
    manifests: Path = MANIFESTS_OPTION,
    mlflow_port: int = typer.Option(5000, "--mlflow-port"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Start MLflow and the controller, train and promote a first model; Ctrl-C stops."""
    stack = Stack(
        data_dir.resolve(), manifests.resolve(), port_or_free(mlflow_port), port_or_free(port)
    )
    try:
        stack.start()
        version = stack.champion_version()
        if version is None:
            summary = stack.train()
            if not summary.get("registered"):
                raise RuntimeError(f"training did not register a model: {summary}")
            version = str(summary["version"])
            stack.promote(version)
            say(f"registered {MODEL_NAME} version {version} and promoted it to champion")
        else:
            say(f"{MODEL_NAME}@champion is version {version} already")
        serving = [
            stack.wait_serving(row["name"], version)
            for row in stack.deployments()
            if row.get("model_name") == MODEL_NAME and row.get("alias") == "champion"
        ]
        _banner(stack, serving)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("stopping the controller and MLflow; model servers keep serving (`make down`)")
    except (RuntimeError, TimeoutError, OSError) as exc:
        say(f"error: {exc}")
        raise typer.Exit(1) from None
    finally:
        stack.stop()


def _banner(stack: Stack, serving: list[dict[str, object]]) -> None:
    lines = [
        "",
        "aliasflow is up",
        f"  dashboard and API  {stack.controller_url}/   (API token in {stack.data_dir}/api-token)",
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
        "  promote a new version:  aliasflow train && aliasflow promote "
        f"{MODEL_NAME} --to champion --from challenger",
        "  Ctrl-C stops the controller and MLflow; `make down` stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _json(value: object) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


class PredictLoad:
    """A background client that keeps calling /predict and counts what failed."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.ok = 0
        self.failed: list[str] = []
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

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
        manifests.resolve(),
        free_port(),
        free_port(),
        poll_interval=30,
        controller_log=data_dir / "controller.log",
    )
    load: PredictLoad | None = None
    try:
        stack.start()
        first = stack.train()
        v1 = str(first["version"])
        stack.promote(v1)
        say(f"version {v1} registered and promoted to champion")
        row = stack.wait_serving("iris-local", v1)
        say(f"version {v1} serving at {row['endpoint']}; starting a background client")
        load = PredictLoad(str(row["endpoint"]))
        load.start()
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
            raise typer.Exit(1)
    except (RuntimeError, TimeoutError, OSError) as exc:
        say(f"error: {exc} (controller log: {data_dir / 'controller.log'})")
        raise typer.Exit(1) from None
    finally:
        if load is not None:
            load.stop()
        stack.stop(stop_model_servers=True)
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def down(data_dir: Path = DATA_DIR_OPTION) -> None:
    """Stop everything `make up` started, model servers included."""
    stop_everything(data_dir.resolve())
