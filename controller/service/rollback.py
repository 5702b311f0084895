"""Rolling back moves the alias back; the reconcile that follows does the rest.

A rollback does not touch the workload directly. MLflow stays the source of truth: the
controller moves the deployment's alias back to the version it served before, exactly
as a person would with `aliasflow promote`, and enqueues a reconcile, which then goes
through the same plan, health gate and history as any other alias move. Because of
that, a rollback is impossible for a deployment that pins a version: the version lives
in git, and only a commit may change it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.core.manifest import ManifestSnapshot
from controller.core.records import DeploymentStatus, Result, SyncRecord
from controller.service.errors import ConflictError, NotFoundError

#: History rows searched for the previous version; far more than any real alias churn.
HISTORY_DEPTH = 200


@dataclass(frozen=True)
class RollbackPlan:
    deployment: str
    model_name: str
    alias: str
    from_version: str | None
    to_version: str


def previous_version(
    served: str | None, desired: str | None, history: Iterable[SyncRecord]
) -> str | None:
    """The version to move the alias back to, or None when there is none.

    Normally served == desired, and the answer is the version of the newest successful
    history row that differs from it. When the alias already points elsewhere than what
    serves (a rollout that failed or is still in progress), the version still serving is
    the known-good one, so the alias goes back to it.
    """
    if served is not None and desired is not None and served != desired:
        return served
    current = served or desired
    for record in history:  # newest first
        if (
            record.result is Result.SUCCEEDED
            and record.model_version is not None
            and record.model_version != current
        ):
            return record.model_version
    return None


def plan_rollback(
    name: str,
    snapshot: ManifestSnapshot,
    status: DeploymentStatus | None,
    history: Iterable[SyncRecord],
    to_version: str | None = None,
) -> RollbackPlan:
    """Where the alias goes back to; refuses (NotFound, Conflict) with the reason."""
    loaded = snapshot.deployments.get(name)
    if loaded is None:
        raise NotFoundError(f"no valid manifest named {name!r}")
    model = loaded.deployment.spec.model
    if model.alias is None:
        raise ConflictError(
            f"{name} pins version {model.version} in its manifest; roll back with a git "
            "commit, not an alias move"
        )
    served = status.served_version if status else None
    desired = status.desired_version if status else None
    target = to_version or previous_version(served, desired, history)
    if target is None:
        raise ConflictError(
            f"nothing to roll back to: {name} has never successfully served a version "
            f"other than {served or desired or 'its current one'}"
        )
    return RollbackPlan(name, model.name, model.alias, desired or served, target)
