"""The running controller: wires settings to the registry, runtimes, store, queue and timers.

`Controller` owns every background activity (poll timer, git timer, reconcile workers)
and is started and stopped by the HTTP app's lifespan, so nothing runs at import and a
test can build as many controllers as it likes.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from controller.errors import ControllerError, RegistryUnavailableError, TemporaryError
from controller.manifests.source import ManifestSource
from controller.metrics import ControllerMetrics
from controller.reconcile.queue import WorkQueue
from controller.reconcile.reconciler import ManifestReader, Reconciler
from controller.registry.base import Registry
from controller.registry.poller import AliasPoller
from controller.runtimes.base import Runtime
from controller.settings import ControllerSettings
from controller.store.sql import HistoryStore, StoreUnavailableError

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


def load_or_create_token(path: Path) -> str:
    """The model servers' admin token: generated once, kept private in the data dir."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def build_runtimes(settings: ControllerSettings, admin_token: str) -> dict[str, Runtime]:
    from controller.runtimes.local import LocalRuntime

    runtimes: dict[str, Runtime] = {
        "local": LocalRuntime(settings.data_dir, admin_token, settings.mlflow_tracking_uri),
    }
    if settings.docker_enabled:
        # Imported only when enabled: the docker SDK is not needed otherwise. Building the
        # runtime does not contact the engine, so the controller starts while Docker is down.
        from controller.runtimes.docker import DockerRuntime

        runtimes["docker"] = DockerRuntime(
            admin_token=admin_token,
            tracking_uri=settings.docker_tracking_uri or settings.mlflow_tracking_uri,
            data_dir=settings.data_dir,
            base_url=settings.docker_host,
        )
    if settings.aci_groups:
        from controller.runtimes.aci.factory import build_aci_runtime

        runtimes["aci"] = build_aci_runtime(settings, admin_token)
    return runtimes


def build_image_resolver(settings: ControllerSettings) -> Callable[[str], str] | None:
    """Tags on the configured ACR become digests; None when no registry is configured."""
    if not settings.acr_login_server:
        return None
    from controller.runtimes.aci.factory import build_acr_resolver

    return build_acr_resolver(settings)


class Controller:
    def __init__(
        self,
        settings: ControllerSettings,
        *,
        registry: Registry | None = None,
        runtimes: dict[str, Runtime] | None = None,
        source: ManifestReader | None = None,
        store: HistoryStore | None = None,
    ) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = ControllerMetrics()
        self.state = ControllerState()
        self.store = store or HistoryStore(settings.effective_database_url)
        if registry is None:
            from controller.registry.mlflow_registry import MlflowRegistry

            registry = MlflowRegistry(settings.mlflow_tracking_uri)
        self.registry = registry
        self.source: ManifestReader = source or ManifestSource(
            settings.manifests_dir,
            git_url=settings.git_url,
            git_branch=settings.git_branch,
            checkout_dir=settings.data_dir / "git" if settings.git_url else None,
        )
        admin = settings.server_admin_token
        self.admin_token = (
            admin.get_secret_value()
            if admin
            else load_or_create_token(settings.data_dir / "server-admin-token")
        )
        self.runtimes = (
            runtimes if runtimes is not None else build_runtimes(settings, self.admin_token)
        )
        self.reconciler = Reconciler(
            self.source,
            self.registry,
            self.runtimes,
            self.store,
            metrics=self.metrics,
            prune=settings.prune,
            allow_empty=settings.allow_empty,
            resolve_image=build_image_resolver(settings),
        )
        self.queue = WorkQueue(self.reconciler.reconcile, workers=settings.workers)
        self.poller = AliasPoller(self.registry)
        self._scheduler: BackgroundScheduler | None = None
        self._poll_lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        interrupted: list[str] = []
        try:
            interrupted = self.store.running_deployments()
            if self.store.mark_interrupted():
                log.warning("sync(s) of %s were interrupted by a previous stop", interrupted)
        except StoreUnavailableError as exc:
            log.error("history store unavailable at start: %s", exc)
        # Re-run each interrupted sync at once: the history then shows how it ended, even
        # when the killed controller had already done the work and the pass is a no-op.
        for name in interrupted:
            self.queue.enqueue(name, "restart")
        if self.settings.register_webhook:
            self.register_webhook()
        scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(
            self.poll_once,
            "interval",
            seconds=self.settings.poll_interval_seconds,
            id="poll",
            max_instances=1,
            coalesce=True,
            next_run_time=_now(),
        )
        if self.settings.git_url:
            scheduler.add_job(
                self.pull_git,
                "interval",
                seconds=self.settings.git_interval_seconds,
                id="git",
                max_instances=1,
                coalesce=True,
                next_run_time=_now(),
            )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self.queue.close()
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
        """One MLflow search per 1000 models, then the cheap full pass (self-heal, prune)."""
        with self._poll_lock:
            noticed = time.time()
            try:
                changed = self.poller.poll()
            except RegistryUnavailableError as exc:
                self.state.registry_reachable = False
                self.state.last_poll_error = str(exc)
                self.metrics.polls.labels("error").inc()
                self.metrics.registry_up.set(0)
                self.reconciler.report_registry_outage(str(exc))
                return
            self.state.registry_reachable = True
            self.state.last_poll_error = None
            self.state.last_poll_at = noticed
            self.metrics.polls.labels("ok").inc()
            self.metrics.last_poll.set(noticed)
            self.metrics.registry_up.set(1)
            self._check_store()
            for model_name, alias in sorted(changed):
                for name in self.deployments_following(model_name, alias):
                    self.queue.enqueue(name, "poll", noticed)
            try:
                self.reconciler.sync_all("poll", self.enqueue, alias_maps=self.poller.last)
            except TemporaryError as exc:
                log.warning("full pass skipped: %s", exc)

    def _check_store(self) -> None:
        """Write history rows the store refused earlier; clear its error once it recovers."""
        if self.store.error is None:
            return
        if self.reconciler.flush_unrecorded() == 0:
            self.store.probe()

    def pull_git(self) -> bool:
        pull = getattr(self.source, "pull", None)
        if pull is None:
            return False
        try:
            changed = bool(pull())
        except TemporaryError as exc:
            self.state.last_git_error = str(exc)
            log.warning("git pull failed: %s", exc)
            return False
        self.state.last_git_pull_at = time.time()
        self.state.last_git_error = None
        if changed:
            self.reconciler.sync_all("git", self.enqueue)
        return changed

    def enqueue(self, name: str, trigger: str) -> None:
        self.queue.enqueue(name, trigger)

    def deployments_following(self, model_name: str, alias: str) -> list[str]:
        manifests = self.reconciler.last_manifests or self.source.load()
        return sorted(
            name
            for name, loaded in manifests.deployments.items()
            if loaded.deployment.spec.model.name == model_name
            and loaded.deployment.spec.model.alias == alias
        )

    def sync(self, name: str | None, trigger: str = "manual") -> list[str]:
        if name is not None:
            self.queue.enqueue(name, trigger)
            return [name]
        manifests = self.source.load()
        names = sorted(manifests.deployments)
        for deployment in names:
            self.queue.enqueue(deployment, trigger)
        self.reconciler.sync_all(trigger, lambda _n, _t: None)  # prune only; all are queued
        return names


def _now() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)
