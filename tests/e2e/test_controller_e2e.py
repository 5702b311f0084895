"""The controller end to end: real MLflow, real controller HTTP server, real model servers.

Each test follows its own alias of the shared registered model, so tests never see each
other's promotions. The controller runs in-process on a real uvicorn server; the model
servers are real `aliasflow serve` processes started by the local runtime.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from controller.runtimes.netutil import free_port
from controller.service.settings import ControllerSettings
from tests.e2e.harness import (
    RunningController,
    local_port,
    predict_version,
    serving,
    start_controller,
)
from tests.fixtures_models import IrisModels

API_TOKEN = "e2e-api-token"
MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{name: {model}, {selector}}}
  port: {port}
  rollout: {{strategy: hotswap, healthTimeoutSeconds: 60}}
"""


@dataclass
class Scenario:
    tmp: Path
    models: IrisModels
    alias: str
    manifests: Path
    data_dir: Path
    webhooks: bool
    running: list[RunningController]

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.models.tracking_uri)

    def write(self, name: str, selector: str | None = None, model: str | None = None) -> None:
        (self.manifests / f"{name}.yaml").write_text(
            MANIFEST.format(
                name=name,
                model=model or self.models.name,
                selector=selector or f"alias: {self.alias}",
                port=local_port(self.manifests, name),
            )
        )

    def promote(self, version: int | str, model: str | None = None) -> None:
        self.client.set_registered_model_alias(model or self.models.name, self.alias, str(version))

    def settings(self, **overrides: Any) -> ControllerSettings:
        port = free_port()
        values: dict[str, Any] = {
            "manifests_dir": self.manifests,
            "data_dir": self.data_dir,
            "port": port,
            "mlflow_tracking_uri": self.models.tracking_uri,
            "api_token": API_TOKEN,
            "poll_interval_seconds": 2.0 if not self.webhooks else 30.0,
            "public_url": f"http://127.0.0.1:{port}",
        }
        if self.webhooks:
            values.update(webhook_secret=uuid.uuid4().hex, register_webhook=True)
        values.update(overrides)
        return ControllerSettings(**values)

    def start(self, **overrides: Any) -> RunningController:
        running = start_controller(self.settings(**overrides))
        self.running.append(running)
        return running


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, iris_models: IrisModels, tmp_path: Path
) -> Iterator[Scenario]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    marker = request.node.get_closest_marker("webhooks")
    webhooks = marker is None or marker.args[0]
    scene = Scenario(
        tmp_path,
        iris_models,
        f"e2e{uuid.uuid4().hex[:8]}",
        manifests,
        tmp_path / "data",
        webhooks,
        [],
    )
    yield scene
    for running in scene.running:
        running.stop()
    from aliasflow_cli.stack import stop_model_servers_in

    stop_model_servers_in(scene.data_dir)


def test_promotion_by_webhook_hot_swaps_without_failed_requests(scenario: Scenario) -> None:
    scenario.write("iris-e2e")
    scenario.promote(1)
    running = scenario.start()
    row = running.wait_for("iris-e2e", serving("1"))
    endpoint = row["endpoint"]
    assert predict_version(endpoint) == "1"

    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"{endpoint}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
                    )
                    if response.status_code != 200:
                        failures.append(str(response.status_code))
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)

    load = threading.Thread(target=hammer)
    load.start()
    try:
        started = time.monotonic()
        scenario.promote(2)
        deadline = time.monotonic() + 30
        while predict_version(endpoint) != "2" and time.monotonic() < deadline:
            time.sleep(0.05)
        latency = time.monotonic() - started
    finally:
        stop.set()
        load.join()
    assert predict_version(endpoint) == "2"
    assert failures == []
    assert latency < 10, f"webhook promotion took {latency:.1f}s"
    row = running.wait_for("iris-e2e", serving("2"))
    assert row["endpoint"] == endpoint  # a hot swap keeps the workload
    history = running.history("iris-e2e")
    assert [h["action"] for h in history[:2]] == ["hotswap", "create"]
    assert history[0]["trigger"] == "webhook"
    assert history[0]["run_id"]
    metrics = httpx.get(f"{running.url}/metrics", trust_env=False).text
    assert 'aliasflow_webhook_deliveries_total{outcome="accepted",source="mlflow"}' in metrics


@pytest.mark.webhooks(False)
def test_polling_alone_converges(scenario: Scenario) -> None:
    scenario.write("iris-poll")
    scenario.promote(1)
    running = scenario.start()
    running.wait_for("iris-poll", serving("1"))
    assert not running.controller.state.webhook_registered
    scenario.promote(2)
    running.wait_for("iris-poll", serving("2"), timeout=30)
    assert running.history("iris-poll")[0]["trigger"] == "poll"


@pytest.mark.webhooks(False)
def test_pinned_version_ignores_alias_moves(scenario: Scenario) -> None:
    scenario.write("iris-pinned", selector="version: 1")
    scenario.promote(2)
    running = scenario.start()
    row = running.wait_for("iris-pinned", serving("1"))
    assert predict_version(row["endpoint"]) == "1"


@pytest.mark.webhooks(False)
def test_deleted_alias_keeps_serving_and_degrades(scenario: Scenario) -> None:
    scenario.write("iris-alias")
    scenario.promote(1)
    running = scenario.start()
    row = running.wait_for("iris-alias", serving("1"))
    scenario.client.delete_registered_model_alias(scenario.models.name, scenario.alias)
    degraded = running.wait_for("iris-alias", lambda r: r["health"] == "Degraded", timeout=30)
    assert "AliasMissing" in degraded["message"]
    assert predict_version(row["endpoint"]) == "1"


def test_bad_version_is_not_swapped_in(scenario: Scenario) -> None:
    bad = scenario.models.bad_name
    scenario.write("iris-bad", model=bad)
    scenario.promote(4, model=bad)  # loads fine: the incompatible-signature one
    running = scenario.start()
    row = running.wait_for("iris-bad", serving("4"))
    scenario.promote(1, model=bad)  # artifact does not load
    degraded = running.wait_for("iris-bad", lambda r: r["health"] == "Degraded", timeout=60)
    assert "RolloutRejected" in degraded["message"] or "HealthCheckFailed" in degraded["message"]
    response = httpx.get(f"{row['endpoint']}/metadata", trust_env=False)
    assert str(response.json()["version"]) == "4"


@pytest.mark.webhooks(False)
def test_restart_adopts_servers_and_self_heals_a_killed_one(scenario: Scenario) -> None:
    scenario.write("iris-adopt")
    scenario.promote(1)
    first = scenario.start()
    row = first.wait_for("iris-adopt", serving("1"))
    first.stop()
    scenario.running.remove(first)

    second = scenario.start()
    adopted = second.wait_for("iris-adopt", serving("1"))
    assert adopted["endpoint"] == row["endpoint"]  # the same server, no duplicate
    assert len(second.history("iris-adopt")) == 1

    pid = _pid_of(scenario.data_dir, "iris-adopt")
    os.kill(pid, signal.SIGKILL)
    healed = second.wait_for(
        "iris-adopt",
        lambda r: r["health"] == "Healthy" and (r["last_sync"] or {}).get("action") == "recreate",
        timeout=60,
    )
    assert healed["endpoint"] == row["endpoint"]  # a new server, on the same address
    assert _pid_of(scenario.data_dir, "iris-adopt") != pid
    assert predict_version(healed["endpoint"]) == "1"
    assert second.history("iris-adopt")[0]["action"] == "recreate"


@pytest.mark.webhooks(False)
def test_prune_removes_a_deleted_manifest_but_not_on_errors(scenario: Scenario) -> None:
    scenario.write("iris-keep")
    scenario.write("iris-gone")
    scenario.promote(1)
    running = scenario.start()
    running.wait_for("iris-keep", serving("1"))
    gone = running.wait_for("iris-gone", serving("1"))
    (scenario.manifests / "iris-gone.yaml").unlink()
    (scenario.manifests / "broken.yaml").write_text("kind: [")
    running.wait_for_polls()  # a whole poll with a broken manifest: nothing pruned
    assert predict_version(gone["endpoint"]) == "1"
    (scenario.manifests / "broken.yaml").unlink()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            predict_version(gone["endpoint"])
        except httpx.HTTPError:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the orphaned server was never pruned")
    assert running.history("iris-gone")[0]["action"] == "delete"


@pytest.mark.webhooks(False)
def test_diff_exit_codes(scenario: Scenario) -> None:
    scenario.write("iris-diff")
    scenario.promote(1)

    def diff() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "aliasflow_cli.main",
                "diff",
                "--manifests",
                str(scenario.manifests),
                "--data-dir",
                str(scenario.data_dir),
                "--tracking-uri",
                scenario.models.tracking_uri,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    before = diff()
    assert before.returncode == 1, before.stderr
    assert "iris-diff: create" in before.stdout
    running = scenario.start()
    running.wait_for("iris-diff", serving("1"))
    converged = diff()
    assert converged.returncode == 0, converged.stdout + converged.stderr
    (scenario.manifests / "broken.yaml").write_text("kind: [")
    broken = diff()
    assert broken.returncode == 2
    assert "broken.yaml" in broken.stderr


def _pid_of(data_dir: Path, name: str) -> int:
    import json

    state = json.loads((data_dir / "local" / "state.json").read_text())
    servers = state.get("servers", state)
    return int(servers[name]["pid"])
