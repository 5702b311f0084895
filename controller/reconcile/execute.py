"""Carries out one planned action on its runtime: the one place that dispatches on it."""

from __future__ import annotations

import logging

from controller.core.errors import InvalidSpecError
from controller.core.ports import Runtime
from controller.core.types import Action, ActualState, DesiredState, Operation, Traffic, Trigger

log = logging.getLogger("aliasflow.reconcile")


def execute(runtime: Runtime, action: Action, trigger: Trigger | None = None) -> ActualState | None:
    """What the workload looks like right after the action (None once deleted)."""
    if action.changes_anything:
        log.info(
            "applying %s to %s: %s",
            action.operation,
            action.name,
            action.reason,
            extra={
                "deployment": action.name,
                "model_version": action.desired.model_version if action.desired else None,
                "trigger": trigger.value if trigger else None,
                "action": action.operation.value,
            },
        )
    if action.operation is Operation.NOOP:
        return action.actual
    if action.operation is Operation.DELETE:
        runtime.delete(action.name)
        return None
    desired = action.desired
    if desired is None:
        raise InvalidSpecError(f"{action.name}: {action.operation} needs a desired state")
    if desired.target_kind != runtime.kind:
        raise InvalidSpecError(
            f"{desired.name}: target kind {desired.target_kind!r} sent to the "
            f"{runtime.kind} runtime"
        )
    if action.operation is Operation.HOTSWAP:
        return runtime.hotswap(desired, action.actual)
    if action.operation is Operation.CANARY:
        return runtime.set_traffic(desired, Traffic.for_step(desired, 0), action.actual)
    if action.operation is Operation.TRAFFIC:
        return runtime.set_traffic(
            desired, traffic_keeping_canary(desired, action.actual), action.actual
        )
    if action.operation is Operation.KEYS:
        return runtime.set_api_keys(desired, action.actual)
    if action.operation is Operation.REPLACE:
        # What the target cannot update in place: the old workload goes first (ACI refuses
        # the PUT otherwise); a failed delete raises before anything new is created.
        runtime.delete(desired.name)
    # A create that finds a workload (a controller that died mid-rollout) replaces it:
    # every runtime's deploy is create-or-replace.
    return runtime.deploy(desired)


def traffic_keeping_canary(desired: DesiredState, actual: ActualState | None) -> Traffic:
    """The desired shadow, with whatever canary the server runs now left as it is."""
    canary = actual.canary_version if actual is not None else None
    return Traffic(
        f"models:/{desired.model_name}/{canary}" if canary else None,
        actual.canary_weight if actual is not None and canary else 0,
        desired.shadow_uri,
        desired.shadow_percent,
    )
