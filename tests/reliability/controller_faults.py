"""Shared pieces of the controller fault tests: manifests, settings, process checks.

The checks every fault case ends with live here, so each test states the same promise
the same way: the last good version still serves, there is exactly one model server for
the deployment (state file and /proc agree), and status and history tell the truth.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from controller.runtimes.local.process import SERVE_MODULE
from controller.runtimes.netutil import free_port, stop_process, wait_until_ready
from controller.service.settings import ControllerSettings
from tests.e2e.harness import local_port

API_TOKEN = "reliability-api-token"
MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{name: {model}, alias: {alias}}}
  port: {port}
  rollout: {{strategy: hotswap, healthTimeoutSeconds: 60}}
"""


def write_manifest(directory: Path, name: str, model: str, alias: str) -> Path:
    path = directory / f"{name}.yaml"
    port = local_port(directory, name)
    path.write_text(MANIFEST.format(name=name, model=model, alias=alias, port=port))
    return path


def controller_settings(
    manifests: Path, data_dir: Path, tracking_uri: str, **overrides: Any
) -> ControllerSettings:
    """Polling every 2 s, webhooks off unless a test turns them on."""
    values: dict[str, Any] = {
        "manifests_dir": manifests,
        "data_dir": data_dir,
        "port": free_port(),
        "mlflow_tracking_uri": tracking_uri,
        "api_token": API_TOKEN,
        "poll_interval_seconds": 2.0,
    }
    values.update(overrides)
    return ControllerSettings(**values)


def state_servers(data_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(servers, pending) of the local runtime's state file."""
    state = json.loads((data_dir / "local" / "state.json").read_text())
    return state.get("servers", {}), state.get("pending", {})


def serve_pids_for(data_dir: Path, name: str) -> list[int]:
    """Live `aliasflow serve` processes of one deployment, found through /proc.

    A model server's cmdline names only its port, but its stdout is the log file the
    local runtime opened for it, `<data dir>/.../<name>-<port>.log`: that ties a process
    to this data dir and deployment even when no state file remembers it (an orphan).
    """
    found: list[int] = []
    root = str(data_dir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if SERVE_MODULE.encode() not in args or b"serve" not in args:
                continue
            stdout = os.readlink(entry / "fd" / "1")
        except OSError:
            continue
        log_name = Path(stdout).name
        if stdout.startswith(root) and log_name.startswith(f"{name}-"):
            found.append(int(entry.name))
    return sorted(found)


def predict_version(endpoint: str, timeout: float = 10) -> str:
    response = httpx.post(
        f"{endpoint}/predict",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        trust_env=False,
        timeout=timeout,
    )
    response.raise_for_status()
    return str(response.json()["model"]["version"])


def get_json(url: str, timeout: float = 10) -> Any:
    response = httpx.get(url, trust_env=False, timeout=timeout)
    response.raise_for_status()
    return response.json()


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


@dataclass
class ControllerProcess:
    """`aliasflow controller` as a real subprocess, so a test can SIGKILL it."""

    process: subprocess.Popen[bytes]
    url: str
    log_file: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stop_process(self.process)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_controller_process(
    manifests: Path,
    data_dir: Path,
    tracking_uri: str,
    log_file: Path,
    failpoints: str = "",
    poll_interval: float = 2.0,
) -> ControllerProcess:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIASFLOW_")}
    env.update(ALIASFLOW_API_TOKEN=API_TOKEN, ALIASFLOW_FAILPOINTS=failpoints)
    log = open(log_file, "ab")  # noqa: SIM115 - the child keeps writing to it
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aliasflow_cli.main",
            "controller",
            "--manifests",
            str(manifests),
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--tracking-uri",
            tracking_uri,
            "--poll-interval",
            str(poll_interval),
            "--no-register-webhook",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/healthz", timeout=60, process=process)
    except Exception:
        stop_process(process)
        raise
    return ControllerProcess(process, url, log_file)
