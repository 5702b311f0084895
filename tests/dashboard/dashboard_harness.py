"""Shared pieces of the dashboard tests: a controller on our in-memory seams, served for real.

`make_stack` builds a `Controller` on `MemoryRegistry` + a `MemoryRuntime` that can be
made slow (so `Progressing` lasts long enough for a browser to see it). API tests drive
it through FastAPI's TestClient; browser tests serve the same app with a real uvicorn
server on a free loopback port and drive Debian's Chromium through Playwright.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from controller.api.app import create_app
from controller.core.types import ActualState, DesiredState
from controller.registry.memory import MemoryRegistry
from controller.runtimes.memory import MemoryRuntime
from controller.runtimes.netutil import free_port
from controller.service.controller import Controller
from controller.service.settings import ControllerSettings
from tests.manifest_sources import DirectorySource

API_TOKEN = "dashboard-api-token-7f3a"
SECRET_VALUE = "s3cr3t-value-never-shown"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

FOLLOWING = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {name: iris-prod, labels: {team: ds}}
spec:
  model: {name: iris, alias: champion}
  env: {LOG_LEVEL: info}
  secretEnv:
    MLFLOW_TRACKING_TOKEN: {fromEnv: ALIASFLOW_DASHBOARD_TEST_SECRET}
"""
PINNED = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {name: iris-pinned}
spec:
  model: {name: iris, version: 1}
  port: 8081
"""


class SlowRuntime(MemoryRuntime):
    """A MemoryRuntime whose rollouts take `delay` seconds, like a model loading."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0

    def deploy(self, desired: DesiredState) -> ActualState:
        time.sleep(self.delay)
        return super().deploy(desired)

    def hotswap(self, desired: DesiredState, current: ActualState | None = None) -> ActualState:
        time.sleep(self.delay)
        return super().hotswap(desired, current)


@dataclass
class Stack:
    app: FastAPI
    controller: Controller
    registry: MemoryRegistry
    runtime: SlowRuntime
    settings: ControllerSettings

    def settle(self, timeout: float = 15) -> None:
        assert self.controller.queue.wait_idle(timeout=timeout)

    def move_alias(self, version: str) -> None:
        """What a person does in MLflow; the poller notices it, as in production."""
        self.registry.set_alias("iris", "champion", version)
        self.controller.poll_once()

    def wait_deployed(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while "iris-prod" not in self.runtime.workloads and time.monotonic() < deadline:
            time.sleep(0.02)
        self.settle()


StackFactory = Callable[..., Stack]


def build_stack(
    tmp_path: Path,
    *,
    pinned: bool = False,
    mlflow_model: str | None = None,
    **overrides: Any,
) -> Stack:
    """Manifests in tmp_path, iris v1-v3 in the registry, champion on v1, nothing started.

    With `mlflow_model`, the deployment follows that model in the real MLflow server at
    `mlflow_tracking_uri` through `MlflowRegistry` instead of the in-memory registry.
    """
    manifests = tmp_path / "manifests"
    manifests.mkdir(exist_ok=True)
    following = (
        FOLLOWING if mlflow_model is None else FOLLOWING.replace("iris,", f"{mlflow_model},")
    )
    (manifests / "iris.yaml").write_text(following)
    if pinned:
        (manifests / "iris-pinned.yaml").write_text(PINNED)
    values: dict[str, Any] = {
        "manifests_dir": manifests,
        "data_dir": tmp_path / "data",
        "api_token": API_TOKEN,
        "webhook_secret": "dashboard-webhook-secret",
        "poll_interval_seconds": 3600,
    }
    values.update(overrides)
    settings = ControllerSettings(**values)
    registry = MemoryRegistry()
    for version in ("1", "2", "3"):
        registry.add_version("iris", version)
    registry.set_alias("iris", "champion", "1")
    runtime = SlowRuntime()
    controller = Controller(
        settings,
        registry=registry if mlflow_model is None else None,
        runtimes={"local": runtime},
        source=DirectorySource(manifests, "4f2c9e1d8b7a6c5e4d3c2b1a0f9e8d7c6b5a4f3e"),
    )
    controller.reconciler.health_poll_interval = 0.01
    return Stack(create_app(settings, controller), controller, registry, runtime, settings)


# --- a real server and a real browser --------------------------------------------------


class LiveServer:
    """The app on a real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
