"""Writes what reconciles did: status rows, history rows and metrics.

Rollouts go on when the history store refuses writes (disk full, read-only, database
down): serving is the product and the history is its record, so a full disk must not
stop a promotion. A history row the store refused is kept (bounded, oldest dropped
first) and written complete once the store accepts writes again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from controller.core.errors import ControllerError, StoreUnavailableError
from controller.core.manifest import LoadedManifest
from controller.core.ports import HistoryStore, Notifier, SilentNotifier
from controller.core.records import Bake, DeploymentStatus, Health, Reason, Result, SyncRecord
from controller.core.types import (
    Action,
    DesiredState,
    Notification,
    NotificationEvent,
    Operation,
    Outcome,
    Trigger,
)
from controller.reconcile.metrics import ControllerMetrics

log = logging.getLogger("aliasflow.reconcile")

UNRECORDED_LIMIT = 1000


class Recorder:
    def __init__(
        self,
        store: HistoryStore,
        metrics: ControllerMetrics,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.notifier: Notifier = notifier or SilentNotifier()
        # The health last written per deployment, to notice Degraded and recovery.
        self._health: dict[str, Health] = {}
        self._unrecorded: deque[SyncRecord] = deque(maxlen=UNRECORDED_LIMIT)
        self._unrecorded_lock = threading.Lock()

    def previous_status(self, name: str) -> DeploymentStatus | None:
        return self.store.get_status(name)

    def write_status(self, status: DeploymentStatus) -> None:
        before = self._health_before(status.name)
        try:
            self.store.put_status(replace(status, updated_at=self.clock()))
        except StoreUnavailableError as exc:
            log.error("could not record the status of %s: %s", status.name, exc)
        self.metrics.set_state(status.name, status.sync, status.health, status.reason)
        self._health[status.name] = status.health
        event = health_event(before, status.health)
        if event is not None:
            self.notify(event, status, status.served_version, status.desired_version)

    def notify(
        self,
        event: NotificationEvent,
        status: DeploymentStatus,
        from_version: str | None,
        to_version: str | None,
    ) -> None:
        self.notifier.notify(
            Notification(
                event=event,
                deployment=status.name,
                model_name=status.model_name,
                alias=status.alias,
                from_version=from_version,
                to_version=to_version,
                reason=status.reason,
                message=status.message,
                at=self.clock(),
            )
        )

    def _health_before(self, name: str) -> Health | None:
        if name not in self._health:
            try:
                previous = self.store.get_status(name)
            except StoreUnavailableError:
                return None
            if previous is not None:
                self._health[name] = previous.health
        return self._health.get(name)

    def forget_status(self, name: str) -> None:
        self.store.delete_status(name)
        self.metrics.forget(name)
        self._health.pop(name, None)

    def begin(
        self,
        loaded: LoadedManifest,
        desired: DesiredState,
        action: Action,
        trigger: Trigger,
        revision: str | None,
    ) -> SyncRecord:
        """The `Running` history row; without a writable store, a row without an id."""
        record = SyncRecord(
            deployment=loaded.deployment.name,
            trigger=trigger.value,
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

    def finish(self, record: SyncRecord, outcome: Outcome) -> None:
        finished = replace(
            record,
            result=outcome.result,
            action=outcome.action.value,
            message=outcome.message,
            reason=outcome.reason,
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

    def pruned(self, name: str, trigger: Trigger, delete: Callable[[], None]) -> None:
        """Run `delete` for a workload no manifest asks for, with its history row."""
        record = self.store.begin_sync(
            SyncRecord(name, trigger.value, self.clock(), action=Operation.DELETE.value)
        )
        result, reason, message = (
            Result.SUCCEEDED,
            Reason.PRUNED,
            "pruned: no manifest for this workload",
        )
        try:
            delete()
            self.forget_status(name)
        except ControllerError as exc:
            # It stays in the inventory, so the next pass retries the delete.
            result, reason, message = Result.FAILED, Reason.PRUNE_FAILED, f"prune failed: {exc}"
        self.store.finish_sync(
            replace(record, result=result, reason=reason, message=message, finished_at=self.clock())
        )
        self.metrics.count(Operation.DELETE, result, reason)

    def counted(self, outcome: Outcome, started: float) -> None:
        self.metrics.count(outcome.action, outcome.result, outcome.reason)
        if outcome.action is not Operation.NOOP:
            self.metrics.reconcile_seconds.labels(outcome.action.value).observe(
                self.clock() - started
            )

    def analysed(self, bake: Bake, message: str, reason: Reason) -> None:
        """The history row of a finished watch (its verdict), started when the watch did."""
        record = SyncRecord(
            deployment=bake.deployment,
            trigger=Trigger.ANALYSIS.value,
            started_at=bake.started_at,
            result=Result.SUCCEEDED,
            action="analysis",
            model_name=bake.model_name,
            model_version=bake.to_version,
            message=message,
            finished_at=self.clock(),
            reason=reason,
        )
        try:
            self.store.begin_sync(record)
        except StoreUnavailableError as exc:
            log.error("could not record the end of the watch of %s: %s", bake.deployment, exc)

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

    def _record(self, finished: SyncRecord) -> None:
        if finished.id is None:
            self.store.begin_sync(finished)  # its start was never written: insert it whole
        else:
            self.store.finish_sync(finished)


def health_event(before: Health | None, after: Health) -> NotificationEvent | None:
    """Degraded when health turns Degraded; recovered when a Degraded one is Healthy again."""
    if after is Health.DEGRADED and before is not Health.DEGRADED:
        return NotificationEvent.DEPLOYMENT_DEGRADED
    if after is Health.HEALTHY and before is Health.DEGRADED:
        return NotificationEvent.DEPLOYMENT_RECOVERED
    return None
