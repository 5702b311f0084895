"""The planner: a pure function from (desired, actual) to actions.

No MLflow, no runtime, no clock. Two facts keep drift and intent apart: the version the
controller last set (`actual.model_version`, recorded by the runtime) versus the version
the server reports (`actual.served_version`). A desired version that differs from the
recorded one is a promotion; a served version that differs from the recorded one is
drift, which only self-heal corrects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.reconcile.types import Action, ActualState, DesiredState, Operation


def plan_deployment(desired: DesiredState, actual: ActualState | None) -> Action:
    def action(operation: Operation, reason: str) -> Action:
        return Action(operation, desired.name, reason, desired, actual)

    if actual is None:
        return action(Operation.CREATE, "no workload yet")
    if not actual.running:
        if desired.self_heal:
            return action(Operation.RECREATE, f"workload not running ({actual.detail or 'gone'})")
        return action(Operation.NOOP, "workload not running; selfHeal is off")
    if actual.spec_hash != desired.spec_hash:
        return action(Operation.RECREATE, "workload spec changed (image, resources, env or port)")
    if actual.model_version != desired.model_version:
        reason = f"model version {actual.model_version} -> {desired.model_version}"
        if desired.strategy == "hotswap" and actual.ready:
            return action(Operation.HOTSWAP, reason)
        return action(Operation.RECREATE, reason)
    if actual.served_version is not None and actual.served_version != desired.model_version:
        if not desired.self_heal:
            return action(Operation.NOOP, "serving another version; selfHeal is off")
        reason = f"serving version {actual.served_version}, expected {desired.model_version}"
        if desired.strategy == "hotswap" and actual.ready:
            return action(Operation.HOTSWAP, reason)
        return action(Operation.RECREATE, reason)
    return action(Operation.NOOP, "in sync")


def plan_prune(
    desired_names: Iterable[str], owned: Iterable[ActualState], prune_allowed: bool
) -> list[Action]:
    """Delete owned workloads that no manifest asks for, only when that knowledge is whole."""
    if not prune_allowed:
        return []
    wanted = set(desired_names)
    return [
        Action(Operation.DELETE, workload.name, "no manifest for this workload", None, workload)
        for workload in sorted(owned, key=lambda w: w.name)
        if workload.name not in wanted
    ]


def plan(
    desired: Mapping[str, DesiredState],
    actual: Mapping[str, ActualState],
    prune_allowed: bool,
) -> list[Action]:
    actions = [plan_deployment(state, actual.get(name)) for name, state in sorted(desired.items())]
    return actions + plan_prune(desired, actual.values(), prune_allowed)
