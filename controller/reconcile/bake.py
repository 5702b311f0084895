"""The watch after a promotion: analysis while the new version takes traffic, and the
automatic rollback when it fails.

A promotion whose manifest has `rollout.analysis` starts a bake when the new version
passes the health gate. Until `bakeSeconds` have passed, `tick()` (on the controller's
analysis timer) reads the server's per-version counters and judges the new version's
window against the thresholds and the replaced version's figures from before the switch
(`analysis.judge`). The bake lives in the history store, so a controller restarted
mid-bake resumes it.

A failing verdict does not act on the spot: it marks the bake `Failed` and queues the
deployment, so the rollback runs in the pipeline, serialised with every other reconcile
of it. The rollback quarantines the version first (so nothing rolls it out again), swaps
the server back to the version it kept loaded, then moves the alias back when the
manifest says `onFailure: revert`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from controller.core.errors import ControllerError, RolloutRejectedError
from controller.core.manifest import Analysis, LoadedManifest
from controller.core.ports import QUARANTINE_TAG, HistoryStore, ManifestSource, Registry, Runtime
from controller.core.records import Bake, BakeState, Reason, Result, SyncRecord
from controller.core.types import (
    Action,
    ActualState,
    DesiredState,
    NotificationEvent,
    OnFailure,
    Operation,
    Trigger,
)
from controller.reconcile.analysis import (
    VerdictState,
    VersionStats,
    combined,
    judge,
    parse_server_metrics,
)
from controller.reconcile.desired import DesiredResolver
from controller.reconcile.execute import execute
from controller.reconcile.health import wait_until_serving
from controller.reconcile.recorder import Recorder
from controller.runtimes.hotswap import release_previous
from controller.runtimes.probe import read_metrics

log = logging.getLogger("aliasflow.bake")

Enqueue = Callable[[str, Trigger, float], None]


class Bakes:
    def __init__(
        self,
        source: ManifestSource,
        resolver: DesiredResolver,
        runtimes: Mapping[str, Runtime],
        recorder: Recorder,
        *,
        admin_token: str | None = None,
        health_poll_interval: float = 0.25,
        clock: Callable[[], float] = time.time,
        read: Callable[[str], str | None] = read_metrics,
    ) -> None:
        self.source = source
        self.resolver = resolver
        self.runtimes = runtimes
        self.recorder = recorder
        self.admin_token = admin_token
        self.health_poll_interval = health_poll_interval
        self.clock = clock
        self.read = read

    @property
    def store(self) -> HistoryStore:
        return self.recorder.store

    @property
    def registry(self) -> Registry:
        return self.resolver.registry

    # --- from the pipeline ---------------------------------------------------------------

    def baseline(self, actual: ActualState | None) -> str | None:
        """The server's counters before the switch (the replaced version's figures)."""
        if actual is None or actual.endpoint is None or not actual.running:
            return None
        return self.read(actual.endpoint)

    def start(
        self,
        loaded: LoadedManifest,
        desired: DesiredState,
        from_version: str | None,
        final: ActualState,
        before: str | None,
    ) -> Bake:
        analysis = loaded.deployment.spec.rollout.analysis
        assert analysis is not None  # only watched promotions start a bake
        baseline = (
            combined(parse_server_metrics(before), from_version)
            if before is not None and from_version is not None
            else None
        )
        after = self.read(final.endpoint) if final.endpoint else None
        start = combined(parse_server_metrics(after), desired.model_version) if after else None
        now = self.clock()
        bake = Bake(
            deployment=desired.name,
            model_name=desired.model_name,
            alias=desired.alias,
            from_version=from_version,
            to_version=desired.model_version,
            started_at=now,
            ends_at=now + analysis.bake_seconds,
            baseline=json.dumps(baseline.as_json() if baseline else {}),
            start=json.dumps((start or VersionStats()).as_json()),
            message=f"watching version {desired.model_version} for {analysis.bake_seconds}s",
        )
        self.store.put_bake(bake)
        return bake

    def supersede(self, name: str) -> None:
        """A new rollout replaces the version being watched: that watch is over."""
        bake = self.store.get_bake(name)
        if bake is not None and bake.state in (BakeState.BAKING, BakeState.FAILED):
            self.store.put_bake(replace(bake, state=BakeState.SUPERSEDED, finished_at=self.clock()))

    def failed(self, name: str) -> Bake | None:
        bake = self.store.get_bake(name)
        return bake if bake is not None and bake.state is BakeState.FAILED else None

    def roll_back(
        self, bake: Bake, loaded: LoadedManifest
    ) -> tuple[DesiredState, ActualState, str]:
        """Quarantine, swap back, move the alias back: returns what serves now and why."""
        verdict = json.loads(bake.verdict or "{}")
        why = str(verdict.get("text") or bake.message or "analysis failed")
        if bake.from_version is None:
            raise RolloutRejectedError(
                f"version {bake.to_version} failed its analysis ({why}) and there is no "
                "previous version to roll back to"
            )
        self.registry.set_version_tag(
            bake.model_name, bake.to_version, QUARANTINE_TAG, f"analysis failed: {why}"
        )
        previous = self.registry.get_version(bake.model_name, bake.from_version)
        restored = self.resolver.build(loaded, previous)
        runtime = self.runtimes[restored.target_kind]
        current = runtime.observe(restored.name)
        execute(
            runtime, Action(Operation.HOTSWAP, restored.name, f"rollback: {why}", restored, current)
        )
        final = wait_until_serving(runtime, restored, self.health_poll_interval)
        message = f"version {bake.to_version} rolled back to {bake.from_version}: {why}"
        on_failure = loaded.deployment.spec.promotion.on_failure
        if on_failure is OnFailure.REVERT and bake.alias is not None:
            try:
                self.registry.set_alias(bake.model_name, bake.alias, bake.from_version)
                message += f"; alias {bake.alias} moved back to {bake.from_version}"
            except ControllerError as exc:
                message += f"; moving alias {bake.alias} back failed ({exc})"
        self.store.put_bake(
            replace(bake, state=BakeState.ROLLED_BACK, finished_at=self.clock(), message=message)
        )
        return restored, final, message

    # --- from the analysis timer --------------------------------------------------------

    def tick(self, enqueue: Enqueue) -> None:
        """Judge every bake in progress; queue the rollbacks; end the bakes whose time is up."""
        snapshot = self.source.snapshot()
        for bake in self.store.bakes((BakeState.BAKING,)):
            loaded = snapshot.deployments.get(bake.deployment)
            analysis = loaded.deployment.spec.rollout.analysis if loaded else None
            if loaded is None or analysis is None:
                self.supersede(bake.deployment)  # the manifest no longer asks for it
                continue
            try:
                self._judge(bake, analysis, enqueue)
            except ControllerError as exc:
                log.warning("analysis of %s skipped: %s", bake.deployment, exc)

    def _judge(self, bake: Bake, analysis: Analysis, enqueue: Enqueue) -> None:
        status = self.store.get_status(bake.deployment)
        text = self.read(status.endpoint) if status is not None and status.endpoint else None
        now = self.clock()
        if text is None:
            if now >= bake.ends_at:
                self._finish(bake, BakeState.INCONCLUSIVE, "the server's metrics could not be read")
            return
        current = combined(parse_server_metrics(text), bake.to_version)
        start = VersionStats.from_json(json.loads(bake.start))
        if current.requests < start.requests:
            # The server restarted (its counters begin again): the window restarts too.
            self.store.put_bake(replace(bake, start=json.dumps(current.as_json())))
            return
        baseline_raw = json.loads(bake.baseline)
        baseline = VersionStats.from_json(baseline_raw) if baseline_raw else None
        verdict = judge(analysis, current.minus(start), baseline)
        recorded = replace(bake, verdict=json.dumps(verdict.as_json()), message=str(verdict))
        if verdict.state is VerdictState.FAILING:
            log.warning("analysis of %s failed: %s", bake.deployment, verdict)
            self.store.put_bake(replace(recorded, state=BakeState.FAILED, failed_at=now))
            enqueue(bake.deployment, Trigger.ANALYSIS, now)
        elif now >= bake.ends_at:
            passed = verdict.state is VerdictState.PASSING
            self._finish(
                recorded, BakeState.PASSED if passed else BakeState.INCONCLUSIVE, str(verdict)
            )
        elif recorded.verdict != bake.verdict:
            self.store.put_bake(recorded)

    def _finish(self, bake: Bake, state: BakeState, why: str) -> None:
        status = self.store.get_status(bake.deployment)
        if status is not None and status.endpoint and self.admin_token is not None:
            release_previous(status.endpoint, self.admin_token)
        if state is BakeState.PASSED:
            message = f"version {bake.to_version} passed its analysis: {why}"
        else:
            message = f"version {bake.to_version} kept without a verdict: {why}"
        self.store.put_bake(replace(bake, state=state, finished_at=self.clock(), message=message))
        self._history(bake, state, message)
        if status is not None:
            done = replace(status, reason=Reason.SUCCEEDED, message=message)
            self.recorder.write_status(done)
            self.recorder.notify(
                NotificationEvent.PROMOTION_SUCCEEDED, done, bake.from_version, bake.to_version
            )

    def _history(self, bake: Bake, state: BakeState, message: str) -> None:
        now = self.clock()
        record = SyncRecord(
            deployment=bake.deployment,
            trigger=Trigger.ANALYSIS.value,
            started_at=bake.started_at,
            result=Result.SUCCEEDED,
            action="analysis",
            model_name=bake.model_name,
            model_version=bake.to_version,
            message=message,
            finished_at=now,
            reason=Reason.SUCCEEDED if state is BakeState.PASSED else Reason.BAKING,
        )
        try:
            self.store.begin_sync(record)
        except ControllerError as exc:
            log.error("could not record the end of the bake of %s: %s", bake.deployment, exc)
