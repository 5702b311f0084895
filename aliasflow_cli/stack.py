"""The local system `make up` and `make demo` run: MLflow, the controller, a first model.

Everything is a real process on loopback: an `mlflow server` with webhooks allowed to
loopback, `aliasflow controller` on the local runtime, and the model servers the
controller starts. Secrets the stack needs (webhook secret, API token) are generated
once into the data dir, readable only by the user.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aliasflow_cli.devstack import MlflowServer, start_mlflow_server
from controller.netutil import free_port, stop_process, wait_until_ready

MODEL_NAME = "iris-classifier"
CHAMPION = "champion"
SAMPLE_RECORD = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}


def port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


@dataclass
class Stack:
    data_dir: Path
    manifests_dir: Path
    mlflow_port: int
    controller_port: int
    poll_interval: float = 10.0
    webhooks: bool = True
    controller_log: Path | None = None
    mlflow: MlflowServer | None = None
    controller: subprocess.Popen[bytes] | None = None
    api_token: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def start(self) -> None:
        # Here, not at import: `aliasflow serve` imports this module too, and
        # controller.service brings in MLflow, seconds of a model server's cold start.
        from controller.service import load_or_create_token

        self.data_dir.mkdir(parents=True, exist_ok=True)
        pid_file = self.data_dir / "stack.json"
        if pid_file.exists() and _any_alive(json.loads(pid_file.read_text())):
            raise RuntimeError(
                f"a stack from {self.data_dir} is already running; stop it with `make down`"
            )
        say(f"starting MLflow on {self.mlflow_url} ...")
        self.mlflow = start_mlflow_server(self.data_dir / "mlflow", port=self.mlflow_port)
        self.api_token = load_or_create_token(self.data_dir / "api-token")
        webhook_secret = load_or_create_token(self.data_dir / "webhook-secret")
        self.env = dict(os.environ)
        self.env.update(
            MLFLOW_TRACKING_URI=self.mlflow_url,
            ALIASFLOW_MANIFESTS_DIR=str(self.manifests_dir),
            ALIASFLOW_DATA_DIR=str(self.data_dir),
            ALIASFLOW_PORT=str(self.controller_port),
            ALIASFLOW_PUBLIC_URL=self.controller_url,
            ALIASFLOW_WEBHOOK_SECRET=webhook_secret,
            ALIASFLOW_REGISTER_WEBHOOK="true" if self.webhooks else "false",
            ALIASFLOW_API_TOKEN=self.api_token,
            ALIASFLOW_MLFLOW_UI_URL=self.mlflow_url,
            ALIASFLOW_POLL_INTERVAL_SECONDS=str(self.poll_interval),
        )
        say(f"starting the controller on {self.controller_url} ...")
        output = open(self.controller_log, "ab") if self.controller_log else None  # noqa: SIM115
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "aliasflow_cli.main", "controller"],
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        pid_file.write_text(
            json.dumps({"mlflow": self.mlflow.process.pid, "controller": self.controller.pid})
        )
        wait_until_ready(f"{self.controller_url}/healthz", timeout=60, process=self.controller)

    def champion_version(self) -> str | None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(self.mlflow_url)
        try:
            return str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version)
        except MlflowException:
            return None

    def train(self, extra_args: list[str] | None = None) -> dict[str, Any]:
        summary_file = self.data_dir / "last-training.json"
        say("training a model (aliasflow train) ...")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "aliasflow_cli.main",
                "train",
                "--summary-file",
                str(summary_file),
                *(extra_args or []),
            ],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        summary: dict[str, Any] = json.loads(summary_file.read_text())
        return summary

    def promote(self, version: str) -> float:
        """Move the champion alias; returns the time the MLflow call returned."""
        from mlflow import MlflowClient

        MlflowClient(self.mlflow_url).set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        return time.monotonic()

    def deployments(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.controller_url}/api/deployments", timeout=10, trust_env=False)
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
        return rows

    def wait_serving(self, name: str, version: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        row: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.controller is not None and self.controller.poll() is not None:
                raise RuntimeError("the controller exited; see its log")
            rows = {r["name"]: r for r in self.deployments()}
            row = rows.get(name, {})
            if row.get("health") == "Healthy" and row.get("served_version") == version:
                return row
            time.sleep(0.5)
        raise TimeoutError(f"{name} not serving version {version} after {timeout:.0f}s: {row}")

    def stop(self, stop_model_servers: bool = False) -> None:
        if self.controller is not None:
            stop_process(self.controller)
        if self.mlflow is not None:
            self.mlflow.stop()
        if stop_model_servers:
            stop_model_servers_in(self.data_dir)
        (self.data_dir / "stack.json").unlink(missing_ok=True)


def stop_model_servers_in(data_dir: Path) -> None:
    from controller.runtimes.local import LocalRuntime

    token_file = data_dir / "server-admin-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    LocalRuntime(data_dir, token, "").stop_all()


def down(data_dir: Path) -> None:
    pid_file = data_dir / "stack.json"
    if pid_file.exists():
        for role, pid in json.loads(pid_file.read_text()).items():
            if _alive(pid):
                say(f"stopping {role} (pid {pid})")
                _terminate_group(pid)
        pid_file.unlink()
    stop_model_servers_in(data_dir)
    say("everything `make up` started is stopped")


def say(message: str) -> None:
    print(f"aliasflow | {message}", flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _any_alive(pids: dict[str, int]) -> bool:
    return any(_alive(pid) for pid in pids.values())


def _terminate_group(pid: int, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
