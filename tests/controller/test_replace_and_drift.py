"""What a user reads about a replace and about drift: the planner's word through the
pipeline into the diff, the status and the history (in-memory runtime of kind `aci`,
a real sqlite store)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from controller.core.records import Health, Reason, Sync
from controller.core.types import Operation
from controller.reconcile.reconciler import Reconciler
from controller.registry.memory import MemoryRegistry
from controller.runtimes.memory import MemoryRuntime
from controller.store.sql import SqlHistoryStore
from tests.manifest_sources import DirectorySource

MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: iris-aci}}
spec:
  model: {{name: iris, alias: champion}}
  target:
    kind: aci
    aci: {{subscriptionId: sub, resourceGroup: rg, location: westeurope}}
  resources: {{cpu: {cpu}, memoryGB: 1.5}}
  env: {{LOG_LEVEL: {level}}}
  rollout: {{healthTimeoutSeconds: 1}}
  syncPolicy: {{selfHeal: {self_heal}}}
"""


class Scene:
    def __init__(self, directory: Path, store: SqlHistoryStore) -> None:
        self.directory = directory
        self.store = store
        self.registry = MemoryRegistry()
        self.registry.add_version("iris", "1")
        self.registry.add_version("iris", "2")
        self.registry.set_alias("iris", "champion", "2")
        self.runtime = MemoryRuntime(kind="aci")
        self.reconciler = Reconciler(
            DirectorySource(directory, environ={}),
            self.registry,
            {"aci": self.runtime},
            store,
            environ={},
            health_poll_interval=0.01,
        )

    def write(self, cpu: float = 1.0, level: str = "info", self_heal: str = "true") -> None:
        text = MANIFEST.format(cpu=cpu, level=level, self_heal=self_heal)
        (self.directory / "iris-aci.yaml").write_text(text)


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    directory = tmp_path / "manifests"
    directory.mkdir()
    store = SqlHistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    made = Scene(directory, store)
    made.write()
    made.reconciler.reconcile("iris-aci", "poll")
    yield made
    store.close()


def test_a_resource_change_is_a_replace_that_says_it_means_downtime(scene: Scene) -> None:
    scene.write(cpu=2.0)
    (planned,), problems = scene.reconciler.diff()  # what `aliasflow diff` prints
    assert problems == []
    assert planned.operation is Operation.REPLACE
    assert "downtime" in planned.reason

    scene.runtime.calls.clear()
    outcome = scene.reconciler.reconcile("iris-aci", "git")
    assert outcome.action is Operation.REPLACE
    assert scene.runtime.calls == [(Operation.DELETE, "iris-aci"), (Operation.CREATE, "iris-aci")]
    latest = scene.store.history("iris-aci")[0]
    assert latest.action == "replace"  # the history's and the dashboard's action column
    assert "downtime" in latest.message
    status = scene.store.get_status("iris-aci")
    assert status is not None
    assert "downtime" in status.message

    scene.write(cpu=2.0, level="debug")
    assert scene.reconciler.reconcile("iris-aci", "git").action is Operation.RECREATE


def test_serving_another_version_without_self_heal_is_never_healthy(scene: Scene) -> None:
    """A restart brought the boot version back and selfHeal is off: OutOfSync, with the
    reason, not Healthy on a version the server does not serve."""
    scene.write(self_heal="false")
    scene.runtime.serve("iris-aci", "1")
    assert scene.reconciler.sync_all("poll", lambda _n, _t: None)[0].operation is Operation.NOOP
    scene.reconciler.reconcile("iris-aci", "poll")
    status = scene.store.get_status("iris-aci")
    assert status is not None
    assert (status.sync, status.health, status.reason) == (
        Sync.OUT_OF_SYNC,
        Health.DEGRADED,
        Reason.SELF_HEAL_DISABLED,
    )
    assert status.message == "serving version 1, expected 2; selfHeal is off"
    assert status.served_version == "1"


def test_a_server_that_stops_answering_is_re_checked_by_the_full_pass(scene: Scene) -> None:
    enqueued: list[str] = []
    scene.reconciler.sync_all("poll", lambda name, _t: enqueued.append(name))
    assert enqueued == []  # steady: nothing to do
    booting = replace(scene.runtime.workloads["iris-aci"], ready=False, served_version=None)
    scene.runtime.workloads["iris-aci"] = booting
    scene.reconciler.sync_all("poll", lambda name, _t: enqueued.append(name))
    assert enqueued == ["iris-aci"]
    scene.reconciler.reconcile("iris-aci", "poll")
    status = scene.store.get_status("iris-aci")
    assert status is not None
    assert status.health is Health.PROGRESSING  # no longer Healthy
