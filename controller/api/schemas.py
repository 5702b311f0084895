"""Response bodies of the controller API, separate from the internal records they expose."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from controller.store.records import DeploymentStatus, SyncRecord


class LastSync(BaseModel):
    id: int | None
    trigger: str
    action: str | None
    result: str
    message: str
    model_version: str | None
    started_at: float
    finished_at: float | None


class DeploymentOut(BaseModel):
    name: str
    sync: str
    health: str
    message: str
    model_name: str | None
    alias: str | None
    pinned_version: int | None = None
    desired_version: str | None
    served_version: str | None
    run_id: str | None
    target_kind: str | None
    endpoint: str | None
    image: str | None
    manifest_revision: str | None
    manifest_file: str | None = None
    updated_at: float
    last_sync: LastSync | None = None


class DeploymentDetail(DeploymentOut):
    # The manifest as applied; secretEnv only ever names the controller's variables.
    manifest: dict[str, Any] | None = None


class HistoryRow(BaseModel):
    id: int | None
    deployment: str
    trigger: str
    manifest_revision: str | None
    model_name: str | None
    model_version: str | None
    run_id: str | None
    image: str | None
    image_digest: str | None
    action: str | None
    result: str
    message: str
    started_at: float
    finished_at: float | None
    duration_seconds: float | None


class SyncAccepted(BaseModel):
    accepted: list[str]


class WebhookAccepted(BaseModel):
    status: str
    deployments: list[str] = []
    detail: str = ""


class ControllerInfo(BaseModel):
    status: str
    started_at: float
    last_poll_at: float | None
    last_poll_error: str | None
    registry_reachable: bool | None
    webhook_registered: bool
    webhook_error: str | None
    webhook_deliveries: dict[str, int]
    manifest_errors: list[str]
    manifest_revision: str | None
    store_error: str | None = None


def history_row(record: SyncRecord) -> HistoryRow:
    return HistoryRow(
        id=record.id,
        deployment=record.deployment,
        trigger=record.trigger,
        manifest_revision=record.manifest_revision,
        model_name=record.model_name,
        model_version=record.model_version,
        run_id=record.run_id,
        image=record.image,
        image_digest=record.image_digest,
        action=record.action,
        result=record.result.value,
        message=record.message,
        started_at=record.started_at,
        finished_at=record.finished_at,
        duration_seconds=record.duration_seconds,
    )


def deployment_out(status: DeploymentStatus, last: SyncRecord | None) -> dict[str, Any]:
    return {
        "name": status.name,
        "sync": status.sync.value,
        "health": status.health.value,
        "message": status.message,
        "model_name": status.model_name,
        "alias": status.alias,
        "desired_version": status.desired_version,
        "served_version": status.served_version,
        "run_id": status.run_id,
        "target_kind": status.target_kind,
        "endpoint": status.endpoint,
        "image": status.image,
        "manifest_revision": status.manifest_revision,
        "updated_at": status.updated_at,
        "last_sync": None
        if last is None
        else LastSync(
            id=last.id,
            trigger=last.trigger,
            action=last.action,
            result=last.result.value,
            message=last.message,
            model_version=last.model_version,
            started_at=last.started_at,
            finished_at=last.finished_at,
        ),
    }
