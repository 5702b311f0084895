"""The cheap pass over every deployment, its dry run (`diff`), and pruning.

The pass reads the manifest snapshot, MLflow's aliases with one search per 1000 models
and each runtime's inventory with one list, plans everything through the same `plan`
functions as the pipeline, and hands only deployments that need a change (or whose
status is stale) to the per-deployment pipeline. In steady state it writes nothing.
Pruning follows one rule (`PruneGate`) for sync and diff alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial

from controller.core.errors import (
    ControllerError,
    PermanentError,
    RegistryUnavailableError,
    RuntimeUnavailableError,
    TemporaryError,
)
from controller.core.manifest import ManifestSnapshot
from controller.core.ports import AliasMaps, HistoryStore, ManifestSource, Runtime
from controller.core.records import DeploymentStatus, Reason, Sync
from controller.core.types import Action, ActualState, DesiredState, Operation, Trigger
from controller.reconcile import status as statuses
from controller.reconcile.desired import DesiredResolver
from controller.reconcile.metrics import ControllerMetrics
from controller.reconcile.plan import PruneGate, plan_deployment, plan_prune
from controller.reconcile.policy import KnownFailures
from controller.reconcile.recorder import Recorder

log = logging.getLogger("aliasflow.reconcile")

Enqueue = Callable[[str, Trigger], None]
Inventories = dict[str, dict[str, ActualState]]


@dataclass
class FleetPlan:
    """Everything one pass found: planned actions, deployments it could not plan, prunes."""

    actions: list[Action] = field(default_factory=list)
    unresolved: dict[str, ControllerError] = field(default_factory=dict)
    prunes: list[Action] = field(default_factory=list)
    prune_blocked: str | None = None
    statuses: dict[str, DeploymentStatus] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)


class FleetPass:
    def __init__(
        self,
        source: ManifestSource,
        resolver: DesiredResolver,
        runtimes: Mapping[str, Runtime],
        recorder: Recorder,
        failures: KnownFailures,
        *,
        prune: bool = True,
        allow_empty: bool = False,
    ) -> None:
        self.source = source
        self.resolver = resolver
        self.runtimes = runtimes
        self.recorder = recorder
        self.failures = failures
        self.prune_enabled = prune
        self.allow_empty = allow_empty

    @property
    def store(self) -> HistoryStore:
        return self.recorder.store

    @property
    def metrics(self) -> ControllerMetrics:
        return self.recorder.metrics

    def sync_all(
        self, trigger: Trigger, enqueue: Enqueue, alias_maps: AliasMaps | None = None
    ) -> list[Action]:
        """Plan every deployment cheaply; enqueue the ones that need work; prune when safe.

        `alias_maps` lets the poller pass the search it just made, so a poll costs one
        MLflow call per 1000 models, not two.
        """
        manifests = self.source.snapshot()
        try:
            if alias_maps is None:
                alias_maps = self.resolver.registry.alias_maps()
            self.metrics.registry_up.set(1)
        except RegistryUnavailableError as exc:
            self.metrics.registry_up.set(0)
            self.report_registry_outage(str(exc), manifests)
            log.warning("MLflow unavailable, nothing pruned: %s", exc)
            return []
        fleet = self.plan(manifests, alias_maps)
        for name in fleet.unresolved:
            enqueue(name, trigger)  # the pipeline reports it, with its reason
        for action in fleet.actions:
            desired = action.desired
            assert desired is not None  # planned from a desired state
            if self.failures.failed_before(desired):
                continue  # a known permanent failure waits for a change, not a timer
            stale = statuses.differs(fleet.statuses.get(action.name), desired, action)
            if action.changes_anything or stale:
                enqueue(action.name, trigger)
        for action in fleet.prunes:
            if action.operation is Operation.DELETE:
                runtime = self.runtimes[fleet.owner[action.name]]
                self.recorder.pruned(action.name, trigger, partial(runtime.delete, action.name))
            else:
                self._kept(fleet.statuses.get(action.name), action)
        return fleet.actions + fleet.prunes

    def diff(self) -> tuple[list[Action], list[str]]:
        """What a sync would do, without doing it: (actions, problems)."""
        manifests = self.source.snapshot()
        problems = [str(e) for e in manifests.errors]
        try:
            alias_maps: AliasMaps | None = self.resolver.registry.alias_maps()
        except RegistryUnavailableError as exc:
            problems.append(f"{exc.reason}: {exc}")
            alias_maps = None
        fleet = self.plan(manifests, alias_maps)
        problems += [f"{name}: {exc.reason}: {exc}" for name, exc in fleet.unresolved.items()]
        return fleet.actions + fleet.prunes, problems

    def plan(self, manifests: ManifestSnapshot, alias_maps: AliasMaps | None) -> FleetPlan:
        """One plan for the whole fleet; `alias_maps` None means MLflow could not be read."""
        fleet = FleetPlan()
        desired: dict[str, DesiredState] = {}
        for name, loaded in sorted(manifests.deployments.items()):
            if alias_maps is None:
                continue
            try:
                desired[name] = self.resolver.from_maps(loaded, alias_maps)
            except PermanentError as exc:
                fleet.unresolved[name] = exc
        inventories, inventories_complete = self._inventories()
        for name, state in desired.items():
            inventory = inventories.get(state.target_kind)
            if inventory is None:
                fleet.unresolved[name] = RuntimeUnavailableError(
                    f"the {state.target_kind} runtime could not list its workloads"
                )
                continue
            fleet.actions.append(plan_deployment(state, inventory.get(name)))
        # One read of every status for the pass, not one query per deployment.
        fleet.statuses = {status.name: status for status in self.store.list_status()}
        gate = PruneGate(
            enabled=self.prune_enabled,
            manifests_complete=manifests.complete,
            inventories_complete=inventories_complete,
            registry_read=alias_maps is not None,
            deployments=len(manifests.deployments),
            allow_empty=self.allow_empty,
        )
        fleet.prune_blocked = gate.blocked_by()
        fleet.owner = {name: kind for kind, inventory in inventories.items() for name in inventory}
        owned = [state for inventory in inventories.values() for state in inventory.values()]
        keep = {name for name, status in fleet.statuses.items() if not status.prune}
        fleet.prunes = plan_prune(manifests.deployments, owned, fleet.prune_blocked is None, keep)
        return fleet

    def report_registry_outage(self, error: str, manifests: ManifestSnapshot | None = None) -> None:
        """Sync becomes Unknown with the reason; nothing is touched while MLflow is away."""
        manifests = manifests or self.source.snapshot()
        current = {status.name: status for status in self.store.list_status()}
        for name in manifests.deployments:
            status = current.get(name)
            if status is not None and status.sync is not Sync.UNKNOWN:
                self.recorder.write_status(statuses.registry_outage(status, error))

    def _kept(self, status: DeploymentStatus | None, action: Action) -> None:
        if status is None or status.reason is Reason.PRUNE_DISABLED:
            return
        self.recorder.write_status(
            replace(
                statuses.with_actual(status, action.actual),
                sync=Sync.OUT_OF_SYNC,
                health=statuses.health_of(action.actual),
                reason=Reason.PRUNE_DISABLED,
                message=f"{Reason.PRUNE_DISABLED}: {action.reason}",
            )
        )

    def _inventories(self) -> tuple[Inventories, bool]:
        inventories: Inventories = {}
        complete = True
        for kind, runtime in self.runtimes.items():
            try:
                inventories[kind] = {state.name: state for state in runtime.list_owned()}
            except TemporaryError as exc:
                complete = False
                log.warning("cannot list %s workloads, nothing pruned: %s", kind, exc)
        return inventories, complete
