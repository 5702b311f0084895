"""`Reconciler`: the one object the service layer drives, built from the reconcile parts.

- `pipeline.py` reconciles one deployment (load desired → observe → plan → policy →
  apply → health gate → record);
- `fleet.py` plans all of them cheaply, dry-runs (`diff`) and prunes;
- `recorder.py` writes status, history and metrics;
- `policy.py`, `plan.py`, `status.py` hold the decisions, as pure functions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from controller.core.manifest import ManifestSnapshot
from controller.core.ports import (
    AliasMaps,
    HistoryStore,
    ManifestSource,
    Notifier,
    Registry,
    Runtime,
)
from controller.core.records import Bake
from controller.core.types import Action, Outcome, Trigger
from controller.reconcile.bake import Bakes
from controller.reconcile.desired import DesiredResolver
from controller.reconcile.fleet import Enqueue, FleetPass
from controller.reconcile.metrics import ControllerMetrics
from controller.reconcile.pipeline import DeploymentPipeline
from controller.reconcile.policy import KnownFailures
from controller.reconcile.progress import Steps
from controller.reconcile.recorder import Recorder


class Reconciler:
    def __init__(
        self,
        source: ManifestSource,
        registry: Registry,
        runtimes: Mapping[str, Runtime],
        store: HistoryStore,
        metrics: ControllerMetrics | None = None,
        environ: Mapping[str, str] | None = None,
        prune: bool = True,
        allow_empty: bool = False,
        health_poll_interval: float = 0.25,
        clock: Callable[[], float] = time.time,
        resolve_image: Callable[[str], str] | None = None,
        notifier: Notifier | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.source = source
        self.registry = registry
        self.runtimes = runtimes
        self.store = store
        self.metrics = metrics or ControllerMetrics()
        self.recorder = Recorder(store, self.metrics, clock, notifier)
        resolver = DesiredResolver(
            registry, runtimes.keys(), os.environ if environ is None else environ, resolve_image
        )
        failures = KnownFailures()
        self.bakes = Bakes(
            source, resolver, self.recorder, admin_token=admin_token, clock=clock, runtimes=runtimes
        )
        self.steps = Steps(
            self.bakes,
            resolver,
            runtimes,
            health_poll_interval=health_poll_interval,
            clock=clock,
        )
        self.pipeline = DeploymentPipeline(
            source,
            resolver,
            runtimes,
            self.recorder,
            failures,
            self.bakes,
            self.steps,
            health_poll_interval,
            clock,
        )
        self.fleet = FleetPass(
            source,
            resolver,
            runtimes,
            self.recorder,
            failures,
            prune=prune,
            allow_empty=allow_empty,
        )

    @property
    def health_poll_interval(self) -> float:
        return self.pipeline.health_poll_interval

    @health_poll_interval.setter
    def health_poll_interval(self, seconds: float) -> None:
        self.pipeline.health_poll_interval = seconds
        self.steps.health_poll_interval = seconds

    @property
    def last_manifests(self) -> ManifestSnapshot:
        return self.source.snapshot()

    def reconcile(self, name: str, trigger: str, noticed_at: float | None = None) -> Outcome:
        return self.pipeline.run(name, Trigger(trigger), noticed_at)

    def sync_all(
        self, trigger: str, enqueue: Enqueue, alias_maps: AliasMaps | None = None
    ) -> list[Action]:
        return self.fleet.sync_all(Trigger(trigger), enqueue, alias_maps)

    def diff(self) -> tuple[list[Action], list[str]]:
        return self.fleet.diff()

    def report_registry_outage(self, error: str) -> None:
        self.fleet.report_registry_outage(error)

    def flush_unrecorded(self) -> int:
        return self.recorder.flush_unrecorded()

    def analyse(self, enqueue: Callable[[str, Trigger, float], None]) -> None:
        """Judge every promotion being watched; queue the rollbacks that are due."""
        self.bakes.tick(enqueue)

    def canary(
        self, name: str, what: str, enqueue: Callable[[str, Trigger, float], None]
    ) -> Bake | None:
        """`advance` the canary of `name` to its next step now, or `abort` it; None when
        it has no canary in progress."""
        return self.bakes.request(name, what, enqueue)
