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

Canary and shadow under load: the split travels the server link and every replica
splits its own requests, so the share of answers from the canary (the
`X-Aliasflow-Model-Version` header) follows each step's weight across the app (a
binomial test at 99%), judged on the replicas' counters summed by the controller, and
ends with every replica on the new version; a slow canary is rolled back at its first
step (alias back, quarantined); a replica that starts mid-canary boots into the split; a
shadow is set on every replica and removed again, without changing an answer. None of
it makes a new revision.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from aliasflow_cli.devstack import MlflowServer
from controller.api.app import create_app
from controller.reconcile.analysis import parse_server_metrics
from controller.runtimes.containerapp import ContainerAppRuntime
from controller.runtimes.netutil import free_port, wait_until_ready
from controller.service.controller import Controller
from controller.service.settings import ControllerSettings
from tests.containerapps_emulator import CLIENT_ID, CLIENT_SECRET, TENANT, ContainerAppsEmulator
from tests.containerapps_emulator.state import App
from tests.e2e.harness import RunningController
from tests.fixtures_models import PromotionModels

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
  rollout: {rollout}
{extra}"""
HOTSWAP = "{strategy: hotswap, healthTimeoutSeconds: 150}"
# Steps of a few seconds: long enough for a few hundred answers each under the load.
STEPS = ((30, 5), (70, 5))
CANARY = (
    "\n    strategy: canary\n"
    f"    steps: [{', '.join(f'{{weight: {w}, seconds: {s}}}' for w, s in STEPS)}]\n"
    "    healthTimeoutSeconds: 60\n"
    "    analysis: {minRequests: 20, maxErrorRate: 0.02, bakeSeconds: 2}"
)


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

    def write(
        self,
        *,
        replicas: int = 2,
        cpu: float = 0.5,
        rollout: str = HOTSWAP,
        shadow: str | None = None,
    ) -> None:
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
                rollout=rollout,
                extra=f"  shadow: {shadow}\n" if shadow else "",
            )
        )

    def detail(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.running.url}/api/deployments/{NAME}", trust_env=False)
        return dict(answer.json()) if answer.status_code == 200 else {}

    def splits(self) -> set[tuple[str | None, int, str | None, int]]:
        """The split each live replica reports applying (from the controller's record)."""
        return {
            (t.canary_version, t.canary_weight, t.shadow_version, t.shadow_percent)
            if (t := r.traffic) is not None
            else (None, 0, None, 0)
            for r in self.controller.links.reports(NAME).values()
        }

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


@contextmanager
def running_scenario(
    tmp_path: Path, emulator: ContainerAppsEmulator, tracking_uri: str, model: str
) -> Iterator[Scenario]:
    """A controller for one deployment of `model` on the emulator, its alias at version 1."""
    from mlflow import MlflowClient

    alias = f"e2e{uuid.uuid4().hex[:6]}"
    MlflowClient(tracking_uri).set_registered_model_alias(model, alias, "1")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    port = free_port()
    settings = ControllerSettings(
        manifests_dir=manifests,
        data_dir=tmp_path / "data",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        mlflow_tracking_uri=tracking_uri,
        api_token=API_TOKEN,
        server_admin_token=ADMIN_SECRET,
        poll_interval_seconds=1.0,
        analysis_interval_seconds=0.5,
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
        start(settings, emulator), emulator, manifests / f"{NAME}.yaml", model, alias
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


@pytest.fixture
def azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACA_E2E_SECRET", SECRET)
    # A service principal, through DefaultAzureCredential's EnvironmentCredential.
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)


@pytest.fixture
def scenario(
    tmp_path: Path,
    emulator: ContainerAppsEmulator,
    mlflow_server: MlflowServer,
    runtime_model: str,
    azure_env: None,
) -> Iterator[Scenario]:
    with running_scenario(tmp_path, emulator, mlflow_server.url, runtime_model) as scenario:
        yield scenario


@pytest.fixture
def promotion_scenario(
    tmp_path: Path,
    emulator: ContainerAppsEmulator,
    promotion_models: PromotionModels,
    azure_env: None,
) -> Iterator[Scenario]:
    tracking, name = promotion_models.tracking_uri, promotion_models.name
    with running_scenario(tmp_path, emulator, tracking, name) as scenario:
        yield scenario


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


@dataclass
class Answer:
    at: float
    status: int
    version: str | None
    sent: float = 0.0


@dataclass
class TimedLoad:
    """Predictions through the ingress from a few client threads; every answer recorded
    with its time and the version that gave it (`X-Aliasflow-Model-Version`)."""

    url: str
    clients: int = 4
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> TimedLoad:
        self._threads = [
            threading.Thread(target=self._run, daemon=True, name=f"load-{i}")
            for i in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        with httpx.Client(timeout=30, trust_env=False) as http:
            while not self._stop.is_set():
                sent = time.time()
                try:
                    answer = http.post(
                        f"{self.url}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
                    )
                    status, version = (
                        answer.status_code,
                        answer.headers.get("x-aliasflow-model-version"),
                    )
                except httpx.HTTPError:
                    status, version = 0, None
                self.answers.append(Answer(time.time(), status, version, sent))

    def share(self, version: str, since: float, until: float) -> tuple[int, int]:
        window = [a for a in self.answers if since <= a.at <= until and a.status == 200]
        return sum(1 for a in window if a.version == version), len(window)

    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]


def _within_binomial(hits: int, n: int, p: float) -> bool:
    """`hits` of `n` is a plausible draw at probability `p` (two-sided, 99%)."""
    spread = 2.576 * math.sqrt(n * p * (1 - p))
    return abs(hits - n * p) <= spread + 1


def _summed_requests(scenario: Scenario) -> float:
    stats = parse_server_metrics(scenario.controller.links.metrics(NAME) or "")
    return sum(item.requests for (_, role), item in stats.items() if role != "shadow")


def _at_step(scenario: Scenario, number: int, there: bool = True) -> Callable[[], bool]:
    """A check: the canary is at step `number` (or, `there` false, no longer)."""
    return lambda: (_step(scenario.detail()) == number) is there


def _step(detail: dict[str, Any]) -> int | None:
    bake = detail.get("bake") or {}
    return bake.get("step") if bake.get("state") == "Canary" else None


def test_a_canary_splits_on_every_replica_at_each_steps_weight_and_is_promoted(
    scenario: Scenario,
) -> None:
    from mlflow import MlflowClient

    scenario.write(rollout=CANARY)
    created = wait(scenario.serving("1"), "create serving version 1")
    (revision,) = scenario.app().revisions
    windows: list[tuple[int, float, float]] = []
    with TimedLoad(created["endpoint"]) as load:
        time.sleep(1.0)
        client = MlflowClient(scenario.running.controller.settings.mlflow_tracking_uri)
        client.set_registered_model_alias(scenario.model, scenario.alias, "2")
        for number, (weight, _) in enumerate(STEPS, start=1):
            wait(_at_step(scenario, number), f"step {number}", 60)
            # The step is recorded once every replica reports its weight.
            assert scenario.splits() == {("2", weight, None, 0)}, scenario.splits()
            began = time.time()
            wait(_at_step(scenario, number, False), f"the end of step {number}", 60)
            windows.append((weight, began + 0.2, time.time() - 0.2))
        promoted = wait(
            lambda: (
                (row := scenario.detail()).get("reason") == "ReconciliationSucceeded"
                and "passed" in row.get("message", "")
                and row
            ),
            "the promotion after the bake",
            60,
        )
        time.sleep(0.5)
    assert promoted["served_version"] == "2"
    # What the analysis judged: both replicas' counters summed, every answer counted once.
    answered = sum(1 for a in load.answers if a.status == 200)
    wait(lambda: _summed_requests(scenario) == answered, "the summed counters", 10)
    for weight, since, until in windows:
        hits, n = load.share("2", since, until)
        assert n >= 50, f"too few answers in the {weight}% step: {n}"
        assert _within_binomial(hits, n, weight / 100), (weight, hits, n)
    assert load.failures() == []
    # Every replica serves the new version alone; the split never made a revision.
    assert scenario.replica_versions() == ["2", "2"]
    wait(lambda: scenario.splits() == {(None, 0, None, 0)}, "no canary left on any replica", 30)
    assert list(scenario.app().revisions) == [revision]
    assert "aliasflow-canary" not in scenario.app().body["tags"]
    print(f"\ncontainerapp canary shares: {[(w, load.share('2', s, u)) for w, s, u in windows]}")


def test_a_shadow_is_set_on_every_replica_and_removed_without_changing_an_answer(
    scenario: Scenario,
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(scenario.running.controller.settings.mlflow_tracking_uri)
    shadow_alias = f"{scenario.alias}-shadow"
    client.set_registered_model_alias(scenario.model, shadow_alias, "2")
    scenario.write(shadow=f"{{alias: {shadow_alias}, percent: 100}}")
    created = wait(scenario.serving("1"), "create serving version 1")
    (revision,) = scenario.app().revisions
    with TimedLoad(created["endpoint"]) as load:
        wait(lambda: scenario.splits() == {(None, 0, "2", 100)}, "the shadow on every replica")
        assert scenario.app().body["tags"]["aliasflow-shadow"] == "2@100"
        time.sleep(2.0)
        summed = scenario.controller.links.metrics(NAME) or ""
        mirrored = parse_server_metrics(summed).get(("2", "shadow"))
        assert mirrored is not None, summed
        assert mirrored.requests > 0
        scenario.write()  # the shadow removed from the manifest
        wait(lambda: scenario.splits() == {(None, 0, None, 0)}, "no shadow on any replica")
        time.sleep(0.5)
    assert "aliasflow-shadow" not in scenario.app().body["tags"]
    assert load.failures() == []
    assert {a.version for a in load.answers} == {"1"}
    assert list(scenario.app().revisions) == [revision]


def test_a_replica_that_starts_mid_canary_boots_into_the_split(scenario: Scenario) -> None:
    """A scale-out during a canary: the new replica asks the controller before it loads
    anything, so it serves the primary with the canary beside it from its first answer."""
    from mlflow import MlflowClient

    held = "\n    strategy: canary\n    steps: [{weight: 50, seconds: 600}]\n"
    scenario.write(rollout=held + "    healthTimeoutSeconds: 60")
    wait(scenario.serving("1"), "create serving version 1")
    client = MlflowClient(scenario.running.controller.settings.mlflow_tracking_uri)
    client.set_registered_model_alias(scenario.model, scenario.alias, "2")
    wait(lambda: _step(scenario.detail()) == 1, "the canary's first step", 60)
    app = scenario.app()
    (revision,) = app.revisions
    scenario.emulator.scale(app, revision, 3)
    newcomer = app.revisions[revision].replicas[-1]
    assert newcomer.endpoint is not None
    ready = httpx.get(f"{newcomer.endpoint}/readyz", timeout=10, trust_env=False).json()
    assert ready["model"]["version"] == "1"
    assert ready["traffic"]["canary"] == {"version": "2", "weight": 50}
    wait(
        lambda: (
            newcomer.name in scenario.controller.links.reports(NAME)
            and scenario.splits() == {("2", 50, None, 0)}
        ),
        "three replicas reporting the split",
        30,
    )
    assert _step(scenario.detail()) == 1  # never recreated over, still at its step
    assert list(scenario.app().revisions) == [revision]


def test_a_slow_canary_is_rolled_back_at_its_first_step_on_every_replica(
    promotion_scenario: Scenario, promotion_models: PromotionModels
) -> None:
    """Judged on both replicas' counters summed: the canary leaves every replica, the
    alias goes back and the version is quarantined; no request fails."""
    from mlflow import MlflowClient

    scenario, models = promotion_scenario, promotion_models
    rollout = (
        "\n    strategy: canary\n    steps: [{weight: 30, seconds: 60}]\n"
        "    healthTimeoutSeconds: 60\n"
        "    analysis: {minRequests: 20, maxErrorRate: 0.02, maxLatencyP99Ms: 250,"
        " bakeSeconds: 2}"
    )
    scenario.write(rollout=rollout)
    created = wait(scenario.serving(models.good), "create serving the good version")
    (revision,) = scenario.app().revisions
    client = MlflowClient(models.tracking_uri)
    with TimedLoad(created["endpoint"]) as load:
        time.sleep(1.0)
        moved = time.monotonic()
        client.set_registered_model_alias(models.name, scenario.alias, models.slow)
        wait(lambda: _step(scenario.detail()) == 1, "the first step", 60)
        wait(
            lambda: any(h.get("reason") == "RolledBack" for h in scenario.running.history(NAME)),
            "the rollback",
            60,
        )
        rolled_back = time.monotonic() - moved
        wait(lambda: scenario.splits() == {(None, 0, None, 0)}, "no canary on any replica", 30)
        since = time.time()
        time.sleep(1.0)
    late = {a.version for a in load.answers if a.sent >= since and a.status == 200}
    assert late == {models.good}
    assert load.failures() == []
    bake = scenario.detail()["bake"]
    assert bake["state"] == "RolledBack"
    assert bake["step"] in (None, 1)
    assert "p99" in bake["message"]
    assert client.get_model_version_by_alias(models.name, scenario.alias).version == models.good
    tags = client.get_model_version(models.name, models.slow).tags
    assert "aliasflow.quarantined" in tags
    assert scenario.replica_versions() == [models.good, models.good]
    assert list(scenario.app().revisions) == [revision]
    print(f"\ncontainerapp slow canary: alias move -> rolled back in {rolled_back:.1f}s")
