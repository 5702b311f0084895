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

from controller.core.errors import ControllerError
from controller.core.manifest import Analysis, LoadedManifest
from controller.core.ports import HistoryStore, ManifestSource, Runtime
from controller.core.records import Bake, BakeState, Reason
from controller.core.types import (
    ActualState,
    DesiredState,
    NotificationEvent,
    Trigger,
)
from controller.reconcile.analysis import (
    Verdict,
    VerdictState,
    VersionStats,
    combined,
    judge,
    parse_server_metrics,
)
from controller.reconcile.desired import DesiredResolver
from controller.reconcile.messages import step_message
from controller.reconcile.readings import counters_of
from controller.reconcile.recorder import Recorder
from controller.runtimes.common import server_key
from controller.runtimes.hotswap import release_previous
from controller.runtimes.probe import read_metrics

log = logging.getLogger("aliasflow.bake")

Enqueue = Callable[[str, Trigger, float], None]


class Bakes:
    def __init__(
        self,
        source: ManifestSource,
        resolver: DesiredResolver,
        recorder: Recorder,
        *,
        admin_token: str | None = None,
        clock: Callable[[], float] = time.time,
        read: Callable[[str], str | None] = read_metrics,
        runtimes: Mapping[str, Runtime] | None = None,
    ) -> None:
        self.source = source
        self.resolver = resolver
        self.recorder = recorder
        self.admin_token = admin_token
        self.clock = clock
        self.read = read
        self.runtimes: Mapping[str, Runtime] = runtimes or {}

    @property
    def store(self) -> HistoryStore:
        return self.recorder.store

    # --- from the pipeline ---------------------------------------------------------------

    def counts(self, name: str, kind: str | None, endpoint: str | None) -> str | None:
        return counters_of(self.runtimes, self.read, name, kind, endpoint)

    def baseline(self, actual: ActualState | None, kind: str | None = None) -> str | None:
        """The server's counters before the switch (the replaced version's figures)."""
        if actual is None or not actual.running:
            return None
        return self.counts(actual.name, kind, actual.endpoint)

    def start(
        self,
        loaded: LoadedManifest,
        desired: DesiredState,
        from_version: str | None,
        final: ActualState,
        before: str | None,
        canary: bool = False,
    ) -> Bake:
        """A bake after a switch, or (`canary`) a canary at its first step."""
        analysis = loaded.deployment.spec.rollout.analysis
        seconds = analysis.bake_seconds if analysis is not None else 0
        baseline = (
            combined(parse_server_metrics(before), from_version)
            if before is not None and from_version is not None
            else None
        )
        now = self.clock()
        bake = Bake(
            deployment=desired.name,
            model_name=desired.model_name,
            alias=desired.alias,
            from_version=from_version,
            to_version=desired.model_version,
            started_at=now,
            ends_at=now + seconds,
            state=BakeState.CANARY if canary else BakeState.BAKING,
            baseline=json.dumps(baseline.as_json() if baseline else {}),
            start=json.dumps(self._reading(final, desired, canary).as_json()),
            message=(
                step_message(desired, 0)
                if canary
                else f"watching version {desired.model_version} for {seconds}s"
            ),
            step=0 if canary else -1,
            step_started_at=now if canary else None,
        )
        self.store.put_bake(bake)
        return bake

    def start_reading(self, actual: ActualState, desired: DesiredState) -> str:
        """The new version's counters (JSON) as a fresh window begins after a promotion."""
        return json.dumps(self._reading(actual, desired, canary=False).as_json())

    def failure_text(self, bake: Bake) -> str:
        verdict = json.loads(bake.verdict or "{}")
        return str(verdict.get("text") or bake.message or "analysis failed")

    def _reading(self, actual: ActualState, desired: DesiredState, canary: bool) -> VersionStats:
        """The new version's counters now: where its window starts."""
        text = self.counts(actual.name, desired.target_kind, actual.endpoint)
        if text is None:
            return VersionStats()
        stats = parse_server_metrics(text)
        new = stats.get((desired.model_version, "canary")) if canary else None
        return (
            new or combined(stats, desired.model_version) if not canary else new or VersionStats()
        )

    def supersede(self, name: str) -> None:
        """A new rollout replaces the version being watched: that watch is over."""
        bake = self.store.get_bake(name)
        if bake is not None and bake.state in ACTIVE:
            self.store.put_bake(replace(bake, state=BakeState.SUPERSEDED, finished_at=self.clock()))

    def pending(self, name: str) -> Bake | None:
        """A rollback or a canary step the watch queued for this deployment, if any."""
        bake = self.store.get_bake(name)
        queued = (BakeState.FAILED, BakeState.ADVANCING)
        return bake if bake is not None and bake.state in queued else None

    def request(self, name: str, what: str, enqueue: Enqueue) -> Bake | None:
        """A person's hand on a canary: `advance` it to the next step now, `hold` it at
        this step (still judged; a failure still rolls back), or `abort` it; None when
        there is no canary in progress."""
        bake = self.store.get_bake(name)
        if bake is None or bake.state is not BakeState.CANARY:
            return None
        now = self.clock()
        if what == "hold":
            marked = replace(bake, held=True, message=f"{bake.message} (held by a person)")
            self.store.put_bake(marked)
            return marked
        if what == "abort":
            marked = replace(
                bake, state=BakeState.FAILED, failed_at=now, message="aborted by a person"
            )
        else:
            marked = replace(
                bake, state=BakeState.ADVANCING, held=False, message="advanced by a person"
            )
        self.store.put_bake(marked)
        enqueue(name, Trigger.MANUAL, now)
        return marked

    # --- from the analysis timer --------------------------------------------------------

    def tick(self, enqueue: Enqueue) -> None:
        """Judge every bake in progress; queue the rollbacks; end the bakes whose time is up."""
        snapshot = self.source.snapshot()
        for bake in self.store.bakes((BakeState.BAKING, BakeState.CANARY)):
            loaded = snapshot.deployments.get(bake.deployment)
            analysis = loaded.deployment.spec.rollout.analysis if loaded else None
            if loaded is None or (analysis is None and bake.state is BakeState.BAKING):
                self.supersede(bake.deployment)  # the manifest no longer asks for it
                continue
            try:
                if bake.state is BakeState.CANARY:
                    self._judge_step(bake, loaded, analysis, enqueue)
                else:
                    assert analysis is not None
                    self._judge(bake, analysis, enqueue)
            except ControllerError as exc:
                log.warning("analysis of %s skipped: %s", bake.deployment, exc)

    def _judge_step(
        self, bake: Bake, loaded: LoadedManifest, analysis: Analysis | None, enqueue: Enqueue
    ) -> None:
        """A canary step: judged on the canary's requests since the canary began; the next
        step once this one has lasted its seconds and passes (no analysis: on time)."""
        steps = loaded.deployment.spec.rollout.steps
        now = self.clock()
        step_over = now - (bake.step_started_at or bake.started_at) >= steps[bake.step].seconds
        recorded = bake
        if analysis is not None:
            verdict = self._verdict(bake, analysis, role="canary")
            if verdict is None:
                return
            text = f"step {bake.step + 1} of {len(steps)}: {verdict}"
            recorded = replace(bake, verdict=json.dumps(verdict.as_json()), message=text)
            if verdict.state is VerdictState.FAILING:
                log.warning("canary of %s failed: %s", bake.deployment, verdict)
                self.store.put_bake(replace(recorded, state=BakeState.FAILED, failed_at=now))
                enqueue(bake.deployment, Trigger.ANALYSIS, now)
                return
            step_over = step_over and verdict.state is VerdictState.PASSING
        if step_over and not bake.held:
            self.store.put_bake(replace(recorded, state=BakeState.ADVANCING))
            enqueue(bake.deployment, Trigger.ANALYSIS, now)
        elif recorded != bake:
            self.store.put_bake(recorded)

    def _verdict(self, bake: Bake, analysis: Analysis, role: str | None = None) -> Verdict | None:
        """The new version's window so far against the thresholds and the baseline; None
        when the server's counters could not be read (or just restarted)."""
        status = self.store.get_status(bake.deployment)
        text = self.counts(bake.deployment, status.target_kind, status.endpoint) if status else None
        if text is None:
            return None
        stats = parse_server_metrics(text)
        current = (
            stats.get((bake.to_version, role), VersionStats())
            if role
            else combined(stats, bake.to_version)
        )
        start = VersionStats.from_json(json.loads(bake.start))
        if current.requests < start.requests:
            # The server restarted (its counters begin again): the window restarts too.
            self.store.put_bake(replace(bake, start=json.dumps(current.as_json())))
            return None
        baseline_raw = json.loads(bake.baseline)
        baseline = VersionStats.from_json(baseline_raw) if baseline_raw else None
        return judge(analysis, current.minus(start), baseline)

    def _judge(self, bake: Bake, analysis: Analysis, enqueue: Enqueue) -> None:
        verdict = self._verdict(bake, analysis)
        now = self.clock()
        if verdict is None:
            if now >= bake.ends_at:
                self.finish(bake, BakeState.INCONCLUSIVE, "the server's metrics could not be read")
            return
        recorded = replace(bake, verdict=json.dumps(verdict.as_json()), message=str(verdict))
        if verdict.state is VerdictState.FAILING:
            log.warning("analysis of %s failed: %s", bake.deployment, verdict)
            self.store.put_bake(replace(recorded, state=BakeState.FAILED, failed_at=now))
            enqueue(bake.deployment, Trigger.ANALYSIS, now)
        elif now >= bake.ends_at:
            passed = verdict.state is VerdictState.PASSING
            self.finish(
                recorded, BakeState.PASSED if passed else BakeState.INCONCLUSIVE, str(verdict)
            )
        elif recorded.verdict != bake.verdict:
            self.store.put_bake(recorded)

    def finish(self, bake: Bake, state: BakeState, why: str) -> None:
        """End a watch: release the kept version, record and announce the verdict."""
        status = self.store.get_status(bake.deployment)
        if status is not None and status.endpoint and self.admin_token is not None:
            release_previous(status.endpoint, server_key(self.admin_token, bake.deployment))
        if state is BakeState.PASSED:
            message = f"version {bake.to_version} passed its analysis: {why}"
        else:
            message = f"version {bake.to_version} kept without a verdict: {why}"
        self.store.put_bake(replace(bake, state=state, finished_at=self.clock(), message=message))
        self.recorder.analysed(
            bake, message, Reason.SUCCEEDED if state is BakeState.PASSED else Reason.BAKING
        )
        if status is not None:
            done = replace(status, reason=Reason.SUCCEEDED, message=message)
            self.recorder.write_status(done)
            self.recorder.notify(
                NotificationEvent.PROMOTION_SUCCEEDED, done, bake.from_version, bake.to_version
            )


ACTIVE = (BakeState.CANARY, BakeState.ADVANCING, BakeState.BAKING, BakeState.FAILED)
