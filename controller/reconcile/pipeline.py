"""The reconcile pipeline for one deployment.

It reads top to bottom as its steps: load desired → observe → plan → policy → gates →
apply → health gate → (bake) → record. A promotion the manifest asks to watch starts a
bake (`bake.py`); a bake whose analysis failed is rolled back here, in the queue's
order. Every step fails in one way, with the reason its error carries, and the status
is always written (in a `finally`). The served version recorded as "applied" moves only
after the health gate has seen the workload ready and serving the desired version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from controller.core.errors import ControllerError, GateFailedError, QuarantinedError
from controller.core.failpoints import failpoint
from controller.core.manifest import LoadedManifest
from controller.core.ports import ManifestSource, Runtime
from controller.core.records import (
    Bake,
    BakeState,
    DeploymentStatus,
    Reason,
    Result,
    SyncRecord,
)
from controller.core.types import (
    Action,
    ActualState,
    DesiredState,
    NotificationEvent,
    Operation,
    Outcome,
    Trigger,
)
from controller.reconcile import status as statuses
from controller.reconcile.bake import Bakes
from controller.reconcile.desired import DesiredResolver
from controller.reconcile.execute import execute
from controller.reconcile.failurelog import RepeatedFailures
from controller.reconcile.health import wait_until_serving
from controller.reconcile.plan import plan_deployment
from controller.reconcile.policy import KnownFailures, decide
from controller.reconcile.progress import Steps
from controller.reconcile.promotion import PromotionCheck, is_promotion, served_version
from controller.reconcile.recorder import Recorder

log = logging.getLogger("aliasflow.reconcile")

ROLLOUTS = frozenset({Operation.CREATE, Operation.HOTSWAP, Operation.RECREATE, Operation.REPLACE})


@dataclass
class _Pass:
    """What one run has learnt so far; the `finally` writes whatever it holds."""

    status: DeploymentStatus
    outcome: Outcome
    desired: DesiredState | None = None
    record: SyncRecord | None = None
    promoted_from: str | None = None


class DeploymentPipeline:
    def __init__(
        self,
        source: ManifestSource,
        resolver: DesiredResolver,
        runtimes: Mapping[str, Runtime],
        recorder: Recorder,
        failures: KnownFailures,
        bakes: Bakes,
        steps: Steps,
        health_poll_interval: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bakes = bakes
        self.steps = steps
        self.source = source
        self.resolver = resolver
        self.promotions = PromotionCheck(resolver.registry)
        self.runtimes = runtimes
        self.recorder = recorder
        self.failures = failures
        self.health_poll_interval = health_poll_interval
        self.clock = clock
        self.repeats = RepeatedFailures()

    def run(self, name: str, trigger: Trigger, noticed_at: float | None = None) -> Outcome:
        manifests = self.source.snapshot()
        loaded = manifests.deployments.get(name)
        if loaded is None:
            errors = [str(e) for e in manifests.errors]
            message = "no valid manifest" + (f": {'; '.join(errors)}" if errors else "")
            return Outcome(name, Operation.NOOP, Result.SKIPPED, message, Reason.MANIFEST_INVALID)
        started = self.clock()
        previous = self.recorder.previous_status(name)
        now = _Pass(
            statuses.base_status(loaded, previous, manifests.revision),
            Outcome(name, Operation.NOOP, Result.SKIPPED, "not started"),
        )
        try:
            self._steps(now, loaded, previous, trigger, manifests.revision, noticed_at)
        except ControllerError as exc:
            self._failed(now, exc)
        except Exception as exc:
            # A bug must not leave the deployment shown as Progressing forever.
            log.exception("unexpected error reconciling %s", name)
            now.status = statuses.internal_error(now.status, exc)
            message, reason = now.status.message, Reason.INTERNAL_ERROR
            now.outcome = replace(now.outcome, result=Result.FAILED, message=message, reason=reason)
            now.outcome = replace(now.outcome, retry=True)
        finally:
            self._record(now, started)
        return now.outcome

    def _steps(
        self,
        now: _Pass,
        loaded: LoadedManifest,
        previous: DeploymentStatus | None,
        trigger: Trigger,
        revision: str | None,
        noticed_at: float | None,
    ) -> None:
        queued = self.bakes.pending(loaded.deployment.name)
        if queued is not None:
            self._progress(now, loaded, queued, revision)
            return
        desired = now.desired = self.resolver.resolve(loaded)
        now.status = statuses.with_desired(now.status, desired)
        runtime = self.runtimes[desired.target_kind]
        actual = runtime.observe(desired.name)
        now.status = statuses.with_actual(now.status, actual)
        action = plan_deployment(desired, actual)
        decision = decide(
            action,
            automated=desired.automated,
            trigger=trigger,
            failed_before=self.failures.failed_before(desired),
        )
        if decision.record:
            now.record = self.recorder.begin(loaded, desired, action, trigger, revision)
        if not decision.proceed:
            self._skipped(now, decision.reason, desired, actual, action, previous)
            return
        now.outcome = Outcome(desired.name, action.operation, Result.FAILED, "interrupted")
        self.promotions.check(loaded, desired, actual)
        self._roll_out(now, loaded, runtime, action, trigger)
        if noticed_at is not None and action.operation in ROLLOUTS:
            self.recorder.metrics.alias_to_serving.labels(trigger.value).observe(
                self.clock() - noticed_at
            )

    def _roll_out(
        self,
        now: _Pass,
        loaded: LoadedManifest,
        runtime: Runtime,
        action: Action,
        trigger: Trigger,
    ) -> None:
        desired, actual = action.desired, action.actual
        assert desired is not None  # a rollout always has a desired state
        progressing = statuses.progressing(
            now.status, action, now.record.id if now.record else None
        )
        self.recorder.write_status(progressing)
        promotion = is_promotion(desired, actual)
        # Watched only when something served before: that is what a rollback returns to.
        watched = (
            promotion
            and served_version(actual) is not None
            and loaded.deployment.spec.rollout.analysis is not None
        )
        canary = action.operation is Operation.CANARY
        before = self.bakes.baseline(actual, desired.target_kind) if watched or canary else None
        if promotion:
            now.promoted_from = served_version(actual)
            self.bakes.supersede(desired.name)
            self._announce(NotificationEvent.PROMOTION_STARTED, progressing, now, desired)
        execute(runtime, action, trigger)
        failpoint("after_apply")
        if canary:
            self._canary_started(now, loaded, action, before)
            return
        split = action.operation is Operation.TRAFFIC
        final = wait_until_serving(runtime, desired, self.health_poll_interval, split)
        failpoint("after_health_gate")
        self.failures.forget(desired.name)
        now.status = statuses.succeeded(now.status, final, action, desired)
        if watched:
            bake = self.bakes.start(loaded, desired, now.promoted_from, final, before)
            now.status = replace(now.status, reason=Reason.BAKING, message=bake.message)
        elif promotion:
            self._announce(NotificationEvent.PROMOTION_SUCCEEDED, now.status, now, desired)
        now.outcome = Outcome(
            desired.name, action.operation, Result.SUCCEEDED, now.status.message, Reason.SUCCEEDED
        )

    def _announce(
        self,
        event: NotificationEvent,
        status: DeploymentStatus,
        now: _Pass,
        desired: DesiredState,
    ) -> None:
        self.recorder.notify(event, status, now.promoted_from, desired.model_version)

    def _canary_started(
        self, now: _Pass, loaded: LoadedManifest, action: Action, before: str | None
    ) -> None:
        """The server runs the new version beside the served one: the watch takes over."""
        desired = action.desired
        assert desired is not None
        final = self.steps.applied(desired)
        self.failures.forget(desired.name)
        bake = self.bakes.start(loaded, desired, now.promoted_from, final, before, canary=True)
        now.status = statuses.canary(statuses.with_actual(now.status, final), bake.message)
        now.outcome = Outcome(
            desired.name, action.operation, Result.SUCCEEDED, bake.message, Reason.CANARY
        )

    def _progress(
        self, now: _Pass, loaded: LoadedManifest, bake: Bake, revision: str | None
    ) -> None:
        """A step the watch queued: the next canary step, a promotion, or a rollback."""
        now.outcome = Outcome(bake.deployment, Operation.NOOP, Result.FAILED, "interrupted")
        done = self.steps.act(bake, loaded)
        now.desired = done.desired
        now.record = self.recorder.begin(
            loaded, done.desired, done.action, Trigger.ANALYSIS, revision
        )
        serving = statuses.with_desired(now.status, done.desired)
        now.status = statuses.progressed(serving, done)
        now.outcome = Outcome(
            bake.deployment, done.action.operation, Result.SUCCEEDED, done.message, done.reason
        )
        if done.event is not None:
            self.recorder.notify(done.event, now.status, done.from_version, done.to_version)
        if bake.state is BakeState.FAILED and bake.failed_at is not None:
            self.recorder.metrics.breach_to_rollback.observe(self.clock() - bake.failed_at)

    def _skipped(
        self,
        now: _Pass,
        reason: Reason,
        desired: DesiredState,
        actual: ActualState | None,
        action: Action,
        previous: DeploymentStatus | None,
    ) -> None:
        if reason is Reason.SUCCEEDED:
            now.status = statuses.steady(now.status, desired, actual, action)
            result = Result.SUCCEEDED
            message = action.reason
        else:
            if reason is Reason.NOT_AUTOMATED:
                now.status = statuses.not_automated(now.status, actual, action)
            else:
                now.status = statuses.previously_failed(now.status, previous)
            result = Result.SKIPPED
            message = now.status.message
        now.outcome = Outcome(desired.name, action.operation, result, message, now.status.reason)

    def _failed(self, now: _Pass, exc: ControllerError) -> None:
        desired_version = now.status.desired_version
        now.status = statuses.failed(now.status, exc)
        if isinstance(exc, GateFailedError | QuarantinedError):
            self.recorder.notify(
                NotificationEvent.PROMOTION_REFUSED,
                now.status,
                now.status.served_version,
                desired_version,
            )
        if not exc.retryable and now.desired is not None:
            # A rollout that failed its checks or its health gate would fail the same way
            # on the next timer tick: wait for a change (alias, manifest) or a person.
            self.failures.remember(now.desired)
        self.repeats.log(log, now.status, exc)
        now.outcome = replace(
            now.outcome, result=Result.FAILED, message=now.status.message, reason=exc.reason
        )
        now.outcome = replace(now.outcome, retry=exc.retryable)

    def _record(self, now: _Pass, started: float) -> None:
        if now.outcome.result is not Result.FAILED:
            self.repeats.forget(now.status.name)  # the next failure is news again
        if now.record is not None and now.record.id is not None:
            now.status = replace(now.status, last_sync_id=now.record.id)
        self.recorder.write_status(now.status)
        if now.record is not None:
            failpoint("before_finish")
            self.recorder.finish(now.record, now.outcome)
        self.recorder.counted(now.outcome, started)
