"""Read and sync endpoints of the controller API, plus health and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.api.auth import check_bearer
from controller.api.deps import ControllerDep
from controller.api.schemas import (
    ControllerInfo,
    DeploymentDetail,
    DeploymentOut,
    HistoryRow,
    SyncAccepted,
    deployment_out,
    history_row,
)
from controller.manifests.loader import LoadedManifest
from controller.service import Controller
from controller.store.records import DeploymentStatus, Health, Sync

router = APIRouter()


def require_read(request: Request, controller: Controller) -> None:
    if controller.settings.dashboard_auth:
        check_bearer(request, controller.settings.api_token, "reading the API")


def _deployments(controller: Controller) -> list[dict[str, Any]]:
    manifests = controller.reconciler.last_manifests or controller.source.load()
    statuses = {s.name: s for s in controller.store.list_status()}
    latest = controller.store.latest_syncs()
    names = sorted(set(manifests.deployments) | set(statuses))
    rows = []
    for name in names:
        loaded = manifests.deployments.get(name)
        status_row = statuses.get(name) or _pending_status(name, loaded)
        row = deployment_out(status_row, latest.get(name))
        if loaded is not None:
            row["manifest_file"] = loaded.file
            row["pinned_version"] = loaded.deployment.spec.model.version
            row["alias"] = loaded.deployment.spec.model.alias
        rows.append(row)
    return rows


def _pending_status(name: str, loaded: LoadedManifest | None) -> DeploymentStatus:
    if loaded is None:
        return DeploymentStatus(name, Sync.UNKNOWN, Health.UNKNOWN, "no manifest")
    spec = loaded.deployment.spec
    return DeploymentStatus(
        name,
        Sync.UNKNOWN,
        Health.UNKNOWN,
        "waiting for the first reconcile",
        model_name=spec.model.name,
        alias=spec.model.alias,
        target_kind=spec.target.kind,
        image=spec.image,
    )


@router.get("/api/deployments", response_model=list[DeploymentOut], tags=["deployments"])
async def list_deployments(request: Request, controller: ControllerDep) -> list[dict[str, Any]]:
    require_read(request, controller)
    return await run_in_threadpool(_deployments, controller)


@router.get("/api/deployments/{name}", response_model=DeploymentDetail, tags=["deployments"])
async def get_deployment(name: str, request: Request, controller: ControllerDep) -> dict[str, Any]:
    require_read(request, controller)
    rows = {row["name"]: row for row in await run_in_threadpool(_deployments, controller)}
    if name not in rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no deployment named {name!r}")
    manifests = controller.reconciler.last_manifests
    loaded = manifests.deployments.get(name) if manifests else None
    detail = dict(rows[name])
    detail["manifest"] = (
        loaded.deployment.model_dump(mode="json", by_alias=True) if loaded else None
    )
    return detail


@router.get(
    "/api/deployments/{name}/history", response_model=list[HistoryRow], tags=["deployments"]
)
async def deployment_history(
    name: str,
    request: Request,
    controller: ControllerDep,
    limit: int = Query(50, ge=1, le=1000),
) -> list[HistoryRow]:
    require_read(request, controller)
    records = await run_in_threadpool(controller.store.history, name, limit)
    return [history_row(record) for record in records]


@router.post(
    "/api/deployments/{name}/sync",
    response_model=SyncAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["sync"],
)
async def sync_deployment(name: str, request: Request, controller: ControllerDep) -> SyncAccepted:
    check_bearer(request, controller.settings.api_token, "sync")
    manifests = await run_in_threadpool(controller.source.load)
    if name not in manifests.deployments:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no valid manifest named {name!r}")
    return SyncAccepted(accepted=controller.sync(name))


@router.post(
    "/api/sync", response_model=SyncAccepted, status_code=status.HTTP_202_ACCEPTED, tags=["sync"]
)
async def sync_everything(request: Request, controller: ControllerDep) -> SyncAccepted:
    check_bearer(request, controller.settings.api_token, "sync")
    return SyncAccepted(accepted=await run_in_threadpool(controller.sync, None))


@router.get("/api/controller", response_model=ControllerInfo, tags=["controller"])
async def controller_info(request: Request, controller: ControllerDep) -> ControllerInfo:
    require_read(request, controller)
    state = controller.state
    manifests = controller.reconciler.last_manifests
    try:
        deliveries = await run_in_threadpool(controller.store.delivery_counts)
    except Exception:  # the store's own error is shown on the status rows
        deliveries = {}
    return ControllerInfo(
        status="ok",
        started_at=state.started_at,
        last_poll_at=state.last_poll_at,
        last_poll_error=state.last_poll_error,
        registry_reachable=state.registry_reachable,
        webhook_registered=state.webhook_registered,
        webhook_error=state.webhook_error,
        webhook_deliveries=deliveries,
        manifest_errors=[str(e) for e in manifests.errors] if manifests else [],
        manifest_revision=manifests.revision if manifests else None,
        store_error=controller.store.error,
    )


@router.get("/healthz", tags=["controller"])
async def healthz(controller: ControllerDep) -> dict[str, str]:
    # Still 200 when the history store fails: the controller keeps reconciling and
    # serving, and a liveness probe restarting it would not free a full disk.
    if controller.store.error:
        return {"status": "degraded", "store_error": controller.store.error}
    return {"status": "ok"}


@router.get("/metrics", tags=["controller"])
async def metrics(request: Request, controller: ControllerDep) -> Response:
    require_read(request, controller)
    return Response(generate_latest(controller.metrics.registry), media_type=CONTENT_TYPE_LATEST)
