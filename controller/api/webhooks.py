"""`POST /webhooks/mlflow` and `POST /webhooks/git`: verify, de-duplicate, enqueue.

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

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from controller.api.bodies import read_limited
from controller.api.deps import ControllerDep
from controller.api.schemas import WebhookAccepted
from controller.manifests.git_webhook import parse_push_event, verify_github_signature
from controller.registry.webhook import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRejected,
    parse_alias_event,
    verify_mlflow_signature,
)
from controller.service import Controller
from controller.store.records import Health, Sync
from controller.store.sql import StoreUnavailableError

log = logging.getLogger("aliasflow.webhooks")
router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _reject(controller: ControllerDep, source: str, rejected: WebhookRejected) -> HTTPException:
    controller.metrics.webhook_deliveries.labels(source, rejected.reason.value).inc()
    log.warning("%s webhook rejected: %s", source, rejected.detail)
    return HTTPException(rejected.status_code, rejected.detail)


@router.post("/mlflow", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookAccepted)
async def mlflow_webhook(request: Request, controller: ControllerDep) -> WebhookAccepted:
    settings = controller.settings
    if settings.webhook_secret is None:
        controller.metrics.webhook_deliveries.labels("mlflow", "disabled").inc()
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "MLflow webhooks are disabled: set ALIASFLOW_WEBHOOK_SECRET to enable them",
        )
    try:
        body = await read_limited(request, settings.webhook_max_bytes)
    except HTTPException:
        controller.metrics.webhook_deliveries.labels("mlflow", "too_large").inc()
        raise
    delivery_id = request.headers.get(DELIVERY_ID_HEADER)
    try:
        verify_mlflow_signature(
            settings.webhook_secret.get_secret_value(),
            delivery_id,
            request.headers.get(TIMESTAMP_HEADER),
            body,
            request.headers.get(SIGNATURE_HEADER),
            now=time.time(),
            max_age_seconds=settings.webhook_max_age_seconds,
        )
        event = parse_alias_event(body)
    except WebhookRejected as rejected:
        raise _reject(controller, "mlflow", rejected) from None
    assert delivery_id is not None  # verified above
    outcome = "accepted" if event is not None else "ignored"
    try:
        first_time = await run_in_threadpool(
            controller.store.remember_delivery, delivery_id, outcome
        )
    except StoreUnavailableError as exc:
        # Without the replay record we still act: a repeated reconcile is harmless.
        log.error("could not record delivery %s: %s", delivery_id, exc)
        first_time = True
    if not first_time:
        controller.metrics.webhook_deliveries.labels("mlflow", "duplicate").inc()
        return WebhookAccepted(status="duplicate", detail=f"delivery {delivery_id} already seen")
    controller.metrics.webhook_deliveries.labels("mlflow", outcome).inc()
    if event is None:
        return WebhookAccepted(status="ignored", detail="not an alias event")
    noticed = time.time()
    names = await run_in_threadpool(controller.deployments_following, event.model_name, event.alias)
    serving = await run_in_threadpool(_already_serving, controller, names, event.data.version)
    names = [name for name in names if name not in serving]
    for name in names:
        # MLflow commits the alias before it sends the delivery, so a pass that started
        # after `noticed` has read it already.
        controller.queue.enqueue(name, "webhook", noticed, committed_before=noticed)
    log.info(
        "alias %s of %s %s: %d deployment(s) queued",
        event.alias,
        event.model_name,
        event.action,
        len(names),
        extra={"delivery_id": delivery_id, "trigger": "webhook"},
    )
    detail = ""
    if serving:
        detail = f"already serving version {event.data.version}: {', '.join(serving)}"
    return WebhookAccepted(status="accepted", deployments=names, detail=detail)


def _already_serving(controller: Controller, names: list[str], version: str | None) -> list[str]:
    """Deployments in sync and healthy at exactly `version`: the delivery changes nothing."""
    if version is None:  # an alias deletion names no version: always reconcile
        return []
    try:
        statuses = [controller.store.get_status(name) for name in names]
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


@router.post("/git", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookAccepted)
async def git_webhook(request: Request, controller: ControllerDep) -> WebhookAccepted:
    settings = controller.settings
    if settings.git_webhook_secret is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "git webhooks are disabled: set ALIASFLOW_GIT_WEBHOOK_SECRET to enable them",
        )
    body = await read_limited(request, settings.webhook_max_bytes)
    try:
        verify_github_signature(
            settings.git_webhook_secret.get_secret_value(),
            body,
            request.headers.get("X-Hub-Signature-256"),
        )
        if request.headers.get("X-GitHub-Event", "push") != "push":
            controller.metrics.webhook_deliveries.labels("git", "ignored").inc()
            return WebhookAccepted(status="ignored", detail="not a push event")
        push = parse_push_event(body)
    except WebhookRejected as rejected:
        raise _reject(controller, "git", rejected) from None
    controller.metrics.webhook_deliveries.labels("git", "accepted").inc()
    if push.branch != settings.git_branch:
        return WebhookAccepted(status="ignored", detail=f"push to {push.branch}, not watched")
    await run_in_threadpool(controller.pull_git)
    return WebhookAccepted(status="accepted")
