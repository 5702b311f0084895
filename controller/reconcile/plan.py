"""The planner: a pure function from (desired, actual) to actions.

No MLflow, no runtime, no clock. Two facts keep drift and intent apart: the version the
controller last set (`actual.model_version`, recorded by the runtime) versus the version
the server reports (`actual.served_version`). A desired version that differs from the
recorded one is a promotion; a served version that differs from the recorded one is
drift, which only self-heal corrects.

A spec change is an in-place update (RECREATE) unless it touches what the target cannot
change on an existing workload (`immutable_hash`, ACI only): then a REPLACE, delete and
create, which means downtime. A workload without a recorded immutable hash (made before
aliasflow recorded one) is never replaced on that account: unknown is not a difference.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from controller.core.types import Action, ActualState, DesiredState, Operation, Strategy


def plan_deployment(desired: DesiredState, actual: ActualState | None) -> Action:
    def action(operation: Operation, reason: str) -> Action:
        return Action(operation, desired.name, reason, desired, actual)

    if actual is None:
        return action(Operation.CREATE, "no workload yet")
    replace = _needs_replace(desired, actual)
    if not actual.running:
        if not desired.self_heal:
            return action(Operation.NOOP, "workload not running; selfHeal is off")
        if replace:
            return action(Operation.REPLACE, REPLACE_REASON)
        return action(Operation.RECREATE, f"workload not running ({actual.detail or 'gone'})")
    if actual.legacy_admin_key:
        return action(Operation.REPLACE if replace else Operation.RECREATE, LEGACY_KEY_REASON)
    if actual.spec_hash != desired.spec_hash:
        if replace:
            return action(Operation.REPLACE, REPLACE_REASON)
        return action(Operation.RECREATE, "workload spec changed (image, resources, env or port)")
    if actual.model_version != desired.model_version:
        reason = f"model version {actual.model_version} -> {desired.model_version}"
        if desired.strategy == Strategy.CANARY:
            # A canary in progress is the watch's to judge, even while a server is not
            # ready (a Container Apps replica starting): never recreated over.
            if actual.canary_version == desired.model_version:
                return action(
                    Operation.NOOP,
                    f"canary of version {desired.model_version} at {actual.canary_weight}%",
                )
            if actual.ready:
                return action(Operation.CANARY, f"{reason}, {desired.steps[0][0]}% first")
        if desired.strategy == Strategy.HOTSWAP and actual.ready:
            return action(Operation.HOTSWAP, reason)
        return action(Operation.RECREATE, reason)
    if actual.served_version is not None and actual.served_version != desired.model_version:
        reason = f"serving version {actual.served_version}, expected {desired.model_version}"
        if not desired.self_heal:
            return action(Operation.NOOP, f"{reason}; selfHeal is off")
        if desired.strategy != Strategy.RECREATE and actual.ready:
            return action(Operation.HOTSWAP, reason)
        return action(Operation.RECREATE, reason)
    if (
        actual.ready
        and actual.api_keys is not None
        and (actual.api_keys != desired.api_keys_fingerprint)
    ):
        return action(Operation.KEYS, "client API keys changed (applied without a restart)")
    if actual.ready and shadow_differs(desired, actual):
        wanted = (
            f"version {desired.shadow_version} at {desired.shadow_percent}%"
            if desired.shadow_version
            else "none"
        )
        return action(Operation.TRAFFIC, f"shadow: {wanted}")
    return action(Operation.NOOP, "in sync")


def shadow_differs(desired: DesiredState, actual: ActualState) -> bool:
    wanted = (desired.shadow_version, desired.shadow_percent if desired.shadow_version else 0)
    return wanted != (actual.shadow_version, actual.shadow_percent if actual.shadow_version else 0)


LEGACY_KEY_REASON = (
    "the server was started with the controller's shared admin token, which it no longer "
    "uses: recreated once with its own deployment key and signed admin requests "
    "(docs/security.md, upgrading)"
)
REPLACE_REASON = (
    "CPU, memory or location changed, which ACI cannot update in place: replace = delete "
    "the container group, then create it; downtime until the new one is ready"
)


def _needs_replace(desired: DesiredState, actual: ActualState) -> bool:
    known = desired.immutable_hash and actual.immutable_hash
    return bool(known) and desired.immutable_hash != actual.immutable_hash


@dataclass(frozen=True)
class PruneGate:
    """What a pass knows; pruning needs all of it. The one rule for sync and diff alike."""

    enabled: bool
    manifests_complete: bool
    inventories_complete: bool
    registry_read: bool
    deployments: int
    allow_empty: bool

    def blocked_by(self) -> str | None:
        """Why nothing may be pruned in this pass, or None when pruning is safe."""
        if not self.enabled:
            return "pruning is disabled (ALIASFLOW_PRUNE=false)"
        if not self.manifests_complete:
            return "a manifest failed to load"
        if not self.registry_read:
            return "MLflow could not be read"
        if not self.inventories_complete:
            return "a runtime could not list its workloads"
        if self.deployments == 0 and not self.allow_empty:
            return "no manifests at all (start with --allow-empty to prune everything)"
        return None


def plan_prune(
    desired_names: Iterable[str],
    owned: Iterable[ActualState],
    prune_allowed: bool,
    keep: Collection[str] = (),
) -> list[Action]:
    """Delete owned workloads that no manifest asks for, only when that knowledge is whole.

    `keep` names deployments whose manifest said `syncPolicy.prune: false` when it was last
    applied: their workloads outlive the manifest (a no-op that says so).
    """
    if not prune_allowed:
        return []
    wanted = set(desired_names)
    orphans = sorted((w for w in owned if w.name not in wanted), key=lambda w: w.name)
    return [
        Action(Operation.NOOP, w.name, KEPT, None, w)
        if w.name in keep
        else Action(Operation.DELETE, w.name, "no manifest for this workload", None, w)
        for w in orphans
    ]


KEPT = "no manifest for this workload; kept because its syncPolicy.prune was false"


def plan(
    desired: Mapping[str, DesiredState],
    actual: Mapping[str, ActualState],
    prune_allowed: bool,
    keep: Collection[str] = (),
) -> list[Action]:
    actions = [plan_deployment(state, actual.get(name)) for name, state in sorted(desired.items())]
    return actions + plan_prune(desired, actual.values(), prune_allowed, keep)
