"""A controller on a real uvicorn server in this process, and how tests read it back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from controller.api.app import create_app
from controller.runtimes.netutil import free_port, wait_until_ready
from controller.service.controller import Controller
from controller.service.settings import ControllerSettings


@dataclass
class RunningController:
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    app: Any

    @property
    def controller(self) -> Controller:
        controller: Controller = self.app.state.controller
        return controller

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def deployment(self, name: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/deployments/{name}", trust_env=False, timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def history(self, name: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/api/deployments/{name}/history", trust_env=False, timeout=10
        )
        rows: list[dict[str, Any]] = response.json()
        return rows

    def wait_for(
        self, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        row: dict[str, Any] = {}
        while time.monotonic() < deadline:
            row = self.deployment(name)
            if check(row):
                return row
            time.sleep(0.2)
        raise AssertionError(f"{name} never reached the expected state: {row}")

    def wait_for_history(
        self, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        """Until a history row of `name` passes `check`; the row. For what the status
        shows only briefly (a refusal or rollback the next pass reports as in sync)."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.history(name)
            for row in rows:
                if check(row):
                    return row
            time.sleep(0.2)
        raise AssertionError(f"no history row of {name} as expected; newest: {rows[:3]}")

    def wait_for_polls(self, timeout: float = 30) -> None:
        """Until a poll that began after this call has run whole, prune included.

        `last_poll_at` is when a poll began (set once MLflow answered): the first value
        past this call belongs to a poll that read the manifests as the test left them,
        and the next one begins only after that poll's full pass ended.
        """
        state = self.controller.state
        began = time.time()
        deadline = time.monotonic() + timeout

        def advanced(beyond: float) -> float:
            while time.monotonic() < deadline:
                at = state.last_poll_at
                if at is not None and at > beyond:
                    return at
                time.sleep(0.05)
            raise AssertionError(f"the controller did not poll within {timeout}s")

        advanced(advanced(began - 1e-6))


def serving(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda row: row["health"] == "Healthy" and row["served_version"] == version


def start_controller(settings: ControllerSettings) -> RunningController:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    wait_until_ready(f"{url}/healthz", timeout=30)
    return RunningController(url, server, thread, app)


def predict_version(endpoint: str) -> str:
    response = httpx.post(
        f"{endpoint}/predict",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        trust_env=False,
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["model"]["version"])


_PORTS: dict[tuple[Path, str], int] = {}


def local_port(manifests_dir: Path, name: str) -> int:
    """A free port for a local deployment, the same each time a test writes its manifest
    (into `tmp_path/manifests` or a staging dir beside it: keyed by that test's tmp dir).

    A local deployment serves on its manifest's `port`: tests never use the default 8080,
    which a developer's `make up` (or another test run) may hold.
    """
    key = (manifests_dir.resolve().parent, name)
    if key not in _PORTS:
        _PORTS[key] = free_port()
    return _PORTS[key]


def follow_alias(
    manifests_dir: Path, name: str, model: str, alias: str, health_timeout_s: int
) -> None:
    """Write a hot-swap manifest for deployment `name` following `model@alias`."""
    manifests_dir.mkdir(parents=True, exist_ok=True)
    (manifests_dir / f"{name}.yaml").write_text(
        "apiVersion: aliasflow/v1\n"
        "kind: ModelDeployment\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        f"  model: {{name: {model}, alias: {alias}}}\n"
        f"  port: {local_port(manifests_dir, name)}\n"
        f"  rollout: {{strategy: hotswap, healthTimeoutSeconds: {health_timeout_s}}}\n"
    )


def polling_settings(
    manifests_dir: Path, data_dir: Path, tracking_uri: str, poll_interval_s: float = 1.0
) -> ControllerSettings:
    """A controller that finds alias moves by polling alone (no webhook to register)."""
    port = free_port()
    return ControllerSettings(
        manifests_dir=manifests_dir,
        data_dir=data_dir,
        port=port,
        mlflow_tracking_uri=tracking_uri,
        api_token="harness-api-token",
        poll_interval_seconds=poll_interval_s,
        public_url=f"http://127.0.0.1:{port}",
    )
