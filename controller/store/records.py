"""Rows of the history store as the rest of the controller sees them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Sync(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


class Health(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    MISSING = "Missing"
    UNKNOWN = "Unknown"


class Result(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    INTERRUPTED = "Interrupted"


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    sync: Sync
    health: Health
    message: str
    model_name: str | None = None
    alias: str | None = None
    desired_version: str | None = None
    served_version: str | None = None
    run_id: str | None = None
    target_kind: str | None = None
    endpoint: str | None = None
    image: str | None = None
    manifest_revision: str | None = None
    last_sync_id: int | None = None
    updated_at: float = 0.0


@dataclass(frozen=True)
class SyncRecord:
    deployment: str
    trigger: str
    started_at: float
    result: Result = Result.RUNNING
    action: str | None = None
    manifest_revision: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    run_id: str | None = None
    image: str | None = None
    image_digest: str | None = None
    message: str = ""
    finished_at: float | None = None
    id: int | None = None

    @property
    def duration_seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at
