"""Webhook deliveries (MLflow alias events, GitHub pushes): verify, de-duplicate, enqueue.

A webhook is only a hint. The reconcile re-reads MLflow (or git) itself and never trusts
the payload's version, so a forged-but-valid-looking body can at worst cause a no-op pass.

The payload's version is used for one thing only: to drop a delivery that names the
version a deployment already serves, in sync and healthy. Without that, a flood of
deliveries for one alias move costs a reconcile per queue cycle for as long as it lasts
(the queue coalesces what arrives while a pass runs, not what arrives after it); with
it, the flood costs the rollout plus at most one follow-up pass. A skipped delivery
never hides a change: the status it is compared with was written by a pass that read
MLflow, and polling re-reads the aliases on its own anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controller.core.deliveries import WebhookRejected
from controller.core.errors import StoreUnavailableError
from controller.core.manifest import ManifestSnapshot
from controller.core.ports import HistoryStore
from controller.core.records import Health, Sync
from controller.core.types import Trigger
from controller.manifests.git_webhook import parse_push_event, verify_github_signature
from controller.reconcile.metrics import ControllerMetrics
from controller.registry.webhook import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    parse_alias_event,
    verify_mlflow_signature,
)
from controller.service.errors import DisabledError
from controller.service.settings import ControllerSettings

log = logging.getLogger("aliasflow.webhooks")

Enqueue = Callable[..., None]


@dataclass(frozen=True)
class WebhookReceipt:
    status: str  # accepted | ignored | duplicate
    deployments: list[str] = field(default_factory=list)
    detail: str = ""


class WebhookReceiver:
    def __init__(
        self,
        settings: ControllerSettings,
        store: HistoryStore,
        metrics: ControllerMetrics,
        snapshot: Callable[[], ManifestSnapshot],
        enqueue: Enqueue,
        pull_git: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.snapshot = snapshot
        self.enqueue = enqueue
        self.pull_git = pull_git

    def counted(self, source: str, outcome: str) -> None:
        self.metrics.webhook_deliveries.labels(source, outcome).inc()

    def mlflow(self, headers: Mapping[str, str], body: bytes) -> WebhookReceipt:
        """Raises `WebhookRejected` (401/400) or `DisabledError`."""
        secret = self.settings.webhook_secret
        if secret is None:
            self.counted("mlflow", "disabled")
            raise DisabledError(
                "MLflow webhooks are disabled: set ALIASFLOW_WEBHOOK_SECRET to enable them"
            )
        delivery_id = headers.get(DELIVERY_ID_HEADER)
        try:
            verify_mlflow_signature(
                secret.get_secret_value(),
                delivery_id,
                headers.get(TIMESTAMP_HEADER),
                body,
                headers.get(SIGNATURE_HEADER),
                now=time.time(),
                max_age_seconds=self.settings.webhook_max_age_seconds,
            )
            event = parse_alias_event(body)
        except WebhookRejected as rejected:
            self._rejected("mlflow", rejected)
            raise
        assert delivery_id is not None  # verified above
        outcome = "accepted" if event is not None else "ignored"
        if not self._first_time(delivery_id, outcome):
            self.counted("mlflow", "duplicate")
            return WebhookReceipt("duplicate", detail=f"delivery {delivery_id} already seen")
        self.counted("mlflow", outcome)
        if event is None:
            return WebhookReceipt("ignored", detail="not an alias event")
        noticed = time.time()
        names = self.snapshot().following(event.model_name, event.alias)
        serving = self._already_serving(names, event.data.version)
        names = [name for name in names if name not in serving]
        for name in names:
            # MLflow commits the alias before it sends the delivery, so a pass that started
            # after `noticed` has read it already.
            self.enqueue(name, Trigger.WEBHOOK, noticed, committed_before=noticed)
        moved = f"moved to {event.data.version}" if event.data.version is not None else "deleted"
        log.info(
            "alias %s of %s %s: %d deployment(s) queued",
            event.alias,
            event.model_name,
            moved,
            len(names),
            extra={"delivery_id": delivery_id, "trigger": Trigger.WEBHOOK.value},
        )
        detail = ""
        if serving:
            detail = f"already serving version {event.data.version}: {', '.join(serving)}"
        return WebhookReceipt("accepted", names, detail)

    def git(self, headers: Mapping[str, str], body: bytes) -> WebhookReceipt:
        """Raises `WebhookRejected` or `DisabledError`."""
        secret = self.settings.git_webhook_secret
        if secret is None:
            raise DisabledError(
                "git webhooks are disabled: set ALIASFLOW_GIT_WEBHOOK_SECRET to enable them"
            )
        try:
            verify_github_signature(
                secret.get_secret_value(), body, headers.get("X-Hub-Signature-256")
            )
            if headers.get("X-GitHub-Event", "push") != "push":
                self.counted("git", "ignored")
                return WebhookReceipt("ignored", detail="not a push event")
            push = parse_push_event(body)
        except WebhookRejected as rejected:
            self._rejected("git", rejected)
            raise
        self.counted("git", "accepted")
        if push.branch != self.settings.git_branch:
            return WebhookReceipt("ignored", detail=f"push to {push.branch}, not watched")
        self.pull_git()
        return WebhookReceipt("accepted")

    def too_large(self, source: str) -> None:
        self.counted(source, "too_large")

    def _rejected(self, source: str, rejected: WebhookRejected) -> None:
        self.counted(source, rejected.reason.value)
        log.warning("%s webhook rejected: %s", source, rejected.detail)

    def _first_time(self, delivery_id: str, outcome: str) -> bool:
        try:
            return self.store.remember_delivery(delivery_id, outcome)
        except StoreUnavailableError as exc:
            # Without the replay record we still act: a repeated reconcile is harmless.
            log.error("could not record delivery %s: %s", delivery_id, exc)
            return True

    def _already_serving(self, names: list[str], version: str | None) -> list[str]:
        """Deployments in sync and healthy at exactly `version`: the delivery changes nothing."""
        if version is None:  # an alias deletion names no version: always reconcile
            return []
        try:
            statuses = [self.store.get_status(name) for name in names]
        except StoreUnavailableError:
            return []  # cannot tell: reconcile, a repeated pass is harmless
        return [
            status.name
            for status in statuses
            if status is not None
            and status.sync is Sync.SYNCED
            and status.health is Health.HEALTHY
            and status.desired_version == version
            and status.served_version == version
        ]
