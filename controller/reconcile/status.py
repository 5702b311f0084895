"""What a deployment's status row says at each exit of the pipeline: pure functions.

The pipeline decides which exit it takes; these say what the row then holds, so the
rules (a missing alias never tears anything down, an outage makes sync Unknown without
touching health, ...) are tested as tables and read in one place.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from controller.core.errors import (
    AliasNotFoundError,
    ControllerError,
    ModelNotFoundError,
    RegistryUnavailableError,
    StoreUnavailableError,
)
from controller.core.manifest import LoadedManifest
from controller.core.records import DeploymentStatus, Health, Reason, Sync
from controller.core.types import Action, ActualState, DesiredState

if TYPE_CHECKING:
    from controller.reconcile.progress import Progress


def base_status(
    loaded: LoadedManifest, previous: DeploymentStatus | None, revision: str | None
) -> DeploymentStatus:
    """The manifest's facts over what was last recorded (kept until this pass knows better)."""
    spec = loaded.deployment.spec
    fresh = DeploymentStatus(
        name=loaded.deployment.name, sync=Sync.UNKNOWN, health=Health.UNKNOWN, message=""
    )
    kept = previous or fresh
    return replace(
        kept,
        model_name=spec.model.name,
        alias=spec.model.alias,
        target_kind=spec.target.kind.value,
        image=spec.image,
        manifest_revision=revision,
        prune=spec.sync_policy.prune,
    )


def with_desired(status: DeploymentStatus, desired: DesiredState) -> DeploymentStatus:
    return replace(status, desired_version=desired.model_version, run_id=desired.run_id)


def with_actual(status: DeploymentStatus, actual: ActualState | None) -> DeploymentStatus:
    if actual is None:
        return replace(status, served_version=None, endpoint=None)
    return replace(
        status,
        served_version=actual.served_version or status.served_version,
        endpoint=actual.endpoint,
    )


def health_of(actual: ActualState | None) -> Health:
    if actual is None:
        return Health.MISSING
    if not actual.running:
        return Health.DEGRADED
    return Health.HEALTHY if actual.ready else Health.PROGRESSING


def steady(
    status: DeploymentStatus, desired: DesiredState, actual: ActualState | None, action: Action
) -> DeploymentStatus:
    """Nothing to do: say how the workload is doing."""
    if actual is not None and actual.canary_version == desired.model_version:
        # A canary in progress: the watch writes its step; keep what it said.
        said = status.message.removeprefix(f"{Reason.CANARY}: ")
        return canary(status, said if status.reason is Reason.CANARY else action.reason)
    in_sync = actual is not None and actual.model_version == desired.model_version
    health = health_of(actual)
    if actual is not None and actual.served_version not in (None, desired.model_version):
        # Serving another version (a restart on the boot version, selfHeal off): never
        # Healthy or Synced on a version it does not serve.
        in_sync, health = False, Health.DEGRADED
        reason, message = Reason.SELF_HEAL_DISABLED, action.reason
    elif health is Health.HEALTHY:
        reason, message = Reason.SUCCEEDED, action.reason
    else:
        reason = Reason.WORKLOAD_NOT_RUNNING if health is Health.DEGRADED else Reason.PROGRESSING
        message = actual.detail if actual and actual.detail else action.reason
    return replace(
        status,
        sync=Sync.SYNCED if in_sync else Sync.OUT_OF_SYNC,
        health=health,
        reason=reason,
        message=message,
    )


def not_automated(
    status: DeploymentStatus, actual: ActualState | None, action: Action
) -> DeploymentStatus:
    return replace(
        status,
        sync=Sync.OUT_OF_SYNC,
        health=health_of(actual),
        reason=Reason.NOT_AUTOMATED,
        message=f"{Reason.NOT_AUTOMATED}: {action.reason}; sync by hand",
    )


def previously_failed(
    status: DeploymentStatus, previous: DeploymentStatus | None
) -> DeploymentStatus:
    """The failure is still the story: keep what the failed pass said."""
    return replace(
        status,
        sync=Sync.OUT_OF_SYNC,
        health=Health.DEGRADED,
        reason=previous.reason if previous and previous.reason else Reason.PREVIOUSLY_FAILED,
        message=previous.message if previous else f"{Reason.PREVIOUSLY_FAILED}",
    )


def progressing(status: DeploymentStatus, action: Action, sync_id: int | None) -> DeploymentStatus:
    return replace(
        status,
        sync=Sync.OUT_OF_SYNC,
        health=Health.PROGRESSING,
        reason=Reason.PROGRESSING,
        message=f"{action.operation}: {action.reason}",
        last_sync_id=sync_id,
    )


def succeeded(
    status: DeploymentStatus, final: ActualState, action: Action, desired: DesiredState
) -> DeploymentStatus:
    return replace(
        with_actual(status, final),
        sync=Sync.SYNCED,
        health=Health.HEALTHY,
        reason=Reason.SUCCEEDED,
        # The planner's reason stays in the record: a replace says it meant downtime.
        message=f"{action.operation} done: serving version {desired.model_version} "
        f"({action.reason})",
    )


def failed(status: DeploymentStatus, exc: ControllerError) -> DeploymentStatus:
    message = f"{exc.reason}: {exc}"
    if isinstance(exc, AliasNotFoundError | ModelNotFoundError):
        # Never tear down what serves: the last version stays, the status says why.
        health = Health.DEGRADED if status.served_version else Health.MISSING
        sync = Sync.OUT_OF_SYNC
    elif isinstance(exc, RegistryUnavailableError | StoreUnavailableError):
        # We could not compare, so sync is Unknown; the workload was not touched.
        health, sync = status.health, Sync.UNKNOWN
    else:
        health, sync = Health.DEGRADED, Sync.OUT_OF_SYNC
    return replace(status, sync=sync, health=health, reason=exc.reason, message=message)


def internal_error(status: DeploymentStatus, exc: Exception) -> DeploymentStatus:
    return replace(
        status,
        sync=Sync.UNKNOWN,
        health=Health.UNKNOWN,
        reason=Reason.INTERNAL_ERROR,
        message=f"internal error: {type(exc).__name__}: {exc}",
    )


def registry_outage(status: DeploymentStatus, error: str) -> DeploymentStatus:
    return replace(
        status,
        sync=Sync.UNKNOWN,
        reason=Reason.REGISTRY_UNAVAILABLE,
        message=f"{Reason.REGISTRY_UNAVAILABLE}: {error}",
    )


def differs(status: DeploymentStatus | None, desired: DesiredState, action: Action) -> bool:
    """A no-op deployment still needs a pass when its recorded status is stale."""
    if status is None:
        return True
    actual = action.actual
    if actual is not None and actual.canary_version == desired.model_version:
        return status.reason is not Reason.CANARY  # the watch keeps a canary's status
    return (
        status.sync is not Sync.SYNCED
        or status.health is not Health.HEALTHY
        or status.desired_version != desired.model_version
        or status.prune != desired.prune
        # A server that did not answer reports None: no news about its version.
        or (
            actual is not None
            and actual.served_version is not None
            and status.served_version != actual.served_version
        )
        # Up but not ready (e.g. restarting): the status must stop saying Healthy.
        or (actual is not None and actual.running and not actual.ready)
    )


def canary(status: DeploymentStatus, message: str) -> DeploymentStatus:
    """A canary in progress: the served version is still the old one, the new one is on
    its way (Argo Rollouts calls it Progressing too)."""
    return replace(
        status,
        sync=Sync.OUT_OF_SYNC,
        health=Health.PROGRESSING,
        reason=Reason.CANARY,
        message=f"{Reason.CANARY}: {message}",
    )


def progressed(status: DeploymentStatus, done: Progress) -> DeploymentStatus:
    """After a step the watch asked for: a canary's next step, a promotion, a rollback."""
    with_final = with_actual(status, done.final)
    if done.reason is Reason.CANARY:
        return canary(with_final, done.message)
    return replace(
        with_final,
        sync=Sync.SYNCED,
        health=Health.HEALTHY,
        reason=done.reason,
        message=f"{done.reason}: {done.message}",
    )
