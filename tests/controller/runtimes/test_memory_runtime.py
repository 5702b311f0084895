"""The in-memory runtime keeps the contract the reconciler's tests rely on."""

from __future__ import annotations

import pytest

from controller.core.errors import (
    HealthTimeoutError,
    InvalidSpecError,
    RolloutRejectedError,
    RuntimeUnavailableError,
)
from controller.core.ports import Runtime
from controller.core.types import Action, DesiredState, Operation
from controller.reconcile.execute import execute
from controller.reconcile.plan import plan_deployment
from controller.runtimes.memory import MemoryRuntime


def desired(version: str = "1", spec: str = "spec-a", name: str = "iris") -> DesiredState:
    return DesiredState(
        name=name,
        target_kind="local",
        model_name="iris-classifier",
        model_version=version,
        run_id=None,
        image="aliasflow-server:latest",
        port=8080,
        cpu=1.0,
        memory_gb=1.0,
        env=(),
        strategy="hotswap",
        health_timeout_seconds=5,
        spec_hash=spec,
    )


def act(operation: Operation, state: DesiredState) -> Action:
    return Action(operation, state.name, "test", state)


def test_it_satisfies_the_runtime_protocol() -> None:
    runtime: Runtime = MemoryRuntime()
    assert runtime.kind == "local"


def test_create_then_second_plan_is_noop_and_calls_are_recorded() -> None:
    runtime = MemoryRuntime()
    created = execute(runtime, act(Operation.CREATE, desired("1")))
    assert created is not None
    assert (created.running, created.ready, created.model_version, created.served_version) == (
        True,
        True,
        "1",
        "1",
    )
    assert plan_deployment(desired("1"), runtime.observe("iris")).operation is Operation.NOOP
    assert runtime.operations() == [(Operation.CREATE, "iris")]


def test_hotswap_changes_recorded_and_served_version() -> None:
    runtime = MemoryRuntime()
    execute(runtime, act(Operation.CREATE, desired("1")))
    before = runtime.observe("iris")
    swapped = execute(runtime, act(Operation.HOTSWAP, desired("2")))
    assert swapped is not None
    assert before is not None
    assert (swapped.model_version, swapped.served_version) == ("2", "2")
    assert swapped.endpoint == before.endpoint


def test_rejected_version_keeps_the_old_one_on_hotswap_and_recreate() -> None:
    runtime = MemoryRuntime()
    execute(runtime, act(Operation.CREATE, desired("1")))
    runtime.rejected_versions.add("3")
    with pytest.raises(RolloutRejectedError):
        execute(runtime, act(Operation.HOTSWAP, desired("3")))
    with pytest.raises(RolloutRejectedError):
        execute(runtime, act(Operation.RECREATE, desired("3", spec="spec-b")))
    actual = runtime.observe("iris")
    assert actual is not None
    assert (actual.model_version, actual.served_version, actual.spec_hash) == ("1", "1", "spec-a")
    assert len(runtime.calls) == 3  # failed calls are recorded too


def test_fail_next_fails_once_with_the_default_error_for_the_operation() -> None:
    runtime = MemoryRuntime()
    runtime.fail_next(Operation.CREATE)
    with pytest.raises(HealthTimeoutError):
        execute(runtime, act(Operation.CREATE, desired("1")))
    assert runtime.observe("iris") is None
    assert execute(runtime, act(Operation.CREATE, desired("1"))) is not None

    runtime.fail_next(Operation.HOTSWAP, name="other")
    runtime.fail_next(Operation.HOTSWAP)
    with pytest.raises(RolloutRejectedError):
        execute(runtime, act(Operation.HOTSWAP, desired("2")))
    assert execute(runtime, act(Operation.HOTSWAP, desired("2"))) is not None  # "other" remains


def test_fail_next_with_a_given_error() -> None:
    runtime = MemoryRuntime()
    runtime.fail_next(Operation.CREATE, RuntimeUnavailableError("throttled"))
    with pytest.raises(RuntimeUnavailableError, match="throttled"):
        execute(runtime, act(Operation.CREATE, desired("1")))


def test_kill_and_drift_are_seen_by_the_planner() -> None:
    runtime = MemoryRuntime()
    execute(runtime, act(Operation.CREATE, desired("2")))
    runtime.serve("iris", "1")
    assert plan_deployment(desired("2"), runtime.observe("iris")).operation is Operation.HOTSWAP
    runtime.kill("iris")
    actual = runtime.observe("iris")
    assert actual is not None
    assert not actual.running
    assert plan_deployment(desired("2"), actual).operation is Operation.RECREATE
    with pytest.raises(RuntimeUnavailableError, match="needs a recreate"):
        execute(runtime, act(Operation.HOTSWAP, desired("3")))
    runtime.remove("iris")
    assert plan_deployment(desired("2"), runtime.observe("iris")).operation is Operation.CREATE


def test_delete_and_outage() -> None:
    runtime = MemoryRuntime()
    runtime.add("old", spec_hash="x", model_version="4")
    assert [w.name for w in runtime.list_owned()] == ["old"]
    assert execute(runtime, Action(Operation.DELETE, "old", "prune")) is None
    runtime.delete("never-existed")
    assert runtime.list_owned() == []
    assert runtime.deleted == ["old", "never-existed"]
    runtime.available = False
    with pytest.raises(RuntimeUnavailableError):
        runtime.list_owned()
    with pytest.raises(RuntimeUnavailableError):
        execute(runtime, act(Operation.CREATE, desired("1")))


def test_create_without_desired_state_is_invalid() -> None:
    with pytest.raises(InvalidSpecError):
        execute(MemoryRuntime(), Action(Operation.CREATE, "iris", "test"))
