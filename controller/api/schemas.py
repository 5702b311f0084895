"""Response bodies of the controller API, separate from the internal records they expose."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from controller.core.manifest import ModelDeployment
from controller.core.records import Bake, SyncRecord
from controller.core.types import TargetKind
from controller.service.traffic import VersionTraffic
from controller.service.views import DeploymentView


class LastSync(BaseModel):
    id: int | None
    trigger: str
    action: str | None
    result: str
    reason: str | None = None
    message: str
    model_version: str | None
    started_at: float
    finished_at: float | None


class ManifestProblem(BaseModel):
    """One validation error of the deployment's manifest: where, which field, what."""

    file: str
    document: int | None
    field: str
    message: str


class DeploymentOut(BaseModel):
    name: str
    sync: str
    health: str
    # One of a fixed set (ReconciliationSucceeded, AliasMissing, HealthCheckFailed, ...):
    # what a script matches on; `message` is the sentence for people.
    reason: str | None = None
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
    # How clients reach the server: loopback, private (a VNet), tls, or public-http (a
    # public address in plain HTTP: anyone on the path can read and replay requests).
    exposure: str | None = None
    updated_at: float
    last_sync: LastSync | None = None
    # Why the manifest is not applied when sync is Invalid; empty otherwise.
    manifest_errors: list[ManifestProblem] = []


class BakeOut(BaseModel):
    """The watch over the newest promotion (rollout.analysis)."""

    state: str
    from_version: str | None
    to_version: str
    started_at: float
    ends_at: float
    finished_at: float | None
    # When the analysis found the breach (the rollback follows, queued behind any running
    # reconcile): finished_at - failed_at is the breach-to-rollback time.
    failed_at: float | None = None
    message: str
    verdict: dict[str, Any]
    # A canary under way: its step (1-based), how many there are, the new version's share
    # of requests at this step, and whether a person holds it there.
    step: int | None = None
    steps: int | None = None
    weight: int | None = None
    held: bool = False


class TrafficOut(BaseModel):
    version: str
    role: str
    requests_per_second: float
    error_rate: float | None
    p99_ms: float | None
    history: list[float]
    agreement: float | None = None


class DeploymentDetail(DeploymentOut):
    # The manifest as applied; secretEnv only ever names the controller's variables.
    manifest: dict[str, Any] | None = None
    bake: BakeOut | None = None
    traffic: list[TrafficOut] = []
    # Version -> why: versions of this model the controller will not roll out.
    quarantined: dict[str, str] = {}


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
    reason: str | None = None
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
    return HistoryRow.model_validate(record, from_attributes=True)


class RollbackAccepted(BaseModel):
    deployment: str
    model_name: str
    alias: str
    from_version: str | None
    to_version: str


class CanaryRequest(BaseModel):
    action: Literal["advance", "hold", "abort"] = Field(
        description="advance: the next step now; hold: stay at this step; abort: stop the "
        "canary (the served version takes every request; the version is quarantined)."
    )


class CanaryAnswer(BaseModel):
    deployment: str
    state: str
    step: int
    message: str


class RollbackRequest(BaseModel):
    """Optional body of a rollback: the version to go back to (default: the previous one)."""

    to_version: str | None = None


def deployment_out(view: DeploymentView) -> DeploymentOut:
    row = DeploymentOut.model_validate(view.status, from_attributes=True)
    if view.last_sync is not None:
        row.last_sync = LastSync.model_validate(view.last_sync, from_attributes=True)
    if view.loaded is not None:
        row.manifest_file = view.loaded.file
        row.pinned_version = view.loaded.deployment.spec.model.version
        row.alias = view.loaded.deployment.spec.model.alias
        row.exposure = exposure(view.loaded.deployment)
    row.manifest_errors = [
        ManifestProblem(file=e.file, document=e.document, field=e.path, message=e.message)
        for e in view.errors
    ]
    if view.errors and row.manifest_file is None:
        row.manifest_file = view.errors[0].file
    if row.target_kind == TargetKind.LOCAL:
        row.image = None  # the local target runs `aliasflow serve`, never an image
    return row


def exposure(deployment: ModelDeployment) -> str:
    target = deployment.spec.target
    if target.aci is not None:
        if target.aci.subnet_id is not None:
            return "private"
        return "tls" if target.aci.tls is not None else "public-http"
    return "loopback"


def deployment_detail(
    view: DeploymentView,
    bake: Bake | None = None,
    traffic: list[VersionTraffic] | None = None,
    quarantined: dict[str, str] | None = None,
) -> DeploymentDetail:
    detail = DeploymentDetail.model_validate(deployment_out(view).model_dump())
    if view.loaded is not None:
        detail.manifest = view.loaded.deployment.model_dump(mode="json", by_alias=True)
    if bake is not None:
        detail.bake = BakeOut(
            state=bake.state.value,
            from_version=bake.from_version,
            to_version=bake.to_version,
            started_at=bake.started_at,
            ends_at=bake.ends_at,
            finished_at=bake.finished_at,
            failed_at=bake.failed_at,
            message=bake.message,
            verdict=json.loads(bake.verdict or "{}"),
            held=bake.held,
        )
        steps = view.loaded.deployment.spec.rollout.steps if view.loaded is not None else []
        if 0 <= bake.step < len(steps):
            detail.bake.step = bake.step + 1
            detail.bake.steps = len(steps)
            detail.bake.weight = steps[bake.step].weight
    detail.traffic = [
        TrafficOut.model_validate(item, from_attributes=True) for item in traffic or []
    ]
    detail.quarantined = quarantined or {}
    return detail
