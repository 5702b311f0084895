"""The running controller: wires settings to the registry, runtimes, store, queue and timers,
and is the one object the HTTP layer talks to.

`Controller` owns every background activity (poll timer, git timer, delivery-id cleanup,
reconcile workers) and is started and stopped by the HTTP app's lifespan, so nothing runs
at import and a test can build as many controllers as it likes. Routes call its methods
(`deployments()`, `request_sync()`, `rollback()`, `receive_mlflow()`, ...) and never reach
into the store, queue or reconciler themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import generate_latest

from controller.core.errors import ControllerError, RegistryUnavailableError, TemporaryError
from controller.core.manifest import ManifestSnapshot
from controller.core.ports import HistoryStore, ManifestSource, Registry, Runtime
from controller.core.records import Bake, DeploymentStatus, SyncRecord
from controller.core.types import Trigger
from controller.reconcile.failurelog import RepeatedFailures
from controller.reconcile.metrics import ControllerMetrics
from controller.reconcile.queue import WorkQueue
from controller.reconcile.reconciler import Reconciler
from controller.registry.poller import AliasPoller
from controller.runtimes.link import ServerLinks
from controller.service.errors import ConflictError, NotFoundError
from controller.service.rollback import HISTORY_DEPTH, RollbackPlan, plan_rollback
from controller.service.servers import ServerLinkService
from controller.service.settings import ControllerSettings
from controller.service.traffic import TrafficSampler, VersionTraffic
from controller.service.views import DeploymentView, deployment_views
from controller.service.webhooks import WebhookReceipt, WebhookReceiver
from controller.service.wiring import (
    admin_token,
    build_image_resolver,
    build_links,
    build_notifier,
    build_runtimes,
)

log = logging.getLogger("aliasflow.controller")


@dataclass
class ControllerState:
    """What the dashboard shows about the controller itself."""

    started_at: float = field(default_factory=time.time)
    last_poll_at: float | None = None
    last_poll_error: str | None = None
    registry_reachable: bool | None = None
    last_git_pull_at: float | None = None
    last_git_error: str | None = None
    webhook_registered: bool = False
    webhook_error: str | None = None


class Controller:
    def __init__(
        self,
        settings: ControllerSettings,
        *,
        registry: Registry | None = None,
        runtimes: dict[str, Runtime] | None = None,
        source: ManifestSource | None = None,
        store: HistoryStore | None = None,
        links: ServerLinks | None = None,
    ) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = ControllerMetrics()
        self.state = ControllerState()
        if store is None:
            from controller.store.sql import SqlHistoryStore

            store = SqlHistoryStore(settings.effective_database_url)
        self.store: HistoryStore = store
        if registry is None:
            from controller.registry.mlflow_registry import MlflowRegistry

            registry = MlflowRegistry(settings.mlflow_tracking_uri)
        self.registry = registry
        if source is None:
            from controller.manifests.source import GitManifestSource

            source = GitManifestSource(
                settings.manifests_dir,
                git_url=settings.git_url,
                git_branch=settings.git_branch,
                checkout_dir=settings.data_dir / "git" if settings.git_url else None,
            )
        self.source: ManifestSource = source
        self.admin_token = admin_token(settings)
        # Shared by the runtimes that link their servers and the link endpoints.
        self.links = links or build_links(settings)
        self.runtimes = (
            runtimes
            if runtimes is not None
            else build_runtimes(settings, self.admin_token, self.links)
        )
        self.servers = ServerLinkService(
            self.links, self.admin_token, self.source.snapshot, self.store.get_status
        )
        self.notifier = build_notifier(settings, self.store)
        self.reconciler = Reconciler(
            self.source,
            self.registry,
            self.runtimes,
            self.store,
            metrics=self.metrics,
            prune=settings.prune,
            allow_empty=settings.allow_empty,
            resolve_image=build_image_resolver(settings),
            notifier=self.notifier,
            admin_token=self.admin_token,
        )
        self.queue = WorkQueue(self.reconciler.reconcile, workers=settings.workers)
        self.poller = AliasPoller(self.registry)
        self.webhooks = WebhookReceiver(
            settings,
            self.store,
            self.metrics,
            self.source.snapshot,
            self.queue.enqueue,
            self.pull_git,
        )
        self.sampler = TrafficSampler(runtimes=self.runtimes)
        self._scheduler: BackgroundScheduler | None = None
        self._poll_lock = threading.Lock()
        self._manifest_errors: set[str] = set()
        self._first_poll_done = False
        self.repeats = RepeatedFailures()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        interrupted: list[str] = []
        try:
            interrupted = self.store.running_deployments()
            if self.store.mark_interrupted():
                log.warning("sync(s) of %s were interrupted by a previous stop", interrupted)
        except TemporaryError as exc:
            log.error("history store unavailable at start: %s", exc)
        # Re-run each interrupted sync at once: the history then shows how it ended, even
        # when the killed controller had already done the work and the pass is a no-op.
        for name in interrupted:
            self.queue.enqueue(name, Trigger.RESTART)
        if self.settings.register_webhook:
            self.register_webhook()
        scheduler = BackgroundScheduler(daemon=True)
        self._every(scheduler, "poll", self.poll_once, self.settings.poll_interval_seconds)
        if self.settings.git_url:
            self._every(scheduler, "git", self.pull_git, self.settings.git_interval_seconds)
        # Delivery ids older than the signature window cannot be replayed (a stale
        # timestamp is refused before the id is looked at), so they need not be kept.
        cleanup = max(self.settings.webhook_max_age_seconds / 2, 1.0)
        self._every(scheduler, "deliveries", self.forget_old_deliveries, cleanup)
        self._every(scheduler, "analysis", self.analyse, self.settings.analysis_interval_seconds)
        scheduler.start()
        self._scheduler = scheduler

    @staticmethod
    def _every(scheduler: BackgroundScheduler, job: str, func: object, seconds: float) -> None:
        scheduler.add_job(
            func,
            "interval",
            seconds=seconds,
            id=job,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self.queue.close()
        close = getattr(self.notifier, "close", None)
        if close is not None:
            close()
        self.store.close()

    def register_webhook(self) -> None:
        from controller.registry.registration import ensure_webhook

        secret = self.settings.webhook_secret
        public_url = self.settings.public_url or f"http://{self.settings.host}:{self.settings.port}"
        if secret is None:
            self.state.webhook_error = "ALIASFLOW_WEBHOOK_SECRET is not set; polling only"
            log.warning(self.state.webhook_error)
            return
        try:
            ensure_webhook(
                self.settings.mlflow_tracking_uri,
                f"{public_url}/webhooks/mlflow",
                secret.get_secret_value(),
            )
            self.state.webhook_registered = True
            self.state.webhook_error = None
            log.info("MLflow webhook registered for %s/webhooks/mlflow", public_url)
        except (ControllerError, ValueError) as exc:
            # Polling still converges; the webhook only makes it faster.
            self.state.webhook_error = str(exc)
            log.warning("could not register the MLflow webhook (polling only): %s", exc)

    # --- triggers -------------------------------------------------------------------

    def poll_once(self) -> None:
        """Re-read the manifests, one MLflow search per 1000 models, then the cheap full
        pass (self-heal, prune)."""
        with self._poll_lock:
            noticed = time.time()
            self._report_manifest_errors(self.source.refresh())
            try:
                changed = self.poller.poll()
            except RegistryUnavailableError as exc:
                self._warn_repeating(
                    "registry",
                    f"MLflow does not answer ({exc}); deployments keep serving what they "
                    "serve, and nothing changes until it is back",
                )
                self.state.registry_reachable = False
                self.state.last_poll_error = str(exc)
                self.metrics.polls.labels("error").inc()
                self.metrics.registry_up.set(0)
                self.reconciler.report_registry_outage(str(exc))
                return
            if self.state.registry_reachable is False:
                log.info("MLflow answers again")
            self.repeats.forget("registry")
            self.state.registry_reachable = True
            self.state.last_poll_error = None
            self.state.last_poll_at = noticed
            self.metrics.polls.labels("ok").inc()
            self.metrics.last_poll.set(noticed)
            self.metrics.registry_up.set(1)
            self._check_store()
            snapshot = self.source.snapshot()
            for model_name, alias in sorted(changed):
                names = snapshot.following(model_name, alias)
                for name in names:
                    self.queue.enqueue(name, Trigger.POLL, noticed)
                self._log_alias_change(model_name, alias, names)
            self._first_poll_done = True
            try:
                self.reconciler.sync_all("poll", self.enqueue, alias_maps=self.poller.last)
                self._forget_vanished(snapshot)
            except TemporaryError as exc:
                self._warn_repeating("full-pass", f"full pass skipped: {exc}")

    def _warn_repeating(self, key: str, line: str) -> None:
        """Once, then at a growing pause while the same line repeats (see failurelog)."""
        held = self.repeats.admit(key, line)
        if held is not None:
            log.warning("%s%s", line, f" (the same {held} more time(s) since)" if held else "")

    def _log_alias_change(self, model_name: str, alias: str, names: list[str]) -> None:
        """The poll's word for what the webhook path says: "alias champion moved to 3"."""
        version = (self.poller.last or {}).get(model_name, {}).get(alias)
        if not self._first_poll_done:
            if names:  # what a restarted controller found, not a move it saw
                log.info(
                    "alias %s of %s is at version %s: %s",
                    alias,
                    model_name,
                    version,
                    ", ".join(names),
                    extra={"trigger": Trigger.POLL.value},
                )
            return
        moved = f"moved to {version}" if version is not None else "deleted"
        # An alias nobody follows (challenger) is the webhook path's news, not this one's.
        log.log(
            logging.INFO if names else logging.DEBUG,
            "alias %s of %s %s: %d deployment(s) queued",
            alias,
            model_name,
            moved,
            len(names),
            extra={"trigger": Trigger.POLL.value},
        )

    def _report_manifest_errors(self, snapshot: ManifestSnapshot) -> None:
        """Log a manifest error when it appears or changes, and when it is fixed; the rows
        of `deployments()` show it the whole time."""
        current = {str(error) for error in snapshot.errors}
        for error in sorted(current - self._manifest_errors):
            log.warning("manifest not applied: %s", error)
        if self._manifest_errors and not current:
            log.info("every manifest is valid again")
        self._manifest_errors = current

    def _forget_vanished(self, snapshot: ManifestSnapshot) -> None:
        """A status row with neither a manifest nor a workload describes nothing: drop it
        (its history stays). Only when every runtime could list what it owns."""
        orphans = {s.name for s in self.store.list_status()} - set(snapshot.deployments)
        if not orphans:
            return
        owned: set[str] = set()
        try:
            for runtime in self.runtimes.values():
                owned |= {state.name for state in runtime.list_owned()}
        except TemporaryError:
            return  # a runtime could not say what it owns: keep every row for now
        for name in sorted(orphans - owned):
            log.info("%s: no manifest and no workload any more; removed from status", name)
            self.reconciler.recorder.forget_status(name)

    def _check_store(self) -> None:
        """Write history rows the store refused earlier; clear its error once it recovers."""
        if self.store.error is None:
            return
        if self.reconciler.flush_unrecorded() == 0:
            self.store.probe()

    def pull_git(self) -> bool:
        try:
            changed = self.source.pull()
        except TemporaryError as exc:
            self.state.last_git_error = str(exc)
            self._warn_repeating("git", f"git pull failed: {exc}")
            return False
        self.repeats.forget("git")
        self.state.last_git_pull_at = time.time()
        self.state.last_git_error = None
        if changed:
            self.source.refresh()
            self.reconciler.sync_all("git", self.enqueue)
        return changed

    def analyse(self) -> None:
        """Judge the promotions being watched; a failed one is rolled back by the queue."""
        try:
            self.reconciler.analyse(
                lambda name, trigger, noticed: self.queue.enqueue(name, trigger, noticed)
            )
        except TemporaryError as exc:
            log.warning("analysis skipped: %s", exc)

    def forget_old_deliveries(self) -> int:
        cutoff = time.time() - self.settings.webhook_max_age_seconds
        try:
            return self.store.forget_deliveries_before(cutoff)
        except TemporaryError as exc:
            log.warning("could not forget old webhook deliveries: %s", exc)
            return 0

    def enqueue(self, name: str, trigger: str) -> None:
        self.queue.enqueue(name, trigger)

    def deployments_following(self, model_name: str, alias: str) -> list[str]:
        return self.source.snapshot().following(model_name, alias)

    def sync(self, name: str | None, trigger: str = Trigger.MANUAL) -> list[str]:
        """A person asked: re-read the manifests, then reconcile one or all."""
        snapshot = self.source.refresh()
        if name is not None:
            if name not in snapshot.deployments:
                raise NotFoundError(f"no valid manifest named {name!r}")
            self.queue.enqueue(name, trigger)
            return [name]
        names = sorted(snapshot.deployments)
        for deployment in names:
            self.queue.enqueue(deployment, trigger)
        self.reconciler.sync_all(trigger, lambda _n, _t: None)  # prune only; all are queued
        return names

    def rollback(self, name: str, to_version: str | None = None) -> RollbackPlan:
        """Move the alias back in MLflow, then reconcile as for any alias move."""
        plan = plan_rollback(
            name,
            self.source.snapshot(),
            self.store.get_status(name),
            self.store.history(name, HISTORY_DEPTH),
            to_version,
        )
        self.registry.set_alias(plan.model_name, plan.alias, plan.to_version)
        log.info(
            "rollback of %s: %s@%s -> %s",
            name,
            plan.model_name,
            plan.alias,
            plan.to_version,
            extra={"deployment": name, "model_version": plan.to_version, "trigger": "rollback"},
        )
        self.enqueue(name, Trigger.ROLLBACK)
        return plan

    def steer_canary(self, name: str, action: str) -> Bake:
        """A person's hand on a canary under way: advance, hold or abort."""
        bake = self.reconciler.canary(
            name,
            action,
            lambda deployment, trigger, noticed: self.queue.enqueue(deployment, trigger, noticed),
        )
        if bake is None:
            raise ConflictError(f"{name} has no canary under way")
        log.info("canary of %s: %s asked by a person", name, action, extra={"deployment": name})
        return bake

    def receive_mlflow(self, headers: Mapping[str, str], body: bytes) -> WebhookReceipt:
        return self.webhooks.mlflow(headers, body)

    def receive_git(self, headers: Mapping[str, str], body: bytes) -> WebhookReceipt:
        return self.webhooks.git(headers, body)

    # --- reads ----------------------------------------------------------------------

    @property
    def manifests(self) -> ManifestSnapshot:
        return self.source.snapshot()

    @property
    def store_error(self) -> str | None:
        return self.store.error

    def deployments(self) -> list[DeploymentView]:
        statuses = {status.name: status for status in self.store.list_status()}
        return deployment_views(self.source.snapshot(), statuses, self.store.latest_syncs())

    def deployment(self, name: str) -> DeploymentView:
        snapshot = self.source.snapshot()
        status = self.store.get_status(name)
        statuses = {name: status} if status is not None else {}
        history = self.store.history(name, 1)
        latest = {name: history[0]} if history else {}
        views = [v for v in deployment_views(snapshot, statuses, latest) if v.status.name == name]
        if not views:
            raise NotFoundError(f"no deployment named {name!r}")
        return views[0]

    def status(self, name: str) -> DeploymentStatus | None:
        return self.store.get_status(name)

    def bake(self, name: str) -> Bake | None:
        return self.store.get_bake(name)

    def traffic(self, name: str) -> list[VersionTraffic]:
        """Requests, errors and p99 per version over the last minute (read on demand)."""
        status = self.store.get_status(name)
        if status is None:
            return self.sampler.traffic(name, None)
        return self.sampler.traffic(name, status.endpoint, status.target_kind)

    def quarantined(self, model_name: str | None) -> dict[str, str]:
        if model_name is None:
            return {}
        try:
            return self.registry.quarantined_versions(model_name)
        except TemporaryError:
            return {}  # MLflow away: the page still shows what the controller knows

    def history(self, name: str, limit: int = 50) -> list[SyncRecord]:
        return self.store.history(name, limit)

    def delivery_counts(self) -> dict[str, int]:
        try:
            return self.store.delivery_counts()
        except TemporaryError:  # the store's own error is shown on the status rows
            return {}

    def webhook_counters(self) -> dict[str, int]:
        """Deliveries since this controller started, by outcome."""
        counters: dict[str, int] = {}
        for metric in self.metrics.webhook_deliveries.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    outcome = sample.labels.get("outcome", "?")
                    counters[outcome] = counters.get(outcome, 0) + int(sample.value)
        return counters

    def metrics_text(self) -> bytes:
        return generate_latest(self.metrics.registry)
