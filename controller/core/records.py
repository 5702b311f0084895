"""The status and history records the controller keeps, and the fixed vocabulary they use.

`Reason` is the one set of values a status row, a history row, a log line and the
Prometheus labels all speak (Flux's style: a short CamelCase word a script can match on,
with the human detail in `message`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Sync(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"
    # The manifest does not validate: nothing can be compared until it is fixed.
    INVALID = "Invalid"


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


class Reason(StrEnum):
    """Why a deployment is in the state it is in; every failure exit has exactly one."""

    SUCCEEDED = "ReconciliationSucceeded"
    PROGRESSING = "Progressing"
    MANIFEST_INVALID = "ManifestInvalid"
    ALIAS_MISSING = "AliasMissing"
    MODEL_MISSING = "ModelMissing"
    REGISTRY_UNAVAILABLE = "RegistryUnavailable"
    REGISTRY_REFUSED = "RegistryRefused"
    STORE_UNAVAILABLE = "StoreUnavailable"
    GIT_UNAVAILABLE = "GitUnavailable"
    SPEC_INVALID = "SpecInvalid"
    RUNTIME_UNAVAILABLE = "RuntimeUnavailable"
    PORT_IN_USE = "PortInUse"
    ROLLOUT_REJECTED = "RolloutRejected"
    HEALTH_CHECK_FAILED = "HealthCheckFailed"
    WORKLOAD_NOT_RUNNING = "WorkloadNotRunning"
    SELF_HEAL_DISABLED = "SelfHealDisabled"
    NOT_AUTOMATED = "NotAutomated"
    PREVIOUSLY_FAILED = "PreviouslyFailed"
    GATE_FAILED = "GateFailed"
    QUARANTINED = "Quarantined"
    BAKING = "Baking"
    CANARY = "Canary"
    ANALYSIS_FAILED = "AnalysisFailed"
    ROLLED_BACK = "RolledBack"
    PRUNED = "Pruned"
    PRUNE_FAILED = "PruneFailed"
    PRUNE_DISABLED = "PruneDisabled"
    INTERRUPTED = "Interrupted"
    INTERNAL_ERROR = "InternalError"


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
    reason: Reason | None = None
    # The manifest's syncPolicy.prune when it was last applied: a manifest that is gone
    # can no longer say whether its workload may be deleted, so the status remembers.
    prune: bool = True


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
    reason: Reason | None = None

    @property
    def duration_seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass(frozen=True)
class NotificationDelivery:
    """How one notification to one channel (teams, slack, webhook) ended."""

    delivery_id: str
    channel: str
    event: str
    deployment: str
    outcome: str  # delivered | failed
    attempts: int
    detail: str
    at: float


class BakeState(StrEnum):
    # A canary: the new version gets a step's share of requests beside the served one.
    CANARY = "Canary"
    # The canary's step passed (or a person said so): the next step, or the promotion, is
    # queued behind any running reconcile.
    ADVANCING = "Advancing"
    BAKING = "Baking"
    # The analysis failed; the rollback is queued behind any running reconcile.
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    PASSED = "Passed"
    # The bake ended before the new version answered `minRequests`: not a pass.
    INCONCLUSIVE = "Inconclusive"
    # Another rollout replaced the version being watched.
    SUPERSEDED = "Superseded"


@dataclass(frozen=True)
class Bake:
    """The watch over one promotion: persisted, so a restarted controller resumes it."""

    deployment: str
    model_name: str
    alias: str | None
    from_version: str | None
    to_version: str
    started_at: float
    ends_at: float
    state: BakeState = BakeState.BAKING
    # JSON: the replaced version's figures before the switch, and the new version's
    # counters at the switch (the window starts there).
    baseline: str = "{}"
    start: str = "{}"
    # JSON of the newest verdict, for the dashboard and the API.
    verdict: str = "{}"
    message: str = ""
    finished_at: float | None = None
    failed_at: float | None = None
    # Canary: the step in progress (0-based; -1 once the version takes all requests) and
    # when it began.
    step: int = -1
    step_started_at: float | None = None
    # A person asked to hold the canary at its step: judged still, advanced only by hand.
    held: bool = False
