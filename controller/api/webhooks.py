"""`POST /webhooks/mlflow` and `POST /webhooks/git`: bodies read with a size limit, then
handed to the controller, which verifies, de-duplicates and enqueues (see
`controller/service/webhooks.py`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from controller.api.bodies import read_limited
from controller.api.deps import ControllerDep
from controller.api.schemas import WebhookAccepted

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


async def _body(request: Request, controller: ControllerDep, source: str) -> bytes:
    try:
        return await read_limited(request, controller.settings.webhook_max_bytes)
    except HTTPException:
        controller.webhooks.too_large(source)
        raise


@router.post("/mlflow", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookAccepted)
async def mlflow_webhook(request: Request, controller: ControllerDep) -> WebhookAccepted:
    body = await _body(request, controller, "mlflow")
    receipt = await run_in_threadpool(controller.receive_mlflow, request.headers, body)
    return WebhookAccepted.model_validate(receipt, from_attributes=True)


@router.post("/git", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookAccepted)
async def git_webhook(request: Request, controller: ControllerDep) -> WebhookAccepted:
    body = await _body(request, controller, "git")
    receipt = await run_in_threadpool(controller.receive_git, request.headers, body)
    return WebhookAccepted.model_validate(receipt, from_attributes=True)
