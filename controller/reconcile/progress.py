"""What a watch does to the servers, when the queue's turn comes: the next canary step,
the promotion of a canary, and the rollback of a version that failed its analysis.

The watch (`bake.py`) only judges; it marks the bake `Advancing` or `Failed` and queues
the deployment. The pipeline then calls `act()`, so every write to a runtime happens in
the queue's order, one reconcile of a deployment at a time.

A rollback quarantines the version first (nothing may roll it out again meanwhile), then
returns the traffic to the version that served before: a canary is removed (the primary
never stopped serving), a switched version is swapped back to the version the server
kept loaded. With `onFailure: revert` the alias moves back last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from controller.core.errors import ControllerError, RolloutRejectedError
from controller.core.manifest import LoadedManifest
from controller.core.ports import QUARANTINE_TAG, HistoryStore, Registry, Runtime
from controller.core.records import Bake, BakeState, Reason
from controller.core.types import (
    Action,
    ActualState,
    DesiredState,
    NotificationEvent,
    OnFailure,
    Operation,
    Traffic,
)
from controller.reconcile.bake import Bakes
from controller.reconcile.desired import DesiredResolver
from controller.reconcile.execute import execute
from controller.reconcile.health import wait_until_serving
from controller.reconcile.messages import step_message


@dataclass(frozen=True)
class Progress:
    """What `act()` did: the action (for history), what serves now and how to say it."""

    action: Action
    desired: DesiredState
    final: ActualState
    reason: Reason
    message: str
    event: NotificationEvent | None
    from_version: str | None
    to_version: str | None


class Steps:
    def __init__(
        self,
        bakes: Bakes,
        resolver: DesiredResolver,
        runtimes: Mapping[str, Runtime],
        *,
        health_poll_interval: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bakes = bakes
        self.resolver = resolver
        self.runtimes = runtimes
        self.health_poll_interval = health_poll_interval
        self.clock = clock

    @property
    def store(self) -> HistoryStore:
        return self.bakes.store

    @property
    def registry(self) -> Registry:
        return self.resolver.registry

    def applied(self, desired: DesiredState, step: int = 0) -> ActualState:
        """Until the servers run `desired` as their canary at `step`'s weight (the canary's
        health gate; where many servers split, until every one does)."""
        runtime = self.runtimes[desired.target_kind]
        weight = desired.steps[step][0]
        return self._wait(
            runtime,
            desired,
            lambda seen: (
                (seen.canary_version, seen.canary_weight) == (desired.model_version, weight)
            ),
        )

    def act(self, bake: Bake, loaded: LoadedManifest) -> Progress:
        if bake.state is BakeState.FAILED:
            return self._roll_back(bake, loaded)
        return self._advance(bake, loaded)

    def _advance(self, bake: Bake, loaded: LoadedManifest) -> Progress:
        new = self._desired(bake.to_version, loaded)
        runtime = self.runtimes[new.target_kind]
        current = runtime.observe(new.name)
        following = bake.step + 1
        if following < len(new.steps):
            action = Action(Operation.CANARY, new.name, step_message(new, following), new, current)
            runtime.set_traffic(new, Traffic.for_step(new, following), current)
            final = self.applied(new, following)
            now = self.clock()
            self.store.put_bake(
                replace(
                    bake,
                    state=BakeState.CANARY,
                    step=following,
                    step_started_at=now,
                    message=step_message(new, following),
                )
            )
            return Progress(
                action, new, final, Reason.CANARY, action.reason, None, bake.from_version, None
            )
        # The last step passed: the canary takes every request (a swap to the loaded
        # canary is instant), and the bake of a hot swap begins.
        action = Action(Operation.HOTSWAP, new.name, "canary promoted", new, current)
        execute(runtime, action)
        final = wait_until_serving(runtime, new, self.health_poll_interval)
        analysis = loaded.deployment.spec.rollout.analysis
        if analysis is None:
            message = f"canary of version {new.model_version} promoted after every step"
            self.bakes.finish(replace(bake, step=-1), BakeState.PASSED, message)
            event: NotificationEvent | None = NotificationEvent.PROMOTION_SUCCEEDED
            reason = Reason.SUCCEEDED
        else:
            now = self.clock()
            message = (
                f"canary of version {new.model_version} promoted; watching it for "
                f"{analysis.bake_seconds}s"
            )
            self.store.put_bake(
                replace(
                    bake,
                    state=BakeState.BAKING,
                    step=-1,
                    ends_at=now + analysis.bake_seconds,
                    start=self.bakes.start_reading(final, new),
                    message=message,
                )
            )
            event, reason = None, Reason.BAKING
        return Progress(
            action, new, final, reason, message, event, bake.from_version, new.model_version
        )

    def _roll_back(self, bake: Bake, loaded: LoadedManifest) -> Progress:
        why = self.bakes.failure_text(bake)
        if bake.from_version is None:
            raise RolloutRejectedError(
                f"version {bake.to_version} failed its analysis ({why}) and there is no "
                "previous version to roll back to"
            )
        self.registry.set_version_tag(
            bake.model_name, bake.to_version, QUARANTINE_TAG, f"analysis failed: {why}"
        )
        restored = self._desired(bake.from_version, loaded)
        runtime = self.runtimes[restored.target_kind]
        current = runtime.observe(restored.name)
        if bake.step >= 0:
            # A canary: the primary never stopped serving; only the canary goes.
            action = Action(
                Operation.CANARY, restored.name, f"canary aborted: {why}", restored, current
            )
            runtime.set_traffic(restored, Traffic.without_canary(restored), current)
            final = self._wait(runtime, restored, lambda seen: seen.canary_version is None)
        else:
            action = Action(Operation.HOTSWAP, restored.name, f"rollback: {why}", restored, current)
            execute(runtime, action)
            final = wait_until_serving(runtime, restored, self.health_poll_interval)
        message = f"version {bake.to_version} rolled back to {bake.from_version}: {why}"
        if loaded.deployment.spec.promotion.on_failure is OnFailure.REVERT and bake.alias:
            try:
                self.registry.set_alias(bake.model_name, bake.alias, bake.from_version)
                message += f"; alias {bake.alias} moved back to {bake.from_version}"
            except ControllerError as exc:
                message += f"; moving alias {bake.alias} back failed ({exc})"
        self.store.put_bake(
            replace(bake, state=BakeState.ROLLED_BACK, finished_at=self.clock(), message=message)
        )
        return Progress(
            action,
            restored,
            final,
            Reason.ROLLED_BACK,
            message,
            NotificationEvent.PROMOTION_ROLLED_BACK,
            bake.to_version,
            bake.from_version,
        )

    def _desired(self, version: str, loaded: LoadedManifest) -> DesiredState:
        info = self.registry.get_version(loaded.deployment.spec.model.name, version)
        return self.resolver.build(loaded, info, self.resolver.shadow_of(loaded))

    def _wait(
        self, runtime: Runtime, desired: DesiredState, done: Callable[[ActualState], bool]
    ) -> ActualState:
        """Until the server says the split is in place (and it is ready), or failed."""
        deadline = time.monotonic() + desired.health_timeout_seconds
        while True:
            seen = runtime.observe(desired.name)
            if seen is not None and seen.ready and done(seen):
                return seen
            if time.monotonic() >= deadline:
                raise RolloutRejectedError(
                    f"{desired.name}: the server did not apply the traffic split within "
                    f"{desired.health_timeout_seconds}s"
                )
            time.sleep(self.health_poll_interval)
