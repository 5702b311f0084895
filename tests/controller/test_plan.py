"""The planner is a pure function: tables in, actions out, no fixtures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.core.types import ActualState, DesiredState, Operation, Strategy, TargetKind
from controller.reconcile.plan import LEGACY_KEY_REASON, plan, plan_deployment, plan_prune

DESIRED = DesiredState(
    name="iris",
    target_kind=TargetKind.LOCAL,
    model_name="iris-classifier",
    model_version="2",
    run_id="r2",
    image="aliasflow-server:latest",
    port=8080,
    cpu=1.0,
    memory_gb=1.5,
    env=(),
    strategy=Strategy.HOTSWAP,
    health_timeout_seconds=30,
    spec_hash="spec-a",
)
IN_SYNC = ActualState(
    name="iris",
    spec_hash="spec-a",
    model_version="2",
    running=True,
    endpoint="http://127.0.0.1:9000",
    served_version="2",
    ready=True,
)


@pytest.mark.parametrize(
    ("desired", "actual", "expected"),
    [
        pytest.param(DESIRED, None, Operation.CREATE, id="nothing-running"),
        pytest.param(DESIRED, IN_SYNC, Operation.NOOP, id="in-sync"),
        pytest.param(
            DESIRED,
            replace(IN_SYNC, model_version="1", served_version="1"),
            Operation.HOTSWAP,
            id="promotion-hotswap",
        ),
        pytest.param(
            replace(DESIRED, strategy=Strategy.RECREATE),
            replace(IN_SYNC, model_version="1", served_version="1"),
            Operation.RECREATE,
            id="promotion-recreate-strategy",
        ),
        pytest.param(
            DESIRED,
            replace(IN_SYNC, model_version="1", ready=False),
            Operation.RECREATE,
            id="promotion-but-server-not-ready",
        ),
        pytest.param(
            replace(DESIRED, strategy=Strategy.CANARY, steps=((20, 60),)),
            replace(IN_SYNC, model_version="1", served_version="1"),
            Operation.CANARY,
            id="promotion-canary",
        ),
        pytest.param(
            replace(DESIRED, strategy=Strategy.CANARY, steps=((20, 60),)),
            replace(IN_SYNC, model_version="1", canary_version="2", canary_weight=20),
            Operation.NOOP,
            id="canary-in-progress",
        ),
        # A server (a Container Apps replica starting) not ready mid-canary: the watch
        # judges the canary; recreating would put the new version on every request.
        pytest.param(
            replace(DESIRED, strategy=Strategy.CANARY, steps=((20, 60),)),
            replace(IN_SYNC, model_version="1", canary_version="2", canary_weight=20, ready=False),
            Operation.NOOP,
            id="canary-in-progress-server-not-ready",
        ),
        pytest.param(
            DESIRED,
            replace(IN_SYNC, spec_hash="spec-b"),
            Operation.RECREATE,
            id="spec-changed",
        ),
        pytest.param(
            DESIRED,
            replace(IN_SYNC, running=False),
            Operation.RECREATE,
            id="killed-self-heal",
        ),
        pytest.param(
            replace(DESIRED, self_heal=False),
            replace(IN_SYNC, running=False),
            Operation.NOOP,
            id="killed-no-self-heal",
        ),
        pytest.param(
            DESIRED,
            replace(IN_SYNC, served_version="1"),
            Operation.HOTSWAP,
            id="drift-restarted-on-boot-version",
        ),
        pytest.param(
            replace(DESIRED, self_heal=False),
            replace(IN_SYNC, served_version="1"),
            Operation.NOOP,
            id="drift-no-self-heal",
        ),
        pytest.param(
            DESIRED,
            replace(IN_SYNC, served_version=None, ready=False),
            Operation.NOOP,
            id="server-not-answering-but-recorded-in-sync",
        ),
        pytest.param(
            replace(DESIRED, self_heal=False),
            replace(IN_SYNC, model_version="1"),
            Operation.HOTSWAP,
            id="promotion-applies-without-self-heal",
        ),
    ],
)
def test_plan_deployment(
    desired: DesiredState, actual: ActualState | None, expected: Operation
) -> None:
    action = plan_deployment(desired, actual)
    assert action.operation is expected
    assert action.name == "iris"
    assert action.reason


ACI_DESIRED = replace(DESIRED, target_kind=TargetKind.ACI, immutable_hash="cpu1-mem1.5-westeurope")
ACI_ACTUAL = replace(IN_SYNC, immutable_hash="cpu1-mem1.5-westeurope")
MORE_CPU = replace(ACI_DESIRED, spec_hash="spec-cpu2", immutable_hash="cpu2-mem1.5-westeurope")


@pytest.mark.parametrize(
    ("desired", "actual", "expected"),
    [
        pytest.param(MORE_CPU, ACI_ACTUAL, Operation.REPLACE, id="immutable-changed"),
        pytest.param(
            replace(ACI_DESIRED, spec_hash="spec-env"),
            ACI_ACTUAL,
            Operation.RECREATE,
            id="mutable-changed-is-an-update",
        ),
        pytest.param(
            MORE_CPU,
            replace(ACI_ACTUAL, immutable_hash=""),
            Operation.RECREATE,
            id="no-recorded-hash-is-unknown-not-a-replace",
        ),
        pytest.param(
            MORE_CPU, replace(ACI_ACTUAL, running=False), Operation.REPLACE, id="down-and-changed"
        ),
        pytest.param(
            replace(MORE_CPU, self_heal=False),
            replace(ACI_ACTUAL, running=False),
            Operation.NOOP,
            id="down-no-self-heal",
        ),
        pytest.param(ACI_DESIRED, ACI_ACTUAL, Operation.NOOP, id="in-sync"),
    ],
)
def test_replace_only_for_what_the_target_cannot_update(
    desired: DesiredState, actual: ActualState, expected: Operation
) -> None:
    action = plan_deployment(desired, actual)
    assert action.operation is expected
    if expected is Operation.REPLACE:
        assert "downtime" in action.reason  # what `aliasflow diff` and the history show


@pytest.mark.parametrize(
    "actual",
    [
        replace(IN_SYNC, legacy_admin_key=True),
        replace(IN_SYNC, legacy_admin_key=True, model_version="1", served_version="1"),
    ],
    ids=["in-sync", "promotion"],
)
def test_a_server_with_the_shared_admin_token_is_recreated_once(actual: ActualState) -> None:
    """Upgrade: such a server cannot verify a signed swap; a recreate gives it its key."""
    action = plan_deployment(DESIRED, actual)
    assert (action.operation, action.reason) == (Operation.RECREATE, LEGACY_KEY_REASON)
    assert plan_deployment(DESIRED, replace(actual, legacy_admin_key=False)).operation in (
        Operation.NOOP,
        Operation.HOTSWAP,
    )


@pytest.mark.parametrize(
    ("wanted", "held", "expected"),
    [
        pytest.param("f1", "f0", Operation.KEYS, id="rotated"),
        pytest.param("f1", "", Operation.KEYS, id="keys-added"),
        pytest.param("", "f0", Operation.KEYS, id="keys-removed"),
        pytest.param("f1", "f1", Operation.NOOP, id="same"),
        pytest.param("f1", None, Operation.NOOP, id="server-does-not-say"),
    ],
)
def test_a_change_of_client_api_keys_is_a_reload(
    wanted: str, held: str | None, expected: Operation
) -> None:
    action = plan_deployment(
        replace(DESIRED, api_keys_fingerprint=wanted), replace(IN_SYNC, api_keys=held)
    )
    assert action.operation is expected


def test_drift_without_self_heal_says_both_versions() -> None:
    action = plan_deployment(
        replace(DESIRED, self_heal=False), replace(IN_SYNC, served_version="1")
    )
    assert action.reason == "serving version 1, expected 2; selfHeal is off"


def test_prune_deletes_only_owned_workloads_without_manifest() -> None:
    other = replace(IN_SYNC, name="old")
    actions = plan_prune({"iris"}, [IN_SYNC, other], prune_allowed=True)
    assert [(a.operation, a.name) for a in actions] == [(Operation.DELETE, "old")]


def test_prune_never_runs_on_incomplete_knowledge() -> None:
    assert plan_prune(set(), [IN_SYNC], prune_allowed=False) == []


def test_second_pass_after_convergence_is_all_noops() -> None:
    first = plan({"iris": DESIRED}, {}, prune_allowed=True)
    assert [a.operation for a in first] == [Operation.CREATE]
    converged = {"iris": IN_SYNC}
    second = plan({"iris": DESIRED}, converged, prune_allowed=True)
    assert all(not a.changes_anything for a in second)


def test_plan_is_deterministic_in_name_order() -> None:
    desired = {n: replace(DESIRED, name=n) for n in ("b", "a", "c")}
    assert [a.name for a in plan(desired, {}, prune_allowed=True)] == ["a", "b", "c"]
