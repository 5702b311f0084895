"""`POST /api/deployments/{name}/rollback`: move the alias back, then reconcile as usual.

A rollback does not touch the workload directly. MLflow stays the source of truth: the
controller moves the deployment's alias back to the version it served before, exactly
as a person would with `aliasflow promote`, and enqueues a reconcile, which then goes
through the same plan, health gate and history as any other alias move. Because of
that, a rollback is impossible (409) for a deployment that pins a version: the version
lives in git, and only a commit may change it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from controller.api.auth import check_bearer
from controller.api.deps import ControllerDep
from controller.errors import ModelNotFoundError, RegistryUnavailableError
from controller.service import Controller
from controller.store.records import Result, SyncRecord

log = logging.getLogger("aliasflow.api")
router = APIRouter(tags=["sync"])

#: History rows searched for the previous version; far more than any real alias churn.
HISTORY_DEPTH = 200


class RollbackAccepted(BaseModel):
    deployment: str
    model_name: str
    alias: str
    from_version: str | None
    to_version: str


class RollbackRefused(Exception):  # noqa: N818 - a refusal with an HTTP status, not a bug
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


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


def _plan(controller: Controller, name: str) -> RollbackAccepted:
    manifests = controller.source.load()
    loaded = manifests.deployments.get(name)
    if loaded is None:
        raise RollbackRefused(status.HTTP_404_NOT_FOUND, f"no valid manifest named {name!r}")
    model = loaded.deployment.spec.model
    if model.alias is None:
        raise RollbackRefused(
            status.HTTP_409_CONFLICT,
            f"{name} pins version {model.version} in its manifest; roll back with a git "
            "commit, not an alias move",
        )
    current = controller.store.get_status(name)
    served = current.served_version if current else None
    desired = current.desired_version if current else None
    target = previous_version(served, desired, controller.store.history(name, HISTORY_DEPTH))
    if target is None:
        raise RollbackRefused(
            status.HTTP_409_CONFLICT,
            f"nothing to roll back to: {name} has never successfully served a version "
            f"other than {served or desired or 'its current one'}",
        )
    return RollbackAccepted(
        deployment=name,
        model_name=model.name,
        alias=model.alias,
        from_version=desired or served,
        to_version=target,
    )


@router.post(
    "/api/deployments/{name}/rollback",
    response_model=RollbackAccepted,
    status_code=status.HTTP_202_ACCEPTED,
)
async def rollback_deployment(
    name: str, request: Request, controller: ControllerDep
) -> RollbackAccepted:
    check_bearer(request, controller.settings.api_token, "rollback")
    try:
        plan = await run_in_threadpool(_plan, controller, name)
        await run_in_threadpool(
            controller.registry.set_alias, plan.model_name, plan.alias, plan.to_version
        )
    except RollbackRefused as refused:
        raise HTTPException(refused.status_code, refused.detail) from None
    except ModelNotFoundError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"cannot roll back: {exc}") from None
    except RegistryUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"MLflow is unreachable: {exc}"
        ) from None
    log.info(
        "rollback of %s: %s@%s -> %s",
        name,
        plan.model_name,
        plan.alias,
        plan.to_version,
        extra={"deployment": name, "model_version": plan.to_version, "trigger": "rollback"},
    )
    controller.enqueue(name, "rollback")
    return plan
