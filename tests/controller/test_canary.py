"""Canary and shadow through the reconciler with the in-memory seams: the planner starts a
canary, the watch walks its steps (judged on the canary's own requests), promotes it, and
rolls a failing one back by removing the canary; the shadow follows its alias."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.core.ports import QUARANTINE_TAG
from controller.core.records import BakeState, Health, Reason, Result, Sync
from controller.core.types import Notification, NotificationEvent, Operation, Trigger
from controller.reconcile.reconciler import Reconciler
from controller.registry.memory import MemoryRegistry
from controller.runtimes.memory import MemoryRuntime
from controller.store.sql import SqlHistoryStore
from tests.manifest_sources import DirectorySource

MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: iris-prod}}
spec:
  model: {{name: iris, alias: champion}}
  rollout:
    strategy: canary
    healthTimeoutSeconds: 1
    steps: [{{weight: 10, seconds: 30}}, {{weight: 50, seconds: 30}}]
{analysis}{shadow}"""
ANALYSIS = """\
    analysis: {minRequests: 20, maxErrorRate: 0.05, maxLatencyP99Ms: 250, bakeSeconds: 60}
"""


@dataclass
class Counters:
    """The server's /metrics: per (version, role) -> (ok, server errors, slow)."""

    rows: dict[tuple[str, str], tuple[int, int, bool]] = field(default_factory=dict)

    def text(self, _endpoint: str) -> str:
        lines = []
        for (version, role), (ok, errors, slow) in self.rows.items():
            labels = f'version="{version}",role="{role}"'
            name = "aliasflow_server_prediction_requests_total"
            lines.append(f'{name}{{{labels},outcome="ok"}} {ok}')
            lines.append(f'{name}{{{labels},outcome="server_error"}} {errors}')
            total = ok + errors
            for bound, count in ((0.05, 0 if slow else total), (1.0, total), (math.inf, total)):
                le = "+Inf" if math.isinf(bound) else str(bound)
                lines.append(
                    f'aliasflow_server_prediction_latency_seconds_bucket{{{labels},le="{le}"}} '
                    f"{count}"
                )
        return "\n".join(lines) + "\n"


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Canary:
    registry: MemoryRegistry
    runtime: MemoryRuntime
    store: SqlHistoryStore
    counters: Counters
    clock: Clock
    sent: list[Notification]
    reconciler: Reconciler
    queued: list[tuple[str, Trigger]] = field(default_factory=list)

    def tick(self) -> None:
        self.queued.clear()
        self.reconciler.analyse(lambda name, trigger, _at: self.queued.append((name, trigger)))

    def run_queued(self) -> None:
        for name, trigger in list(self.queued):
            outcome = self.reconciler.reconcile(name, trigger.value)
            assert outcome.result is Result.SUCCEEDED, outcome
        self.queued.clear()

    @property
    def served(self) -> tuple[str | None, str | None, int]:
        workload = self.runtime.workloads["iris-prod"]
        return workload.served_version, workload.canary_version, workload.canary_weight


def build(tmp_path: Path, analysis: str = ANALYSIS, shadow: str = "") -> Canary:
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "iris.yaml").write_text(MANIFEST.format(analysis=analysis, shadow=shadow))
    registry = MemoryRegistry()
    for version in ("1", "2", "3"):
        registry.add_version("iris", version)
    registry.set_alias("iris", "champion", "1")
    runtime, clock, sent = MemoryRuntime(), Clock(), []
    store = SqlHistoryStore(f"sqlite:///{tmp_path / 'history.db'}")

    class Notes:
        def notify(self, notification: Notification) -> None:
            sent.append(notification)

    reconciler = Reconciler(
        DirectorySource(directory, environ={}),
        registry,
        {"local": runtime},
        store,
        environ={},
        health_poll_interval=0.01,
        clock=clock,
        notifier=Notes(),
    )
    counters = Counters()
    reconciler.bakes.read = counters.text
    canary = Canary(registry, runtime, store, counters, clock, sent, reconciler)
    assert reconciler.reconcile("iris-prod", "poll").result is Result.SUCCEEDED
    return canary


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Canary]:
    world = build(tmp_path)
    yield world
    world.store.close()


def test_an_alias_move_starts_a_canary_at_the_first_step(canary: Canary) -> None:
    canary.registry.set_alias("iris", "champion", "2")
    outcome = canary.reconciler.reconcile("iris-prod", "webhook")
    assert (outcome.action, outcome.reason) == (Operation.CANARY, Reason.CANARY)
    assert canary.served == ("1", "2", 10)
    status = canary.store.get_status("iris-prod")
    assert status is not None
    assert (status.sync, status.health, status.reason) == (
        Sync.OUT_OF_SYNC,
        Health.PROGRESSING,
        Reason.CANARY,
    )
    assert "step 1 of 2, 10%" in status.message
    bake = canary.store.get_bake("iris-prod")
    assert bake is not None
    assert (bake.state, bake.step) == (BakeState.CANARY, 0)
    # The next poll sees the canary it started: nothing to do, the status is kept.
    again = canary.reconciler.reconcile("iris-prod", "poll")
    assert again.action is Operation.NOOP
    assert canary.store.get_status("iris-prod").reason is Reason.CANARY  # type: ignore[union-attr]


def test_a_good_canary_walks_every_step_then_bakes(canary: Canary) -> None:
    canary.registry.set_alias("iris", "champion", "2")
    canary.reconciler.reconcile("iris-prod", "webhook")
    canary.counters.rows[("2", "canary")] = (30, 0, False)
    canary.tick()  # enough data, but the step has not lasted its 30 s
    assert canary.queued == []
    canary.clock.now += 31
    canary.tick()
    assert canary.queued == [("iris-prod", Trigger.ANALYSIS)]
    canary.run_queued()
    assert canary.served == ("1", "2", 50)
    assert canary.store.get_bake("iris-prod").step == 1  # type: ignore[union-attr]
    canary.counters.rows[("2", "canary")] = (80, 0, False)
    canary.clock.now += 31
    canary.tick()
    canary.run_queued()
    # Every step passed: the canary takes all the requests and the bake begins.
    assert canary.served == ("2", None, 0)
    bake = canary.store.get_bake("iris-prod")
    assert bake is not None
    assert (bake.state, bake.step) == (BakeState.BAKING, -1)
    status = canary.store.get_status("iris-prod")
    assert status is not None
    assert (status.reason, status.served_version) == (Reason.BAKING, "2")


def test_not_enough_data_holds_the_step(canary: Canary) -> None:
    canary.registry.set_alias("iris", "champion", "2")
    canary.reconciler.reconcile("iris-prod", "webhook")
    canary.counters.rows[("2", "canary")] = (5, 0, False)
    canary.clock.now += 300
    canary.tick()
    assert canary.queued == []
    assert "not enough data yet" in canary.store.get_bake("iris-prod").message  # type: ignore[union-attr]


def test_a_slow_canary_is_removed_and_quarantined_the_primary_never_stopped(
    canary: Canary,
) -> None:
    canary.registry.set_alias("iris", "champion", "2")
    canary.reconciler.reconcile("iris-prod", "webhook")
    canary.counters.rows[("2", "canary")] = (40, 0, True)
    canary.tick()
    assert canary.queued == [("iris-prod", Trigger.ANALYSIS)]
    canary.run_queued()
    assert canary.served == ("1", None, 0)
    assert canary.registry.aliases["iris"]["champion"] == "1"
    assert "p99" in canary.registry.get_version("iris", "2").tags[QUARANTINE_TAG]
    assert (Operation.HOTSWAP, "iris-prod") not in canary.runtime.operations()
    status = canary.store.get_status("iris-prod")
    assert status is not None
    assert (status.reason, status.sync) == (Reason.ROLLED_BACK, Sync.SYNCED)
    events = [n.event for n in canary.sent]
    assert NotificationEvent.PROMOTION_ROLLED_BACK in events


def test_a_person_can_advance_or_abort_a_canary(canary: Canary) -> None:
    canary.registry.set_alias("iris", "champion", "2")
    canary.reconciler.reconcile("iris-prod", "webhook")
    queued: list[tuple[str, Trigger]] = []
    canary.reconciler.canary("iris-prod", "advance", lambda n, t, _a: queued.append((n, t)))
    assert queued == [("iris-prod", Trigger.MANUAL)]
    canary.reconciler.reconcile("iris-prod", "manual")
    assert canary.served == ("1", "2", 50)
    canary.reconciler.canary("iris-prod", "abort", lambda n, t, _a: None)
    canary.reconciler.reconcile("iris-prod", "manual")
    assert canary.served == ("1", None, 0)
    assert canary.reconciler.canary("iris-prod", "advance", lambda n, t, _a: None) is None


def test_without_analysis_the_steps_advance_on_time(tmp_path: Path) -> None:
    world = build(tmp_path, analysis="")
    try:
        world.registry.set_alias("iris", "champion", "2")
        world.reconciler.reconcile("iris-prod", "webhook")
        for _ in range(2):
            world.clock.now += 31
            world.tick()
            world.run_queued()
        assert world.served == ("2", None, 0)
        assert world.store.get_bake("iris-prod").state is BakeState.PASSED  # type: ignore[union-attr]
        assert NotificationEvent.PROMOTION_SUCCEEDED in [n.event for n in world.sent]
    finally:
        world.store.close()


def test_the_shadow_follows_its_alias(tmp_path: Path) -> None:
    world = build(tmp_path, shadow="  shadow: {alias: challenger, percent: 50}\n")
    try:
        assert world.runtime.workloads["iris-prod"].shadow_version is None  # no challenger yet
        world.registry.set_alias("iris", "challenger", "3")
        outcome = world.reconciler.reconcile("iris-prod", "poll")
        assert outcome.action is Operation.TRAFFIC
        workload = world.runtime.workloads["iris-prod"]
        assert (workload.shadow_version, workload.shadow_percent) == ("3", 50)
        assert world.reconciler.reconcile("iris-prod", "poll").action is Operation.NOOP
    finally:
        world.store.close()
