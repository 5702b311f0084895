"""The local system `make up` and `make demo` run: MLflow, the controller, a first model.

Everything is a real process on loopback: an `mlflow server` with webhooks allowed to
loopback, `aliasflow controller` on the local runtime, and the model servers the
controller starts. Secrets the stack needs (webhook secret, API token) are generated
once into the data dir, readable only by the user.

A stack is one thing to start and stop. While `aliasflow up` runs it holds a lock on the
data dir, so a second start is refused without touching anything; every process it
starts is written to `stack.json` the moment it exists (pid and start time, see
`processes.py`), so a refused start, a crash or a signal cannot lose track of one; and
`aliasflow down` stops exactly what that file and the local runtime's inventory name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aliasflow_cli.devstack import MlflowServer, spawn_mlflow_server
from aliasflow_cli.processes import ProcessRecord
from controller.runtimes.netutil import ProcessDiedError, free_port, stop_process, wait_until_ready

MODEL_NAME = "iris-classifier"
CHAMPION = "champion"
SAMPLE_RECORD = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}
RECORD_FILE = "stack.json"
LOCK_FILE = "stack.lock"
PORTS_FILE = "ports.json"
MLFLOW_START_TIMEOUT = 180.0
CONTROLLER_START_TIMEOUT = 60.0


class StackError(RuntimeError):
    """The stack could not do what was asked; the message says what to do."""


class StackRefusedError(StackError):
    """A start refused before anything was touched (another stack runs on this data dir)."""


def say(message: str) -> None:
    # A closed terminal (SIGHUP) must not stop the clean-up that follows.
    with contextlib.suppress(OSError, ValueError):
        print(f"aliasflow | {message}", flush=True)


def port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as probe:
        # As the servers bind: a port whose last connections wait in TIME_WAIT (a stack
        # stopped a minute ago) is free, one that something listens on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def remembered_ports(data_dir: Path) -> dict[str, int]:
    """The ports the last stack used: a restarted stack keeps its addresses when it can."""
    try:
        raw = json.loads((data_dir / PORTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in raw.items() if isinstance(v, int)} if isinstance(raw, dict) else {}


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
    _lock: int | None = None
    _processes: list[ProcessRecord] = field(default_factory=list)

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    # -- starting ---------------------------------------------------------------------

    def start(self, done: Callable[[str], None] = say) -> None:
        """Claim the data dir, then MLflow, then the controller; `done` hears each phase."""
        if self._lock is None:
            self.claim()
        began = time.monotonic()
        self.start_mlflow()
        done(f"MLflow is up at {self.mlflow_url} ({time.monotonic() - began:.0f} s)")
        began = time.monotonic()
        self.start_controller()
        done(f"controller is up at {self.controller_url} ({time.monotonic() - began:.0f} s)")

    def claim(self) -> None:
        """Take the data dir for this stack, or refuse without touching anything."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            owner = read_record(self.data_dir).get("owner") or {}
            raise StackRefusedError(
                f"a stack from {self.data_dir} is already running (`aliasflow up`, pid "
                f"{owner.get('pid', '?')}); use it, or stop it with `make down`"
            ) from None
        left = [p for p in recorded_processes(self.data_dir) if p.alive()]
        if left:
            os.close(lock)  # releases the lock
            names = ", ".join(f"{p.role} (pid {p.pid})" for p in left)
            raise StackRefusedError(
                f"{names} from an earlier `aliasflow up` on {self.data_dir} still run; "
                "`make down` stops them"
            )
        self._lock = lock
        self._processes = []

    def start_mlflow(self) -> None:
        self.mlflow = spawn_mlflow_server(self.data_dir / "mlflow", port=self.mlflow_port)
        self._recorded("MLflow", self.mlflow.process.pid)
        try:
            self.mlflow.wait_ready(MLFLOW_START_TIMEOUT)
        except ProcessDiedError:
            raise StackError(
                f"MLflow exited before it answered on {self.mlflow_url}; its log: {self.mlflow.log}"
            ) from None
        except TimeoutError:
            raise StackError(
                f"MLflow did not answer on {self.mlflow_url} within "
                f"{MLFLOW_START_TIMEOUT:.0f} s; its log: {self.mlflow.log}"
            ) from None

    def start_controller(self) -> None:
        # Here, not at import: `aliasflow serve` imports this module too, and
        # controller.service brings in MLflow, seconds of a model server's cold start.
        from controller.service.wiring import load_or_create_token

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
        output = open(self.controller_log, "ab") if self.controller_log else None  # noqa: SIM115
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "aliasflow_cli.main", "controller"],
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        if output is not None:
            output.close()
        self._recorded("controller", self.controller.pid)
        where = f"its log: {self.controller_log}" if self.controller_log else "its log is above"
        try:
            wait_until_ready(
                f"{self.controller_url}/healthz",
                timeout=CONTROLLER_START_TIMEOUT,
                process=self.controller,
            )
        except ProcessDiedError:
            raise StackError(
                f"the controller exited with code {self.controller.returncode} before it "
                f"answered; {where}"
            ) from None
        except TimeoutError:
            raise StackError(
                f"the controller did not answer on {self.controller_url} within "
                f"{CONTROLLER_START_TIMEOUT:.0f} s; {where}"
            ) from None

    def _recorded(self, role: str, pid: int) -> None:
        self._processes.append(ProcessRecord.of(role, pid))
        self._write_record()

    def _write_record(self) -> None:
        record = {
            "owner": ProcessRecord.of("aliasflow up", os.getpid()).to_json(),
            "controller_url": self.controller_url,
            "mlflow_url": self.mlflow_url,
            "processes": [p.to_json() for p in self._processes],
        }
        path = self.data_dir / RECORD_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(temporary, path)
        ports = {"mlflow": self.mlflow_port, "controller": self.controller_port}
        (self.data_dir / PORTS_FILE).write_text(json.dumps(ports) + "\n")

    # -- using ------------------------------------------------------------------------

    def champion_version(self) -> str | None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(self.mlflow_url)
        try:
            return str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version)
        except MlflowException:
            return None

    def train(self, extra_args: list[str] | None = None, timeout: float = 600) -> dict[str, Any]:
        """`aliasflow train`, its output in the data dir's train.log (shown on failure)."""
        summary_file = self.data_dir / "last-training.json"
        log_file = self.data_dir / "train.log"
        command = [sys.executable, "-m", "aliasflow_cli.main", "train"]
        with open(log_file, "wb") as log:
            training = subprocess.Popen(
                [*command, "--summary-file", str(summary_file), *(extra_args or [])],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._recorded("training", training.pid)
        try:
            code = training.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StackError(
                f"training did not finish within {timeout:.0f} s; its log: {log_file}"
            ) from None
        finally:
            stop_process(training)  # a no-op once it has exited
        if code != 0:
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            raise StackError(f"training failed (exit {code}); the end of {log_file}:\n{tail}")
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

    def wait_serving(
        self,
        name: str,
        version: str,
        timeout: float = 180,
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Until `name` serves `version`, healthy; a `StackError` in plain words if not."""
        deadline = time.monotonic() + timeout
        row: dict[str, Any] = {}
        shown = ""
        while time.monotonic() < deadline:
            if self.controller is not None and self.controller.poll() is not None:
                raise StackError(
                    f"the controller exited with code {self.controller.returncode} while "
                    f"{name} was rolling out; its log is "
                    f"{self.controller_log or 'above'}"
                )
            row = {r["name"]: r for r in self.deployments()}.get(name, {})
            if row.get("health") == "Healthy" and row.get("served_version") == version:
                return row
            state = describe(row)
            if progress is not None and state != shown:
                progress(f"{name}: {state}")
                shown = state
            time.sleep(0.5)
        raise StackError(
            f"{name} is not serving version {version} after {timeout:.0f} s: "
            f"{describe(row)}. `aliasflow status` and the dashboard at "
            f"{self.controller_url}/ show more"
        )

    # -- stopping ---------------------------------------------------------------------

    def stop(self, stop_model_servers: bool = False) -> list[str]:
        """Stop what this stack started; the record goes only if this stack wrote it."""
        stopped: list[str] = []
        if self.controller is not None and self.controller.poll() is None:
            stop_process(self.controller)
            stopped.append(f"controller (pid {self.controller.pid})")
        if self.mlflow is not None and self.mlflow.process.poll() is None:
            self.mlflow.stop()
            stopped.append(f"MLflow (pid {self.mlflow.process.pid})")
        if stop_model_servers:
            stopped += stop_model_servers_in(self.data_dir)
        if self._lock is not None:
            (self.data_dir / RECORD_FILE).unlink(missing_ok=True)
            os.close(self._lock)
            self._lock = None
        return stopped


def describe(row: dict[str, Any]) -> str:
    """A status row in words: `Progressing (Progressing): create: no workload yet`."""
    if not row:
        return "not known to the controller yet"
    reason = f" ({row['reason']})" if row.get("reason") else ""
    message = str(row.get("message") or "").removeprefix(f"{row.get('reason')}: ")
    return f"{row.get('health')}, {row.get('sync')}{reason}: {message}"


def read_record(data_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((data_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_processes(data_dir: Path) -> list[ProcessRecord]:
    raw = read_record(data_dir).get("processes")
    records = [ProcessRecord.from_json(item) for item in raw] if isinstance(raw, list) else []
    return [record for record in records if record is not None]


def stop_model_servers_in(data_dir: Path) -> list[str]:
    from controller.runtimes.local import LocalRuntime

    token_file = data_dir / "server-admin-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    return LocalRuntime(data_dir, token, "").stop_all()


def down(data_dir: Path) -> list[str]:
    """Stop everything the stack in `data_dir` started; one line per process stopped."""
    record = read_record(data_dir)
    # Read before a running `up` removes the file on its way out.
    running = [process for process in recorded_processes(data_dir) if process.group()]
    stopped: list[str] = []
    owner = ProcessRecord.from_json(record.get("owner"))
    # A running `aliasflow up` stops its own MLflow and controller, as on Ctrl-C.
    if owner is not None and owner.interrupt(grace=30.0):
        stopped.append(f"`aliasflow up` (pid {owner.pid})")
    for process in running:
        process.stop()  # a no-op when `up` stopped it already
        stopped.append(f"{process.role} (pid {process.pid})")
    (data_dir / RECORD_FILE).unlink(missing_ok=True)
    stopped += stop_model_servers_in(data_dir)
    return stopped
