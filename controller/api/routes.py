"""Read and sync endpoints of the controller API, plus health and metrics.

Routes are thin: check access, call the controller, shape the answer. Errors are raised
and mapped to statuses in `errors.py`.
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST

from controller.api.auth import ReadAccess, requires_token
from controller.api.deps import ControllerDep
from controller.api.detail import detail_of
from controller.api.schemas import (
    CanaryAnswer,
    CanaryRequest,
    ControllerInfo,
    DeploymentDetail,
    DeploymentOut,
    HistoryRow,
    RollbackAccepted,
    RollbackRequest,
    SyncAccepted,
    deployment_out,
    history_row,
)

router = APIRouter()


@router.get("/api/deployments", response_model=list[DeploymentOut], tags=["deployments"])
async def list_deployments(_: ReadAccess, controller: ControllerDep) -> list[DeploymentOut]:
    views = await run_in_threadpool(controller.deployments)
    return [deployment_out(view) for view in views]


@router.get("/api/deployments/{name}", response_model=DeploymentDetail, tags=["deployments"])
async def get_deployment(name: str, _: ReadAccess, controller: ControllerDep) -> DeploymentDetail:
    return await run_in_threadpool(detail_of, controller, name)


@router.get(
    "/api/deployments/{name}/history", response_model=list[HistoryRow], tags=["deployments"]
)
async def deployment_history(
    name: str,
    _: ReadAccess,
    controller: ControllerDep,
    limit: int = Query(50, ge=1, le=1000),
) -> list[HistoryRow]:
    records = await run_in_threadpool(controller.history, name, limit)
    return [history_row(record) for record in records]


@router.post(
    "/api/deployments/{name}/sync",
    response_model=SyncAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["sync"],
    dependencies=[Depends(requires_token("sync"))],
)
async def sync_deployment(name: str, controller: ControllerDep) -> SyncAccepted:
    return SyncAccepted(accepted=await run_in_threadpool(controller.sync, name))


@router.post(
    "/api/sync",
    response_model=SyncAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["sync"],
    dependencies=[Depends(requires_token("sync"))],
)
async def sync_everything(controller: ControllerDep) -> SyncAccepted:
    return SyncAccepted(accepted=await run_in_threadpool(controller.sync, None))


@router.post(
    "/api/deployments/{name}/rollback",
    response_model=RollbackAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["sync"],
    dependencies=[Depends(requires_token("rollback"))],
)
async def rollback_deployment(
    name: str,
    controller: ControllerDep,
    body: RollbackRequest | None = Body(None),
) -> RollbackAccepted:
    """Move the deployment's alias back in MLflow (to `to_version`, or the previous one)."""
    to_version = body.to_version if body is not None else None
    plan = await run_in_threadpool(controller.rollback, name, to_version)
    return RollbackAccepted.model_validate(plan, from_attributes=True)


@router.post(
    "/api/deployments/{name}/canary",
    response_model=CanaryAnswer,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["sync"],
    dependencies=[Depends(requires_token("steering a canary"))],
)
async def steer_canary(name: str, body: CanaryRequest, controller: ControllerDep) -> CanaryAnswer:
    """Advance, hold or abort the canary under way (`aliasflow promote --advance ...`)."""
    bake = await run_in_threadpool(controller.steer_canary, name, body.action)
    return CanaryAnswer(
        deployment=name, state=bake.state.value, step=bake.step, message=bake.message
    )


@router.get("/api/controller", response_model=ControllerInfo, tags=["controller"])
async def controller_info(_: ReadAccess, controller: ControllerDep) -> ControllerInfo:
    state = controller.state
    manifests = controller.manifests
    return ControllerInfo(
        status="ok",
        started_at=state.started_at,
        last_poll_at=state.last_poll_at,
        last_poll_error=state.last_poll_error,
        registry_reachable=state.registry_reachable,
        webhook_registered=state.webhook_registered,
        webhook_error=state.webhook_error,
        webhook_deliveries=await run_in_threadpool(controller.delivery_counts),
        manifest_errors=[str(e) for e in manifests.errors],
        manifest_revision=manifests.revision,
        store_error=controller.store_error,
    )


@router.get("/healthz", tags=["controller"])
async def healthz(controller: ControllerDep) -> dict[str, str]:
    # Still 200 when the history store fails: the controller keeps reconciling and
    # serving, and a liveness probe restarting it would not free a full disk.
    if controller.store_error:
        return {"status": "degraded", "store_error": controller.store_error}
    return {"status": "ok"}


@router.get("/metrics", tags=["controller"])
async def metrics(_: ReadAccess, controller: ControllerDep) -> Response:
    return Response(controller.metrics_text(), media_type=CONTENT_TYPE_LATEST)
