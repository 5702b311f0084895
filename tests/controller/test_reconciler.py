"""The reconcile pipeline against our own in-memory seams and a real sqlite history store."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.core.records import Health, Reason, Result, Sync
from controller.core.types import Operation
from controller.reconcile.reconciler import Reconciler
from controller.registry.memory import MemoryRegistry
from controller.runtimes.memory import MemoryRuntime
from controller.store.sql import SqlHistoryStore
from tests.manifest_sources import DirectorySource

MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{name: iris, {selector}}}
  port: {port}
  env: {{LOG_LEVEL: {log_level}}}
  rollout: {{strategy: {strategy}, healthTimeoutSeconds: 1}}
  syncPolicy: {{automated: {automated}, selfHeal: true, prune: {prune}}}
{extra}"""


@dataclass
class World:
    directory: Path
    registry: MemoryRegistry
    runtime: MemoryRuntime
    store: SqlHistoryStore
    reconciler: Reconciler
    enqueued: list[str] = field(default_factory=list)

    def write(
        self,
        name: str = "iris-prod",
        selector: str = "alias: champion",
        strategy: str = "hotswap",
        automated: str = "true",
        log_level: str = "info",
        prune: str = "true",
        port: int | None = None,
        extra: str = "",
    ) -> None:
        (self.directory / f"{name}.yaml").write_text(
            MANIFEST.format(
                name=name,
                # Local deployments need a port each (validation refuses a shared one).
                port=port or 20000 + zlib.crc32(name.encode()) % 10000,
                selector=selector,
                strategy=strategy,
                automated=automated,
                log_level=log_level,
                prune=prune,
                extra=extra,
            )
        )

    def sync_all(self) -> list[Operation]:
        self.enqueued.clear()
        actions = self.reconciler.sync_all("poll", lambda n, _t: self.enqueued.append(n))
        return [a.operation for a in actions]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    directory = tmp_path / "manifests"
    directory.mkdir()
    registry = MemoryRegistry()
    for version in ("1", "2", "3"):
        registry.add_version("iris", version)
    registry.set_alias("iris", "champion", "1")
    runtime = MemoryRuntime()
    store = SqlHistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    reconciler = Reconciler(
        DirectorySource(directory, environ={}),
        registry,
        {"local": runtime},
        store,
        environ={},
        health_poll_interval=0.01,
    )
    world = World(directory, registry, runtime, store, reconciler)
    world.write()
    yield world
    store.close()


def test_first_reconcile_creates_and_records(world: World) -> None:
    outcome = world.reconciler.reconcile("iris-prod", "manual")
    assert (outcome.action, outcome.result) == (Operation.CREATE, Result.SUCCEEDED)
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert (status.sync, status.health, status.served_version) == (Sync.SYNCED, Health.HEALTHY, "1")
    assert status.manifest_revision == "rev-1"
    (row,) = world.store.history("iris-prod")
    assert (row.trigger, row.action, row.result, row.model_version) == (
        "manual",
        "create",
        Result.SUCCEEDED,
        "1",
    )
    assert row.run_id == "run-iris-1"
    assert row.finished_at is not None


def test_alias_move_hot_swaps_then_a_second_pass_changes_nothing(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.registry.set_alias("iris", "champion", "2")
    outcome = world.reconciler.reconcile("iris-prod", "webhook", noticed_at=0.0)
    assert outcome.action is Operation.HOTSWAP
    assert world.runtime.workloads["iris-prod"].served_version == "2"
    calls_before = len(world.runtime.calls)
    again = world.reconciler.reconcile("iris-prod", "poll")
    assert again.action is Operation.NOOP
    assert len(world.runtime.calls) == calls_before
    assert world.sync_all() == [Operation.NOOP]
    assert world.enqueued == []
    assert len(world.store.history("iris-prod")) == 2


def test_failed_hot_swap_keeps_old_version_and_is_not_retried_until_alias_moves(
    world: World,
) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.runtime.rejected_versions.add("2")
    world.registry.set_alias("iris", "champion", "2")
    failed = world.reconciler.reconcile("iris-prod", "webhook")
    assert failed.result is Result.FAILED
    assert world.runtime.workloads["iris-prod"].served_version == "1"
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert status.health is Health.DEGRADED
    assert status.message.startswith("RolloutRejected:")
    calls = len(world.runtime.calls)
    skipped = world.reconciler.reconcile("iris-prod", "poll")
    assert skipped.result is Result.SKIPPED
    assert len(world.runtime.calls) == calls
    assert world.sync_all() == [Operation.HOTSWAP]
    assert world.enqueued == []  # known failure: the poll does not hammer the runtime
    world.registry.set_alias("iris", "champion", "3")
    recovered = world.reconciler.reconcile("iris-prod", "webhook")
    assert (recovered.action, recovered.result) == (Operation.HOTSWAP, Result.SUCCEEDED)
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert (status.health, status.served_version) == (Health.HEALTHY, "3")


def test_manual_sync_retries_a_failed_version(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.runtime.fail_next(Operation.HOTSWAP)
    world.registry.set_alias("iris", "champion", "2")
    assert world.reconciler.reconcile("iris-prod", "webhook").result is Result.FAILED
    assert world.reconciler.reconcile("iris-prod", "manual").result is Result.SUCCEEDED


def test_deleted_alias_keeps_serving_and_degrades(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    del world.registry.aliases["iris"]["champion"]
    outcome = world.reconciler.reconcile("iris-prod", "webhook")
    assert outcome.result is Result.FAILED
    assert world.runtime.workloads["iris-prod"].running
    assert world.runtime.deleted == []
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert status.health is Health.DEGRADED
    assert "AliasMissing" in status.message
    world.sync_all()
    assert world.runtime.deleted == []


def test_registry_outage_marks_unknown_and_prunes_nothing(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.runtime.add("orphan", "x", "1")
    world.registry.available = False
    assert world.sync_all() == []
    assert world.runtime.deleted == []
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert status.sync is Sync.UNKNOWN
    assert "RegistryUnavailable" in status.message
    outcome = world.reconciler.reconcile("iris-prod", "webhook")
    assert outcome.retry
    assert world.runtime.workloads["iris-prod"].running


def test_prune_removes_orphans_only_when_manifests_are_whole(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.runtime.add("orphan", "x", "1")
    (world.directory / "broken.yaml").write_text("kind: [")
    world.sync_all()
    assert world.runtime.deleted == []
    (world.directory / "broken.yaml").unlink()
    world.sync_all()
    assert world.runtime.deleted == ["orphan"]
    (row,) = world.store.history("orphan")
    assert (row.action, row.result) == ("delete", Result.SUCCEEDED)


def test_empty_manifest_directory_never_prunes_unless_allowed(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    (world.directory / "iris-prod.yaml").unlink()
    world.sync_all()
    assert world.runtime.deleted == []
    world.reconciler.fleet.allow_empty = True
    world.sync_all()
    assert world.runtime.deleted == ["iris-prod"]


def test_prune_false_keeps_the_workload_when_its_manifest_goes(world: World) -> None:
    world.write("keep-me", prune="false")
    world.reconciler.reconcile("keep-me", "poll")
    world.reconciler.reconcile("iris-prod", "poll")
    (world.directory / "keep-me.yaml").unlink()
    (world.directory / "iris-prod.yaml").unlink()
    world.reconciler.fleet.allow_empty = True
    world.sync_all()
    # The default (prune: true) goes; the one that said prune: false stays, and says why.
    assert world.runtime.deleted == ["iris-prod"]
    assert "keep-me" in world.runtime.workloads
    status = world.store.get_status("keep-me")
    assert status is not None
    assert (status.sync, status.reason) == (Sync.OUT_OF_SYNC, Reason.PRUNE_DISABLED)
    assert "syncPolicy.prune was false" in status.message
    world.sync_all()
    assert world.runtime.deleted == ["iris-prod"]


def test_changing_prune_to_false_is_recorded_before_the_manifest_goes(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.write(prune="false")
    world.sync_all()  # in sync, but the recorded policy is stale: the pipeline runs again
    assert world.enqueued == ["iris-prod"]
    world.reconciler.reconcile("iris-prod", "poll")
    (world.directory / "iris-prod.yaml").unlink()
    world.reconciler.fleet.allow_empty = True
    world.sync_all()
    assert world.runtime.deleted == []


def test_self_heal_recreates_a_killed_workload(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.runtime.kill("iris-prod")
    assert world.sync_all() == [Operation.RECREATE]
    assert world.enqueued == ["iris-prod"]
    outcome = world.reconciler.reconcile("iris-prod", "poll")
    assert outcome.action is Operation.RECREATE
    assert world.runtime.workloads["iris-prod"].running


def test_drift_to_another_version_is_swapped_back(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.runtime.serve("iris-prod", "3")
    assert world.reconciler.reconcile("iris-prod", "poll").action is Operation.HOTSWAP
    assert world.runtime.workloads["iris-prod"].served_version == "1"


def test_spec_change_recreates(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.write(log_level="debug")
    assert world.reconciler.reconcile("iris-prod", "git").action is Operation.RECREATE


def test_manual_sync_policy_waits_for_a_person(world: World) -> None:
    world.write(automated="false")
    outcome = world.reconciler.reconcile("iris-prod", "poll")
    assert outcome.result is Result.SKIPPED
    assert world.runtime.calls == []
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert (status.sync, status.health) == (Sync.OUT_OF_SYNC, Health.MISSING)
    assert world.reconciler.reconcile("iris-prod", "manual").result is Result.SUCCEEDED


def test_pinned_version_and_missing_version(world: World) -> None:
    world.write(name="pinned", selector="version: 2")
    world.write(name="ghost", selector="version: 9")
    assert world.reconciler.reconcile("pinned", "poll").result is Result.SUCCEEDED
    assert world.runtime.workloads["pinned"].served_version == "2"
    ghost = world.reconciler.reconcile("ghost", "poll")
    assert ghost.result is Result.FAILED
    assert "ModelMissing" in ghost.message


def test_health_gate_timeout_degrades(world: World) -> None:
    world.runtime.fail_next(Operation.CREATE)
    outcome = world.reconciler.reconcile("iris-prod", "poll")
    assert outcome.result is Result.FAILED
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert status.health is Health.DEGRADED
    assert status.message.startswith("HealthCheckFailed:")


def test_unknown_deployment_is_skipped_with_reason(world: World) -> None:
    outcome = world.reconciler.reconcile("nope", "manual")
    assert outcome.result is Result.SKIPPED
    assert "no valid manifest" in outcome.message


def test_diff_reports_without_applying(world: World) -> None:
    actions, problems = world.reconciler.diff()
    assert [a.operation for a in actions] == [Operation.CREATE]
    assert problems == []
    assert world.runtime.calls == []


def test_health_gate_failure_waits_for_a_change_instead_of_a_timer(world: World) -> None:
    world.runtime.fail_next(Operation.CREATE)
    assert world.reconciler.reconcile("iris-prod", "poll").result is Result.FAILED
    calls = len(world.runtime.calls)
    assert world.reconciler.reconcile("iris-prod", "poll").result is Result.SKIPPED
    assert len(world.runtime.calls) == calls
    world.registry.set_alias("iris", "champion", "2")
    assert world.reconciler.reconcile("iris-prod", "webhook").result is Result.SUCCEEDED


GATED = "  promotion: {{require: ['accuracy>=served', 'f1>=0.9'], onFailure: {on_failure}}}\n"


def _with_metrics(world: World) -> None:
    for version, accuracy in (("1", 0.95), ("2", 0.76), ("3", 0.97)):
        world.registry.metrics[f"run-iris-{version}"] = {"accuracy": accuracy, "f1": 0.93}


def test_a_worse_version_is_refused_and_the_alias_moves_back(world: World) -> None:
    _with_metrics(world)
    world.write(extra=GATED.format(on_failure="revert"))
    world.reconciler.reconcile("iris-prod", "poll")
    world.registry.set_alias("iris", "champion", "2")  # by anyone, with any client
    outcome = world.reconciler.reconcile("iris-prod", "webhook")
    assert (outcome.result, outcome.reason) == (Result.FAILED, Reason.GATE_FAILED)
    assert (Operation.HOTSWAP, "iris-prod") not in world.runtime.operations()
    assert world.runtime.workloads["iris-prod"].served_version == "1"
    assert world.registry.aliases["iris"]["champion"] == "1"
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert status.reason is Reason.GATE_FAILED
    assert "accuracy 0.76 < served v1 0.95" in status.message
    assert "moved back to 1" in status.message
    assert world.store.history("iris-prod")[0].reason is Reason.GATE_FAILED
    # The alias is back: the next pass is a no-op and the deployment is in sync again.
    assert world.reconciler.reconcile("iris-prod", "poll").action is Operation.NOOP
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert (status.sync, status.health) == (Sync.SYNCED, Health.HEALTHY)


def test_hold_keeps_the_alias_and_rolls_nothing_out_until_it_moves(world: World) -> None:
    _with_metrics(world)
    world.write(extra=GATED.format(on_failure="hold"))
    world.reconciler.reconcile("iris-prod", "poll")
    world.registry.set_alias("iris", "champion", "2")
    assert world.reconciler.reconcile("iris-prod", "poll").reason is Reason.GATE_FAILED
    assert world.registry.aliases["iris"]["champion"] == "2"
    again = world.reconciler.reconcile("iris-prod", "poll")
    assert again.result is Result.SKIPPED  # the timer does not re-run a refused version
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert (status.sync, status.reason) == (Sync.OUT_OF_SYNC, Reason.GATE_FAILED)
    world.registry.set_alias("iris", "champion", "3")  # a better one passes
    assert world.reconciler.reconcile("iris-prod", "poll").result is Result.SUCCEEDED
    assert world.runtime.workloads["iris-prod"].served_version == "3"


def test_a_quarantined_version_is_never_rolled_out_until_cleared(world: World) -> None:
    world.reconciler.reconcile("iris-prod", "poll")
    world.registry.set_version_tag("iris", "2", "aliasflow.quarantined", "p99 900 ms > 250 ms")
    world.registry.set_alias("iris", "champion", "2")
    outcome = world.reconciler.reconcile("iris-prod", "poll")
    assert outcome.reason is Reason.QUARANTINED
    status = world.store.get_status("iris-prod")
    assert status is not None
    assert "p99 900 ms > 250 ms" in status.message
    assert "aliasflow unquarantine iris 2" in status.message
    assert world.reconciler.reconcile("iris-prod", "poll").result is Result.SKIPPED
    world.registry.delete_version_tag("iris", "2", "aliasflow.quarantined")
    assert world.reconciler.reconcile("iris-prod", "poll").result is Result.SUCCEEDED
    assert world.runtime.workloads["iris-prod"].served_version == "2"
