"""The reconcile pipeline for one deployment, and the cheap full pass over all of them.

One deployment: load desired → observe actual → plan → apply → health gate → record.
Every step has one failure exit with a reason from `Reason`, and the status is always
written (in a `finally`). The served version recorded as "applied" moves only after the
health gate has seen the workload ready and serving the desired version.

The full pass (`sync_all`) reads the manifests once, MLflow's aliases with one search per
1000 models and each runtime's inventory with one list, plans everything, and only hands
deployments that need a change to the per-deployment pipeline. In steady state it writes
nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from controller.errors import (
    AliasNotFoundError,
    ControllerError,
    HealthTimeoutError,
    InvalidSpecError,
    ModelNotFoundError,
    PermanentError,
    RegistryUnavailableError,
    RolloutRejectedError,
    TemporaryError,
)
from controller.failpoints import failpoint
from controller.manifests.loader import LoadedManifest, ManifestSet
from controller.metrics import ControllerMetrics
from controller.reconcile.desired import build_desired
from controller.reconcile.plan import plan_deployment, plan_prune
from controller.reconcile.types import Action, ActualState, DesiredState, Operation
from controller.registry.base import AliasMaps, ModelVersionInfo, Registry
from controller.runtimes.base import Runtime
from controller.store.records import DeploymentStatus, Health, Result, Sync, SyncRecord
from controller.store.sql import HistoryStore, StoreUnavailableError

log = logging.getLogger("aliasflow.reconcile")

# History rows the store refused (disk full, read-only, database down), kept to be
# written when it accepts writes again. Bounded: a store that never comes back must not
# grow the controller's memory without limit; the oldest rows are dropped first.
UNRECORDED_LIMIT = 1000


class Reason(StrEnum):
    MANIFEST_INVALID = "ManifestInvalid"
    ALIAS_MISSING = "AliasMissing"
    MODEL_MISSING = "ModelMissing"
    REGISTRY_UNAVAILABLE = "RegistryUnavailable"
    SPEC_INVALID = "SpecInvalid"
    RUNTIME_UNAVAILABLE = "RuntimeUnavailable"
    ROLLOUT_REJECTED = "RolloutRejected"
    HEALTH_CHECK_FAILED = "HealthCheckFailed"
    NOT_AUTOMATED = "NotAutomated"
    PREVIOUSLY_FAILED = "PreviouslyFailed"


class ManifestReader(Protocol):
    def load(self) -> ManifestSet: ...


@dataclass(frozen=True)
class Outcome:
    name: str
    action: Operation
    result: Result
    message: str
    retry: bool = False


class Reconciler:
    def __init__(
        self,
        source: ManifestReader,
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
    ) -> None:
        self.source = source
        self.registry = registry
        self.runtimes = runtimes
        self.store = store
        self.metrics = metrics or ControllerMetrics()
        self.environ = os.environ if environ is None else environ
        self.prune_enabled = prune
        self.allow_empty = allow_empty
        self.health_poll_interval = health_poll_interval
        self.clock = clock
        self.resolve_image = resolve_image
        # (deployment, spec hash, version) of the last rollout that failed permanently:
        # not retried until the alias moves, the manifest changes, or someone asks.
        self._failed: dict[str, tuple[str, str]] = {}
        self.last_manifests: ManifestSet | None = None
        self._unrecorded: deque[SyncRecord] = deque(maxlen=UNRECORDED_LIMIT)
        self._unrecorded_lock = threading.Lock()

    # --- one deployment -----------------------------------------------------------

    def reconcile(self, name: str, trigger: str, noticed_at: float | None = None) -> Outcome:
        manifests = self._load_manifests()
        loaded = manifests.deployments.get(name)
        if loaded is None:
            errors = [str(e) for e in manifests.errors]
            message = "no valid manifest" + (f": {'; '.join(errors)}" if errors else "")
            return Outcome(name, Operation.NOOP, Result.SKIPPED, message)
        manual = trigger == "manual"
        started = self.clock()
        record: SyncRecord | None = None
        status = self._base_status(loaded, manifests.revision)
        outcome = Outcome(name, Operation.NOOP, Result.SKIPPED, "not started")
        desired: DesiredState | None = None
        try:
            desired = self._desired(loaded)
            status = replace(status, desired_version=desired.model_version, run_id=desired.run_id)
            actual = self._observe(desired)
            status = _with_actual(status, actual)
            action = plan_deployment(desired, actual)
            if not action.changes_anything:
                outcome = Outcome(name, Operation.NOOP, Result.SUCCEEDED, action.reason)
                status = self._steady_status(status, desired, actual, action)
                # A pass after a controller stop records what it found, so the history
                # shows how the interrupted sync ended even when nothing was left to do.
                if manual or trigger == "restart":
                    record = self._begin(loaded, desired, action, trigger, manifests.revision)
                return outcome
            outcome = Outcome(name, action.operation, Result.FAILED, "interrupted")
            if not desired.automated and not manual:
                status = replace(
                    status,
                    sync=Sync.OUT_OF_SYNC,
                    health=_health_of(actual),
                    message=f"{Reason.NOT_AUTOMATED}: {action.reason}; sync by hand",
                )
                return Outcome(name, action.operation, Result.SKIPPED, status.message)
            failed_key = (desired.spec_hash, desired.model_version)
            if not manual and self._failed.get(name) == failed_key:
                previous = self.store.get_status(name)
                status = replace(
                    status,
                    sync=Sync.OUT_OF_SYNC,
                    health=Health.DEGRADED,
                    message=previous.message if previous else f"{Reason.PREVIOUSLY_FAILED}",
                )
                return Outcome(name, action.operation, Result.SKIPPED, status.message)
            record = self._begin(loaded, desired, action, trigger, manifests.revision)
            self._write_status(
                replace(
                    status,
                    sync=Sync.OUT_OF_SYNC,
                    health=Health.PROGRESSING,
                    message=f"{action.operation}: {action.reason}",
                    last_sync_id=record.id,
                )
            )
            log.info(
                "applying %s to %s: %s",
                action.operation,
                name,
                action.reason,
                extra={
                    "deployment": name,
                    "model_version": desired.model_version,
                    "trigger": trigger,
                    "action": action.operation.value,
                },
            )
            self.runtimes[desired.target_kind].apply(action)
            failpoint("after_apply")
            final = self._health_gate(desired)
            failpoint("after_health_gate")
            self._failed.pop(name, None)
            status = replace(
                _with_actual(status, final),
                sync=Sync.SYNCED,
                health=Health.HEALTHY,
                message=f"{action.operation} done: serving version {desired.model_version}",
            )
            outcome = Outcome(name, action.operation, Result.SUCCEEDED, status.message)
            if noticed_at is not None and action.operation in (
                Operation.CREATE,
                Operation.HOTSWAP,
                Operation.RECREATE,
            ):
                self.metrics.alias_to_serving.labels(trigger).observe(self.clock() - noticed_at)
            return outcome
        except ControllerError as exc:
            status, outcome = self._failure(name, status, desired, exc, outcome)
            return outcome
        except Exception as exc:
            # A bug must not leave the deployment shown as Progressing forever.
            log.exception("unexpected error reconciling %s", name)
            message = f"internal error: {type(exc).__name__}: {exc}"
            status = replace(status, sync=Sync.UNKNOWN, health=Health.UNKNOWN, message=message)
            outcome = Outcome(name, outcome.action, Result.FAILED, message, retry=True)
            return outcome
        finally:
            status = replace(status, last_sync_id=record.id if record else status.last_sync_id)
            self._write_status(status)
            if record is not None:
                failpoint("before_finish")
                self._finish(record, outcome)
            self.metrics.reconciles.labels(outcome.action.value, outcome.result.value).inc()
            if outcome.action is not Operation.NOOP:
                self.metrics.reconcile_seconds.labels(outcome.action.value).observe(
                    self.clock() - started
                )

    def _failure(
        self,
        name: str,
        status: DeploymentStatus,
        desired: DesiredState | None,
        exc: ControllerError,
        outcome: Outcome,
    ) -> tuple[DeploymentStatus, Outcome]:
        reason = _reason(exc)
        message = f"{reason}: {exc}"
        action = outcome.action
        if isinstance(exc, AliasNotFoundError | ModelNotFoundError):
            # Never tear down what serves: the last version stays, the status says why.
            health = Health.DEGRADED if status.served_version else Health.MISSING
            sync = Sync.OUT_OF_SYNC
        elif isinstance(exc, RegistryUnavailableError | StoreUnavailableError):
            # We could not compare, so sync is Unknown; the workload was not touched.
            health, sync = status.health, Sync.UNKNOWN
        else:
            health, sync = Health.DEGRADED, Sync.OUT_OF_SYNC
            # A rollout that failed its checks or its health gate would fail the same
            # way on the next timer tick: wait for a change (alias, manifest) or a person.
            if isinstance(exc, PermanentError | HealthTimeoutError) and desired is not None:
                self._failed[name] = (desired.spec_hash, desired.model_version)
        log.warning(
            "reconcile of %s failed: %s",
            name,
            message,
            extra={"deployment": name, "model_version": status.desired_version},
        )
        new_status = replace(status, sync=sync, health=health, message=message)
        retry = isinstance(exc, TemporaryError) and not isinstance(exc, HealthTimeoutError)
        return new_status, Outcome(name, action, Result.FAILED, message, retry=retry)

    def _desired(self, loaded: LoadedManifest) -> DesiredState:
        model = loaded.deployment.spec.model
        if model.alias is not None:
            version = self.registry.resolve_alias(model.name, model.alias)
        else:
            version = self.registry.get_version(model.name, str(model.version))
        return self._build(loaded, version)

    def _build(self, loaded: LoadedManifest, version: ModelVersionInfo) -> DesiredState:
        image = None
        if self.resolve_image is not None and loaded.deployment.spec.target.kind != "local":
            image = self.resolve_image(loaded.deployment.spec.image)
        desired = build_desired(loaded.deployment, version, self.environ, image)
        if desired.target_kind not in self.runtimes:
            raise InvalidSpecError(
                f"target.kind {desired.target_kind!r} is not enabled on this controller "
                f"(enabled: {', '.join(sorted(self.runtimes))})"
            )
        return desired

    def _observe(self, desired: DesiredState) -> ActualState | None:
        return self.runtimes[desired.target_kind].observe(desired.name)

    def _health_gate(self, desired: DesiredState) -> ActualState:
        """Ready and serving the desired version within the manifest's timeout, or failed."""
        runtime = self.runtimes[desired.target_kind]
        deadline = time.monotonic() + desired.health_timeout_seconds
        last: ActualState | None = None
        while True:
            last = runtime.observe(desired.name)
            if last is not None and last.ready and last.served_version == desired.model_version:
                return last
            if time.monotonic() >= deadline:
                seen = (
                    "no workload"
                    if last is None
                    else (f"ready={last.ready}, serving {last.served_version or 'nothing'}")
                )
                raise HealthTimeoutError(
                    f"not serving version {desired.model_version} after "
                    f"{desired.health_timeout_seconds}s ({seen})"
                )
            time.sleep(self.health_poll_interval)

    # --- the full pass ------------------------------------------------------------

    def sync_all(
        self,
        trigger: str,
        enqueue: Callable[[str, str], None],
        alias_maps: AliasMaps | None = None,
    ) -> list[Action]:
        """Plan every deployment cheaply; enqueue the ones that need work; prune when safe.

        `alias_maps` lets the poller pass the search it just made, so a poll costs one
        MLflow call per 1000 models, not two.
        """
        manifests = self._load_manifests()
        try:
            if alias_maps is None:
                alias_maps = self.registry.alias_maps()
            self.metrics.registry_up.set(1)
        except RegistryUnavailableError as exc:
            self.metrics.registry_up.set(0)
            self.report_registry_outage(str(exc), manifests)
            log.warning("MLflow unavailable, nothing pruned: %s", exc)
            return []
        inventories, inventory_complete = self._inventories()
        # One read of every status for the pass, not one query per deployment.
        statuses = {status.name: status for status in self.store.list_status()}
        actions: list[Action] = []
        for name, loaded in sorted(manifests.deployments.items()):
            version = _version_from_maps(loaded, alias_maps)
            if version is None:
                enqueue(name, trigger)  # alias or model missing: the pipeline reports it
                continue
            try:
                desired = self._build(loaded, version)
            except PermanentError:
                enqueue(name, trigger)
                continue
            inventory = inventories.get(desired.target_kind)
            if inventory is None:
                enqueue(name, trigger)
                continue
            action = plan_deployment(desired, inventory.get(name))
            actions.append(action)
            if self._failed.get(name) == (desired.spec_hash, desired.model_version):
                continue  # a known permanent failure waits for a change, not a timer
            if action.changes_anything or _status_differs(statuses.get(name), desired, action):
                enqueue(name, trigger)
        prune_allowed = (
            self.prune_enabled
            and manifests.complete
            and inventory_complete
            and (bool(manifests.deployments) or self.allow_empty)
        )
        owner = {name: kind for kind, inventory in inventories.items() for name in inventory}
        owned = [state for inventory in inventories.values() for state in inventory.values()]
        prunes = plan_prune(manifests.deployments, owned, prune_allowed)
        for action in prunes:
            self._prune(action, trigger, owner[action.name])
        return actions + prunes

    def diff(self) -> tuple[list[Action], list[str]]:
        """What a sync would do, without doing it: (actions, problems)."""
        manifests = self._load_manifests()
        problems = [str(e) for e in manifests.errors]
        actions: list[Action] = []
        for _name, loaded in sorted(manifests.deployments.items()):
            try:
                desired = self._desired(loaded)
                actions.append(plan_deployment(desired, self._observe(desired)))
            except ControllerError as exc:
                problems.append(f"{loaded.deployment.name}: {_reason(exc)}: {exc}")
        inventories, complete = self._inventories()
        owned = [state for inventory in inventories.values() for state in inventory.values()]
        allowed = (
            self.prune_enabled
            and manifests.complete
            and complete
            and not problems
            and (bool(manifests.deployments) or self.allow_empty)
        )
        return actions + plan_prune(manifests.deployments, owned, allowed), problems

    def _prune(self, action: Action, trigger: str, runtime_kind: str) -> None:
        started = self.clock()
        record = self.store.begin_sync(
            SyncRecord(action.name, trigger, started, action=Operation.DELETE.value)
        )
        result, message = Result.SUCCEEDED, "pruned: no manifest for this workload"
        try:
            self.runtimes[runtime_kind].delete(action.name)
            self.store.delete_status(action.name)
            self.metrics.forget(action.name)
        except ControllerError as exc:
            # It stays in the inventory, so the next pass retries the delete.
            result, message = Result.FAILED, f"prune failed: {exc}"
        self.store.finish_sync(
            replace(record, result=result, message=message, finished_at=self.clock())
        )
        self.metrics.reconciles.labels(Operation.DELETE.value, result.value).inc()

    def _inventories(self) -> tuple[dict[str, dict[str, ActualState]], bool]:
        inventories: dict[str, dict[str, ActualState]] = {}
        complete = True
        for kind, runtime in self.runtimes.items():
            try:
                inventories[kind] = {state.name: state for state in runtime.list_owned()}
            except TemporaryError as exc:
                complete = False
                log.warning("cannot list %s workloads, nothing pruned: %s", kind, exc)
        return inventories, complete

    def report_registry_outage(self, error: str, manifests: ManifestSet | None = None) -> None:
        """Sync becomes Unknown with the reason; nothing is touched while MLflow is away."""
        manifests = manifests or self._load_manifests()
        message = f"{Reason.REGISTRY_UNAVAILABLE}: {error}"
        statuses = {status.name: status for status in self.store.list_status()}
        for name in manifests.deployments:
            status = statuses.get(name)
            if status is not None and status.sync is not Sync.UNKNOWN:
                self._write_status(replace(status, sync=Sync.UNKNOWN, message=message))

    # --- bookkeeping ----------------------------------------------------------------

    def _load_manifests(self) -> ManifestSet:
        manifests = self.source.load()
        self.last_manifests = manifests
        for error in manifests.errors:
            log.warning("manifest error: %s", error)
        return manifests

    def _base_status(self, loaded: LoadedManifest, revision: str | None) -> DeploymentStatus:
        previous = self.store.get_status(loaded.deployment.name)
        spec = loaded.deployment.spec
        return DeploymentStatus(
            name=loaded.deployment.name,
            sync=previous.sync if previous else Sync.UNKNOWN,
            health=previous.health if previous else Health.UNKNOWN,
            message=previous.message if previous else "",
            model_name=spec.model.name,
            alias=spec.model.alias,
            desired_version=previous.desired_version if previous else None,
            served_version=previous.served_version if previous else None,
            run_id=previous.run_id if previous else None,
            target_kind=spec.target.kind,
            endpoint=previous.endpoint if previous else None,
            image=spec.image,
            manifest_revision=revision,
            last_sync_id=previous.last_sync_id if previous else None,
        )

    def _steady_status(
        self,
        status: DeploymentStatus,
        desired: DesiredState,
        actual: ActualState | None,
        action: Action,
    ) -> DeploymentStatus:
        in_sync = actual is not None and actual.model_version == desired.model_version
        health = _health_of(actual)
        return replace(
            status,
            sync=Sync.SYNCED if in_sync else Sync.OUT_OF_SYNC,
            health=health,
            message=action.reason
            if health is Health.HEALTHY
            else (actual.detail if actual and actual.detail else action.reason),
        )

    def _begin(
        self,
        loaded: LoadedManifest,
        desired: DesiredState,
        action: Action,
        trigger: str,
        revision: str | None,
    ) -> SyncRecord:
        """The `Running` history row; without a writable store, a row without an id.

        Rollouts go on when the history store refuses writes (disk full, read-only):
        serving is the product and the history is its record, so a full disk must not
        stop a promotion. The row is written complete once the store accepts it again.
        """
        record = SyncRecord(
            deployment=loaded.deployment.name,
            trigger=trigger,
            started_at=self.clock(),
            action=action.operation.value,
            manifest_revision=revision,
            model_name=desired.model_name,
            model_version=desired.model_version,
            run_id=desired.run_id,
            image=loaded.deployment.spec.image,
            image_digest=desired.image if desired.image != loaded.deployment.spec.image else None,
        )
        try:
            return self.store.begin_sync(record)
        except StoreUnavailableError as exc:
            log.error("could not record the start of a sync of %s: %s", record.deployment, exc)
            return record

    def _finish(self, record: SyncRecord, outcome: Outcome) -> None:
        finished = replace(
            record,
            result=outcome.result,
            action=outcome.action.value,
            message=outcome.message,
            finished_at=self.clock(),
        )
        self.flush_unrecorded()
        try:
            self._record(finished)
        except StoreUnavailableError as exc:
            log.error(
                "could not record the end of a sync of %s (kept to write later): %s",
                record.deployment,
                exc,
            )
            with self._unrecorded_lock:
                self._unrecorded.append(finished)

    def _record(self, finished: SyncRecord) -> None:
        if finished.id is None:
            self.store.begin_sync(finished)  # its start was never written: insert it whole
        else:
            self.store.finish_sync(finished)

    def flush_unrecorded(self) -> int:
        """Write the history rows the store refused earlier; returns how many were written."""
        written = 0
        with self._unrecorded_lock:
            while self._unrecorded:
                try:
                    self._record(self._unrecorded[0])
                except StoreUnavailableError:
                    break
                self._unrecorded.popleft()
                written += 1
        if written:
            log.info("wrote %d history row(s) the store had refused", written)
        return written

    def _write_status(self, status: DeploymentStatus) -> None:
        try:
            self.store.put_status(replace(status, updated_at=self.clock()))
        except StoreUnavailableError as exc:
            log.error("could not record the status of %s: %s", status.name, exc)
        self.metrics.set_state(status.name, status.sync, status.health)


def _status_differs(status: DeploymentStatus | None, desired: DesiredState, action: Action) -> bool:
    """A no-op deployment still needs a pass when its recorded status is stale."""
    if status is None:
        return True
    actual = action.actual
    return (
        status.sync is not Sync.SYNCED
        or status.health is not Health.HEALTHY
        or status.desired_version != desired.model_version
        # A runtime whose inventory does not probe servers (aci) reports None: not
        # observed in this pass, which is no reason to re-run the pipeline.
        or (
            actual is not None
            and actual.served_version is not None
            and status.served_version != actual.served_version
        )
    )


def _version_from_maps(loaded: LoadedManifest, alias_maps: AliasMaps) -> ModelVersionInfo | None:
    model = loaded.deployment.spec.model
    aliases = alias_maps.get(model.name)
    if aliases is None:
        return None
    if model.alias is None:
        return ModelVersionInfo(model.name, str(model.version), None)
    version = aliases.get(model.alias)
    return None if version is None else ModelVersionInfo(model.name, version, None)


def _with_actual(status: DeploymentStatus, actual: ActualState | None) -> DeploymentStatus:
    if actual is None:
        return replace(status, served_version=None, endpoint=None)
    return replace(
        status,
        served_version=actual.served_version or status.served_version,
        endpoint=actual.endpoint,
    )


def _health_of(actual: ActualState | None) -> Health:
    if actual is None:
        return Health.MISSING
    if not actual.running:
        return Health.DEGRADED
    return Health.HEALTHY if actual.ready else Health.PROGRESSING


def _reason(exc: ControllerError) -> Reason:
    if isinstance(exc, AliasNotFoundError):
        return Reason.ALIAS_MISSING
    if isinstance(exc, ModelNotFoundError):
        return Reason.MODEL_MISSING
    if isinstance(exc, RegistryUnavailableError):
        return Reason.REGISTRY_UNAVAILABLE
    if isinstance(exc, RolloutRejectedError):
        return Reason.ROLLOUT_REJECTED
    if isinstance(exc, HealthTimeoutError):
        return Reason.HEALTH_CHECK_FAILED
    if isinstance(exc, InvalidSpecError):
        return Reason.SPEC_INVALID
    return Reason.RUNTIME_UNAVAILABLE
