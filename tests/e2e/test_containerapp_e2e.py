"""Container Apps end to end: real MLflow, the real controller on uvicorn, the real Azure
SDK, and the Container Apps emulator in backed mode (each replica is a real model server
behind an ingress that splits traffic by revision weights).

One scenario walks a deployment with two replicas through its life on
`target.kind: containerapp`: created; promoted by hot swap under load (every replica
swaps itself through the server link, no new revision, no failed request); scaled out
and a replica restarted after the swap (both boot on the new version); a resources
change rolled out as a new revision under load (proven before it takes the traffic, no
failed request); steady (one list, zero writes); pruned. Another survives a 429 and a
500 storm. No secret may appear in what the emulator sent, the API, the history or the
logs.

Not here: a canary promotion whose observed split follows the steps through the
platform's traffic weights. That needs `rollout.strategy: canary` (issue 14, not built
yet); the emulator's ingress already splits by weights exactly
(tests/contract/containerapps/test_containerapps_backed.py).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from aliasflow_cli.devstack import MlflowServer
from controller.api.app import create_app
from controller.runtimes.containerapp import ContainerAppRuntime
from controller.runtimes.netutil import free_port, wait_until_ready
from controller.service.controller import Controller
from controller.service.settings import ControllerSettings
from tests.containerapps_emulator import CLIENT_ID, CLIENT_SECRET, TENANT, ContainerAppsEmulator
from tests.containerapps_emulator.state import App
from tests.e2e.harness import RunningController

SUB = "33333333-4444-5555-6666-777777777777"
RG = "rg-aca-e2e"
NAME = "iris-aca"
API_TOKEN = "aca-e2e-api-token"
ADMIN_SECRET = "aca-e2e-controller-secret"
SECRET = "aca-e2e-secret-value"
MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{name: {model}, alias: {alias}}}
  target:
    kind: containerapp
    containerapp:
      subscriptionId: {sub}
      resourceGroup: {rg}
      environment: ml-prod
      location: westeurope
      replicas: {{min: {min}, max: 3}}
      scale: {{concurrentRequests: 10}}
  image: aliasflow-server:1
  resources: {{cpu: {cpu}, memoryGB: {memory}}}
  env: {{LOG_LEVEL: info}}
  secretEnv:
    MLFLOW_TRACKING_TOKEN: {{fromEnv: ACA_E2E_SECRET}}
  rollout: {{strategy: hotswap, healthTimeoutSeconds: 150}}
"""


def wait(check: Callable[[], Any], what: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Load:
    """Predictions through the app's ingress, one after another, until stopped."""

    url: str
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True, name="load")
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with httpx.Client(timeout=30, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    answer = http.post(
                        f"{self.url}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
                    )
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                    continue
                self.answers[str(answer.json()["model"]["version"])] += 1


@dataclass
class Scenario:
    running: RunningController
    emulator: ContainerAppsEmulator
    manifest: Path
    model: str
    alias: str

    @property
    def controller(self) -> Controller:
        return self.running.controller

    @property
    def runtime(self) -> ContainerAppRuntime:
        runtime = self.controller.runtimes["containerapp"]
        assert isinstance(runtime, ContainerAppRuntime)
        return runtime

    def write(self, *, replicas: int = 2, cpu: float = 0.5) -> None:
        self.manifest.write_text(
            MANIFEST.format(
                name=NAME,
                model=self.model,
                alias=self.alias,
                sub=SUB,
                rg=RG,
                min=replicas,
                cpu=cpu,
                memory=cpu * 2,
            )
        )

    def app(self) -> App:
        return self.emulator.find(SUB, RG, NAME)

    def row(self) -> dict[str, Any]:
        """The deployment's row, {} until the controller read its manifest."""
        answer = httpx.get(f"{self.running.url}/api/deployments/{NAME}", trust_env=False)
        return {} if answer.status_code == 404 else dict(answer.json())

    def serving(self, version: str) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            row = self.row()
            healthy = row.get("health") == "Healthy" and row.get("served_version") == version
            return row if healthy else None

        return check

    def replica_versions(self) -> list[str]:
        """What every replica of the active revisions answers itself (not the ingress)."""
        versions = []
        for revision in self.app().revisions.values():
            for replica in revision.replicas if revision.active else []:
                assert replica.endpoint is not None
                health = httpx.get(f"{replica.endpoint}/health", timeout=10, trust_env=False)
                versions.append(str(health.json()["model"]["version"]))
        return versions


def start(settings: ControllerSettings, emulator: ContainerAppsEmulator) -> RunningController:
    """The controller on uvicorn, its containerapp runtime pointed at the emulator's
    ingresses (an app's FQDN does not resolve here) before its first poll."""
    controller = Controller(settings)
    runtime = controller.runtimes["containerapp"]
    assert isinstance(runtime, ContainerAppRuntime)
    runtime.endpoint_resolver = emulator.resolve_endpoint
    runtime.check_interval = 0.2
    app = create_app(settings, controller)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    wait_until_ready(f"{url}/healthz", timeout=30)
    return RunningController(url, server, thread, app)


@pytest.fixture(scope="module")
def emulator() -> Iterator[ContainerAppsEmulator]:
    emu = ContainerAppsEmulator(backed=True, ready_timeout=150).start()
    emu.add_environment(SUB, RG, "ml-prod")
    yield emu
    emu.stop()


@pytest.fixture
def scenario(
    tmp_path: Path,
    emulator: ContainerAppsEmulator,
    mlflow_server: MlflowServer,
    runtime_model: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Scenario]:
    from mlflow import MlflowClient

    alias = f"e2e{uuid.uuid4().hex[:6]}"
    MlflowClient(mlflow_server.url).set_registered_model_alias(runtime_model, alias, "1")
    monkeypatch.setenv("ACA_E2E_SECRET", SECRET)
    # A service principal, through DefaultAzureCredential's EnvironmentCredential.
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    port = free_port()
    settings = ControllerSettings(
        manifests_dir=manifests,
        data_dir=tmp_path / "data",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        mlflow_tracking_uri=mlflow_server.url,
        api_token=API_TOKEN,
        server_admin_token=ADMIN_SECRET,
        poll_interval_seconds=1.0,
        allow_empty=True,
        containerapp_resource_groups=f"{SUB}/{RG}",
        containerapp_link_poll_seconds=0.5,
        containerapp_drain_seconds=1.0,
        aci_arm_url=emulator.url,
        aci_authority_host=emulator.url,
        aci_disable_instance_discovery=True,
        aci_ca_bundle=emulator.ca_path,
        aci_polling_interval_seconds=0.2,
    )
    scenario = Scenario(
        start(settings, emulator), emulator, manifests / f"{NAME}.yaml", runtime_model, alias
    )
    try:
        yield scenario
    finally:
        scenario.running.stop()
        if emulator.state.app(SUB, RG, NAME) is not None:
            # A failed test must not leave its replicas to the next one.
            emulator.state.delete(SUB, RG, NAME)
            emulator.state.settle()
        assert emulator.violations == []


def test_containerapp_deployment_lifecycle(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    state, running = scenario.emulator.state, scenario.running

    # 1. Created with two replicas, both on version 1 and reporting it.
    scenario.write()
    created = wait(scenario.serving("1"), "create serving version 1")
    assert scenario.replica_versions() == ["1", "1"]
    (first,) = scenario.app().revisions
    ingress = created["endpoint"]
    assert ingress == scenario.emulator.resolve_endpoint(scenario.app().fqdn())
    assert state.calls[("PUT", "app")] == 1

    # 2. Promoted by hot swap under load: no new revision, no failed request, and every
    #    replica on version 2 before the deployment says Healthy.
    with Load(ingress) as load:
        time.sleep(1.0)
        from mlflow import MlflowClient

        MlflowClient(running.controller.settings.mlflow_tracking_uri).set_registered_model_alias(
            scenario.model, scenario.alias, "2"
        )
        wait(scenario.serving("2"), "hot swap to version 2")
        assert scenario.replica_versions() == ["2", "2"]
        time.sleep(1.0)
    assert load.failures == []
    assert load.answers["1"] > 0
    assert load.answers["2"] > 0
    assert list(scenario.app().revisions) == [first]
    assert state.calls[("PUT", "app")] == 1
    assert running.history(NAME)[0]["action"] == "hotswap"

    # 3. Scale-out after the swap: the new replica boots on version 2 (no swap of its
    #    own: it asked the controller before loading anything).
    app = scenario.app()
    scenario.emulator.scale(app, first, 3)
    newcomer = app.revisions[first].replicas[-1]
    assert newcomer.endpoint is not None
    assert scenario.replica_versions() == ["2", "2", "2"]
    metrics = httpx.get(f"{newcomer.endpoint}/metrics", timeout=10, trust_env=False).text
    assert not re.search(
        r'^aliasflow_server_model_swaps_total\{result="swapped"\} [1-9]', metrics, re.M
    )
    wait(
        lambda: newcomer.name in running.controller.links.reports(NAME),
        "the new replica's report",
        30,
    )
    wait(scenario.serving("2"), "three replicas on version 2", 30)
    # A replica whose container restarts comes back on version 2 as well, not on the
    # revision's MODEL_URI (version 1).
    scenario.emulator.restart_replica(app, first, 0)
    assert scenario.replica_versions() == ["2", "2", "2"]

    # 4. A resources change is a new revision, proven before it takes the traffic, with
    #    no failed request; the old revision is deactivated after the drain.
    with Load(ingress) as load:
        time.sleep(1.0)
        scenario.write(cpu=1.0)
        wait(
            lambda: (
                running.history(NAME)[0]["action"] == "recreate"
                and running.history(NAME)[0]["result"] == "Succeeded"
            ),
            "the new revision rolled out",
        )
        time.sleep(1.0)
    assert load.failures == []
    assert set(load.answers) == {"2"}
    app = scenario.app()
    (second,) = set(app.revisions) - {first}
    assert app.weights() == {second: 100}
    assert not app.revisions[first].active
    container = app.revisions[second].template["containers"][0]
    assert container["resources"] == {"cpu": 1.0, "memory": "2Gi"}
    boots = {e["name"]: e.get("value") for e in container["env"]}
    assert boots["MODEL_URI"] == f"models:/{scenario.model}/2"
    assert scenario.replica_versions() == ["2", "2"]
    wait(scenario.serving("2"), "Healthy on the new revision", 30)

    # 5. Steady: a full pass lists once and writes nothing.
    queued: list[str] = []
    with running.controller._poll_lock:
        state.reset_counters()
        running.controller.reconciler.sync_all("poll", lambda name, _t: queued.append(name))
    assert state.calls[("GET", "list")] == 1
    assert state.writes == 0
    assert queued == []

    # 6. Pruned when the manifest goes.
    scenario.manifest.unlink()
    wait(lambda: state.app(SUB, RG, NAME) is None, "prune", 60)

    # Secrets: never in ARM's answers, the API, the history or the logs.
    sent = b"".join(state.sent).decode(errors="replace")
    api = httpx.get(f"{running.url}/api/deployments", trust_env=False).text
    history = str(running.history(NAME))
    key = scenario.runtime.server_key(NAME)
    for secret in (SECRET, ADMIN_SECRET, CLIENT_SECRET, key):
        assert secret not in sent
        assert secret not in api
        assert secret not in history
        assert secret not in caplog.text


def test_a_throttling_storm_and_500s_on_the_put_are_survived_without_duplicates(
    scenario: Scenario,
) -> None:
    """ARM answers 429 (Retry-After 1 s) to everything for 6 s, then 500 to the first two
    PUTs of the app: the SDK re-sends them, and the same spec names the same revision."""
    state = scenario.emulator.state
    state.throttle(seconds=6, retry_after=1)
    state.faults.errors_500 = 2
    state.faults.errors_500_routes = {("PUT", "app")}
    started = time.monotonic()
    scenario.write(replicas=1)
    wait(scenario.serving("1"), "convergence after the storm", 180)
    assert time.monotonic() - started >= 5.5  # nothing got through the storm early
    assert [a.name for a in state.in_resource_group(SUB, RG)] == [NAME]
    assert len(scenario.app().revisions) == 1
    assert state.failed[("PUT", "app")] == 2
    assert state.calls[("PUT", "app")] == 3  # two refused, one taken
    # Honouring Retry-After: about one request per second per caller, not a retry loop.
    assert 0 < sum(state.throttled.values()) < 40, state.throttled
    assert scenario.replica_versions() == ["1"]
