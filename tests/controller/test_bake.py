"""Watching a promotion: a bake starts with it, a failed analysis rolls it back through the
queue (quarantine, swap back, alias back, notification), a good one passes at the end,
and a restarted controller resumes a bake from the store."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.core.ports import QUARANTINE_TAG
from controller.core.records import BakeState, Reason, Result, Sync
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
  promotion: {{onFailure: {on_failure}}}
  rollout:
    healthTimeoutSeconds: 1
    analysis: {{minRequests: 50, maxErrorRate: 0.05, maxLatencyP99Ms: 250,
                maxPredictionShift: 0.3, bakeSeconds: 60}}
"""


@dataclass
class Server:
    """What the model server's /metrics would say, per version: (ok, errors, slow, outputs)."""

    versions: dict[str, tuple[int, int, bool, dict[str, int]]] = field(default_factory=dict)

    def text(self, _endpoint: str) -> str:
        lines = []
        for version, (ok, errors, slow, outputs) in self.versions.items():
            labels = f'version="{version}",role="primary"'
            lines.append(
                f'aliasflow_server_prediction_requests_total{{{labels},outcome="ok"}} {ok}'
            )
            lines.append(
                f"aliasflow_server_prediction_requests_total{{{labels},"
                f'outcome="server_error"}} {errors}'
            )
            total = ok + errors
            for bound, count in ((0.05, 0 if slow else total), (1.0, total), (math.inf, total)):
                le = "+Inf" if math.isinf(bound) else str(bound)
                lines.append(
                    f'aliasflow_server_prediction_latency_seconds_bucket{{{labels},le="{le}"}} '
                    f"{count}"
                )
            for output, count in outputs.items():
                lines.append(
                    f"aliasflow_server_prediction_outputs_total{{{labels},"
                    f'output="{output}"}} {count}'
                )
        return "\n".join(lines) + "\n"


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Notes:
    sent: list[Notification] = field(default_factory=list)

    def notify(self, notification: Notification) -> None:
        self.sent.append(notification)

    def events(self) -> list[NotificationEvent]:
        return [n.event for n in self.sent]


@dataclass
class Watched:
    directory: Path
    registry: MemoryRegistry
    runtime: MemoryRuntime
    store: SqlHistoryStore
    server: Server
    clock: Clock
    notes: Notes
    reconciler: Reconciler
    queued: list[tuple[str, Trigger]] = field(default_factory=list)

    def tick(self) -> None:
        self.reconciler.analyse(lambda name, trigger, _at: self.queued.append((name, trigger)))

    def promote_to_2(self) -> None:
        self.registry.set_alias("iris", "champion", "2")
        outcome = self.reconciler.reconcile("iris-prod", "webhook")
        assert outcome.result is Result.SUCCEEDED, outcome


def build(
    tmp_path: Path, on_failure: str, store: SqlHistoryStore | None = None, start: bool = True
) -> Watched:
    directory = tmp_path / "manifests"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "iris.yaml").write_text(MANIFEST.format(on_failure=on_failure))
    registry = MemoryRegistry()
    for version in ("1", "2"):
        registry.add_version("iris", version)
    registry.set_alias("iris", "champion", "1")
    runtime = MemoryRuntime()
    store = store or SqlHistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    server, clock, notes = Server(), Clock(), Notes()
    reconciler = Reconciler(
        DirectorySource(directory, environ={}),
        registry,
        {"local": runtime},
        store,
        environ={},
        health_poll_interval=0.01,
        clock=clock,
        notifier=notes,
        admin_token="admin",
    )
    reconciler.bakes.read = server.text
    watched = Watched(directory, registry, runtime, store, server, clock, notes, reconciler)
    if start:
        assert reconciler.reconcile("iris-prod", "poll").result is Result.SUCCEEDED
    server.versions["1"] = (500, 0, False, {"setosa": 250, "virginica": 250})
    notes.sent.clear()
    return watched


@pytest.fixture
def revert(tmp_path: Path) -> Iterator[Watched]:
    watched = build(tmp_path, "revert")
    yield watched
    watched.store.close()


def test_a_promotion_starts_a_bake_with_the_replaced_versions_figures(revert: Watched) -> None:
    revert.promote_to_2()
    bake = revert.store.get_bake("iris-prod")
    assert bake is not None
    assert (bake.state, bake.from_version, bake.to_version) == (BakeState.BAKING, "1", "2")
    assert bake.ends_at == revert.clock.now + 60
    assert '"ok": 500' in bake.baseline
    status = revert.store.get_status("iris-prod")
    assert status is not None
    assert status.reason is Reason.BAKING
    # Success is announced when the bake passes, not when the swap lands.
    assert NotificationEvent.PROMOTION_SUCCEEDED not in revert.notes.events()


def test_too_few_requests_is_not_a_verdict_then_a_slow_version_is_rolled_back(
    revert: Watched,
) -> None:
    revert.promote_to_2()
    revert.server.versions["2"] = (20, 0, True, {"setosa": 10, "virginica": 10})
    revert.tick()
    bake = revert.store.get_bake("iris-prod")
    assert bake is not None
    assert bake.state is BakeState.BAKING
    assert "not enough data yet" in bake.message
    revert.server.versions["2"] = (100, 0, True, {"setosa": 50, "virginica": 50})
    revert.tick()
    assert revert.queued == [("iris-prod", Trigger.ANALYSIS)]
    outcome = revert.reconciler.reconcile("iris-prod", "analysis")
    assert (outcome.result, outcome.reason) == (Result.SUCCEEDED, Reason.ROLLED_BACK)
    assert revert.runtime.workloads["iris-prod"].served_version == "1"
    assert revert.registry.aliases["iris"]["champion"] == "1"
    quarantined = revert.registry.get_version("iris", "2").tags[QUARANTINE_TAG]
    assert "p99 990 ms > 250 ms" in quarantined
    status = revert.store.get_status("iris-prod")
    assert status is not None
    assert (status.reason, status.served_version) == (Reason.ROLLED_BACK, "1")
    assert revert.store.history("iris-prod")[0].reason is Reason.ROLLED_BACK
    rolled = [n for n in revert.notes.sent if n.event is NotificationEvent.PROMOTION_ROLLED_BACK]
    assert [(n.from_version, n.to_version) for n in rolled] == [("2", "1")]
    # The version is quarantined: moving the alias to it again rolls nothing out.
    revert.registry.set_alias("iris", "champion", "2")
    assert revert.reconciler.reconcile("iris-prod", "poll").reason is Reason.QUARANTINED
    assert revert.runtime.workloads["iris-prod"].served_version == "1"


@pytest.mark.parametrize(
    ("metrics", "failure"),
    [
        ((80, 20, False, {"setosa": 50, "virginica": 50}), "error rate 20.00% > 5.00%"),
        ((1000, 0, False, {"setosa": 950, "virginica": 50}), "prediction shift 0.45 > 0.3"),
    ],
)
def test_errors_and_shifted_predictions_fail_the_analysis(
    revert: Watched, metrics: tuple[int, int, bool, dict[str, int]], failure: str
) -> None:
    revert.promote_to_2()
    revert.server.versions["2"] = metrics
    revert.tick()
    bake = revert.store.get_bake("iris-prod")
    assert bake is not None
    assert bake.state is BakeState.FAILED
    assert failure in bake.message


def test_a_good_version_passes_when_the_bake_ends(revert: Watched) -> None:
    revert.promote_to_2()
    revert.server.versions["2"] = (200, 0, False, {"setosa": 100, "virginica": 100})
    revert.tick()
    assert revert.store.get_bake("iris-prod").state is BakeState.BAKING  # type: ignore[union-attr]
    revert.clock.now += 61
    revert.tick()
    bake = revert.store.get_bake("iris-prod")
    assert bake is not None
    assert bake.state is BakeState.PASSED
    assert revert.queued == []
    assert NotificationEvent.PROMOTION_SUCCEEDED in revert.notes.events()
    history = revert.store.history("iris-prod")
    assert (history[0].action, history[0].reason) == ("analysis", Reason.SUCCEEDED)


def test_hold_rolls_back_the_server_but_keeps_the_alias(tmp_path: Path) -> None:
    watched = build(tmp_path, "hold")
    try:
        watched.promote_to_2()
        watched.server.versions["2"] = (50, 50, False, {"setosa": 50, "virginica": 50})
        watched.tick()
        watched.reconciler.reconcile("iris-prod", "analysis")
        assert watched.runtime.workloads["iris-prod"].served_version == "1"
        assert watched.registry.aliases["iris"]["champion"] == "2"
        outcome = watched.reconciler.reconcile("iris-prod", "poll")
        assert outcome.reason is Reason.QUARANTINED
        status = watched.store.get_status("iris-prod")
        assert status is not None
        assert status.sync is Sync.OUT_OF_SYNC
    finally:
        watched.store.close()


def test_a_restarted_controller_resumes_the_bake(tmp_path: Path) -> None:
    first = build(tmp_path, "revert")
    first.promote_to_2()
    # A new controller on the same store: no memory, only the bake row.
    second = build(tmp_path / "again", "revert", store=first.store, start=False)
    second.registry.set_alias("iris", "champion", "2")
    second.runtime.add("iris-prod", first.runtime.workloads["iris-prod"].spec_hash, "2")
    second.server.versions["2"] = (100, 0, True, {"setosa": 50, "virginica": 50})
    second.tick()
    assert second.queued == [("iris-prod", Trigger.ANALYSIS)]
    outcome = second.reconciler.reconcile("iris-prod", "analysis")
    assert outcome.reason is Reason.ROLLED_BACK
    assert (Operation.HOTSWAP, "iris-prod") in second.runtime.operations()
    first.store.close()
