"""The docker runtime through the real `docker` SDK against the fake engine (stub image).

The stub image answers readiness (with the model it serves) and hot swap in a fraction
of a second, so these tests cover ownership, diffing, rollouts and faults without loading
a model; the real model server is exercised in test_docker_serving.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from controller.core.errors import (
    HealthTimeoutError,
    InvalidSpecError,
    RolloutRejectedError,
    RuntimeUnavailableError,
)
from controller.core.ports import Runtime
from controller.core.serverkeys import deployment_key
from controller.core.types import Action, ActualState, DesiredState, Operation, Strategy, TargetKind
from controller.reconcile.execute import execute
from controller.reconcile.plan import LEGACY_KEY_REASON, plan, plan_deployment
from controller.runtimes.docker import DockerRuntime
from controller.runtimes.netutil import free_port
from controller.service.settings import ControllerSettings
from controller.service.wiring import build_runtimes
from tests.controller.runtimes.docker.docker_helpers import ADMIN_TOKEN, STUB_IMAGE
from tests.fake_docker import FakeDockerEngine

SECRET = "d0cker-s3cret-never-on-disk"


def desired(
    version: str = "1",
    *,
    name: str = "iris",
    image: str = STUB_IMAGE,
    spec: str = "aaaabbbbccccdddd",
    env: tuple[tuple[str, str], ...] = (("LOG_LEVEL", "info"),),
    secret_env: tuple[tuple[str, str], ...] = (("MLFLOW_TRACKING_TOKEN", SECRET),),
    timeout: int = 20,
    network: str | None = None,
) -> DesiredState:
    return DesiredState(
        name=name,
        target_kind=TargetKind.DOCKER,
        model_name="iris-model",
        model_version=version,
        run_id=None,
        image=image,
        port=8080,
        cpu=0.5,
        memory_gb=1.5,
        env=env,
        strategy=Strategy.HOTSWAP,
        health_timeout_seconds=timeout,
        secret_env=secret_env,
        spec_hash=spec,
        target_settings=(("network", network),) if network else (),
    )


def run(runtime: DockerRuntime, operation: Operation, state: DesiredState) -> ActualState:
    result = execute(runtime, Action(operation, state.name, "test", state))
    assert result is not None
    return result


def owned_names(engine: FakeDockerEngine) -> list[str]:
    return sorted(
        c.name for c in engine.containers.values() if c.labels.get("aliasflow.managed") == "true"
    )


def served_version(endpoint: str) -> str:
    return str(httpx.get(f"{endpoint}/readyz", timeout=5).json()["model"]["version"])


def test_is_a_runtime_and_starts_empty(runtime: DockerRuntime) -> None:
    as_protocol: Runtime = runtime
    assert as_protocol.kind == "docker"
    assert runtime.list_owned() == []
    assert runtime.observe("iris") is None


def test_create_labels_loopback_port_env_limits_and_secrets_stay_out_of_files_and_logs(
    runtime: DockerRuntime,
    engine: FakeDockerEngine,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    state = desired()

    actual = run(runtime, Operation.CREATE, state)

    assert (actual.running, actual.ready) == (True, True)
    assert (actual.model_version, actual.served_version, actual.spec_hash) == (
        "1",
        "1",
        state.spec_hash,
    )
    (container,) = engine.containers.values()
    assert container.name.startswith(f"aliasflow-iris-{state.spec_hash[:8]}-")
    assert container.labels == {
        "aliasflow.managed": "true",
        "aliasflow.deployment": "iris",
        "aliasflow.spec-hash": state.spec_hash,
        "aliasflow.model-version": "1",
        "aliasflow.admin-key": "deployment-v1",
    }
    host_config = container.host_config
    assert host_config["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert actual.endpoint == f"http://127.0.0.1:{container.host_port}"
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Memory"] == int(1.5 * 1024**3)
    assert host_config["RestartPolicy"] == {"Name": "unless-stopped"}
    assert host_config["ExtraHosts"] == ["host.docker.internal:host-gateway"]
    assert container.env == {
        "LOG_LEVEL": "info",
        "MLFLOW_TRACKING_TOKEN": SECRET,
        "MODEL_URI": "models:/iris-model/1",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        # The deployment's own key, not the controller's secret it derives from.
        "ALIASFLOW_ADMIN_TOKEN": deployment_key(ADMIN_TOKEN, "iris"),
    }
    # The secret is in the container's env only: not in our files, logs or state.
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in caplog.text
    assert SECRET not in repr(actual)
    assert ADMIN_TOKEN not in runtime.state_file.read_text()
    assert deployment_key(ADMIN_TOKEN, "iris") not in runtime.state_file.read_text()


def test_a_container_started_with_the_shared_token_is_recreated_once_then_hot_swapped(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    """Upgrade: no admin-key label means a server holding the old shared token, which
    cannot check a signature; it is recreated once (saying why), then swaps are signed."""
    state = desired(name="iris")
    run(runtime, Operation.CREATE, state)
    (old,) = engine.containers.values()
    del old.body["Labels"]["aliasflow.admin-key"]

    legacy = runtime.observe("iris")
    assert legacy is not None
    assert legacy.legacy_admin_key
    action = plan_deployment(dataclasses.replace(state, model_version="2"), legacy)
    assert (action.operation, action.reason) == (Operation.RECREATE, LEGACY_KEY_REASON)
    upgraded = execute(runtime, action)
    assert upgraded is not None
    assert not upgraded.legacy_admin_key
    assert old.id not in engine.containers

    # The stub server checks the signature with the key in its environment.
    promoted = dataclasses.replace(state, model_version="3")
    swap = plan_deployment(promoted, runtime.observe("iris"))
    assert swap.operation is Operation.HOTSWAP
    swapped = execute(runtime, swap)
    assert swapped is not None
    assert swapped.served_version == "3"


def test_observe_and_list_owned_agree_and_an_unchanged_pass_writes_nothing(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    first, second = desired(name="iris"), desired(name="wine", spec="1111222233334444")
    for state in (first, second):
        run(runtime, Operation.CREATE, state)
    engine.requests.clear()

    owned = runtime.list_owned()

    assert [a.name for a in owned] == ["iris", "wine"]
    assert owned == [runtime.observe("iris"), runtime.observe("wine")]
    # The full pass lists once (no inspect per container) and plans no-ops only.
    lists = [r for r in engine.requests if r.path == "/containers/json"]
    assert len(lists) == 3  # list_owned + the two observes above
    actions = plan({"iris": first, "wine": second}, {a.name: a for a in owned}, True)
    assert [a.operation for a in actions] == [Operation.NOOP, Operation.NOOP]
    for action in actions:
        execute(runtime, action)
    assert engine.writes() == []
    # Reads only, and only the list: no inspect per container.
    assert {(r.method, r.path) for r in engine.requests} == {("GET", "/containers/json")}


def test_hot_swap_changes_the_version_without_a_new_container(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    created = run(runtime, Operation.CREATE, desired("1"))
    (before,) = engine.containers
    engine.requests.clear()

    action = plan_deployment(desired("2"), runtime.observe("iris"))
    assert action.operation is Operation.HOTSWAP
    swapped = execute(runtime, action)

    assert swapped is not None
    assert (swapped.model_version, swapped.served_version) == ("2", "2")
    assert swapped.endpoint == created.endpoint
    assert list(engine.containers) == [before]
    assert engine.writes() == []  # the swap is the server's business, not the engine's
    # Labels cannot change: the boot version stays on the label, the swap is recorded.
    assert engine.containers[before].labels["aliasflow.model-version"] == "1"
    assert runtime.observe("iris") == swapped
    assert plan_deployment(desired("2"), runtime.observe("iris")).operation is Operation.NOOP


def test_a_lost_state_file_falls_back_to_the_label_and_self_heals_by_hot_swap(
    runtime: DockerRuntime,
) -> None:
    run(runtime, Operation.CREATE, desired("1"))
    run(runtime, Operation.HOTSWAP, desired("2"))
    runtime.state_file.unlink()

    seen = runtime.observe("iris")

    assert seen is not None
    assert (seen.model_version, seen.served_version) == ("1", "2")
    action = plan_deployment(desired("2"), seen)
    assert action.operation is Operation.HOTSWAP  # re-recorded, not recreated
    healed = execute(runtime, action)
    assert healed is not None
    assert healed.model_version == "2"


def test_env_change_recreates_blue_green_and_removes_the_old_container(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    old = run(runtime, Operation.CREATE, desired())
    old_name = owned_names(engine)[0]
    changed = desired(env=(("LOG_LEVEL", "debug"),), spec="eeeeffff00001111")
    action = plan_deployment(changed, runtime.observe("iris"))
    assert action.operation is Operation.RECREATE

    new = execute(runtime, action)

    assert new is not None
    assert new.spec_hash == "eeeeffff00001111"
    (new_name,) = owned_names(engine)
    assert new_name != old_name
    assert new_name.startswith("aliasflow-iris-eeeeffff-")
    assert engine.by_name(new_name).env["LOG_LEVEL"] == "debug"
    assert new.endpoint != old.endpoint
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{old.endpoint}/readyz", timeout=2)
    assert served_version(new.endpoint or "") == "1"
    # The writes, in order: create + start the new one, then stop + remove the old one.
    kinds = [(r.method, r.path.rsplit("/", 1)[-1]) for r in engine.writes()]
    assert kinds[-4:-2] == [("POST", "create"), ("POST", "start")]
    assert [k[0] for k in kinds[-2:]] == ["POST", "DELETE"]


def test_recreate_with_the_same_spec_gets_a_fresh_name(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    run(runtime, Operation.CREATE, desired())
    (first,) = owned_names(engine)
    run(runtime, Operation.RECREATE, desired())
    (second,) = owned_names(engine)
    assert first != second


def test_a_failed_recreate_keeps_the_old_container_serving(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    engine.add_image("broken-server:1", "exit")
    old = run(runtime, Operation.CREATE, desired())
    before = owned_names(engine)

    with pytest.raises(RolloutRejectedError, match="exited with code 3") as failure:
        run(runtime, Operation.RECREATE, desired(image="broken-server:1", spec="9999888877776666"))

    assert "dying on purpose" in str(failure.value)  # the container's log tail
    assert SECRET not in str(failure.value)
    assert owned_names(engine) == before  # the failed container was removed
    assert runtime.observe("iris") == old
    assert served_version(old.endpoint or "") == "1"


def test_a_container_that_never_gets_ready_times_out_and_is_removed(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    engine.add_image("hanging-server:1", "hang")
    with pytest.raises(HealthTimeoutError, match="not ready within 1s") as failure:
        run(runtime, Operation.CREATE, desired(image="hanging-server:1", timeout=1))
    assert "starting forever" in str(failure.value)
    assert owned_names(engine) == []
    assert runtime.observe("iris") is None


def test_a_crash_restarts_the_container_on_its_boot_version_and_self_heal_swaps_again(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    """`unless-stopped`: the engine restarts a crashed container (state `restarting`,
    then `running`) from its create-time env, so a hot-swapped version is gone."""
    run(runtime, Operation.CREATE, desired("1"))
    run(runtime, Operation.HOTSWAP, desired("2"))
    (container_id,) = engine.containers
    engine.kill(container_id)

    during = runtime.observe("iris")
    assert during is not None
    assert (during.running, during.ready) == (True, False)  # transient, not a failure
    assert "restarting" in during.detail

    back = _wait_for(lambda: _served(runtime, "1"), "the restarted container to serve")
    assert (back.model_version, back.served_version) == ("2", "1")
    assert engine.containers[container_id].restart_count == 1
    action = plan_deployment(desired("2"), back)
    assert action.operation is Operation.HOTSWAP  # the same container, swapped again
    healed = execute(runtime, action)
    assert healed is not None
    assert healed.served_version == "2"
    assert list(engine.containers) == [container_id]


def _served(runtime: DockerRuntime, version: str) -> ActualState | None:
    seen = runtime.observe("iris")
    return seen if seen is not None and seen.served_version == version else None


def _wait_for(check: Callable[[], ActualState | None], what: str) -> ActualState:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_image_pinned_by_digest_is_pulled(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    """The ACR resolver pins images to `repo@sha256:...`; the engine pulls by digest."""
    pinned = f"registry.example.com/team/stub@sha256:{'ab' * 32}"
    engine.add_remote_image(pinned, "stub")
    created = run(runtime, Operation.CREATE, desired(image=pinned))
    assert created.ready
    (container,) = engine.containers.values()
    assert container.image == pinned


def test_more_cpus_than_the_host_has_says_which_field_to_lower(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    too_many = dataclasses.replace(desired(), cpu=float(engine.cpus + 1))
    with pytest.raises(InvalidSpecError, match=r"range of CPUs is from 0\.01 to") as refused:
        run(runtime, Operation.CREATE, too_many)
    assert f"spec.resources.cpu is {engine.cpus + 1}" in str(refused.value)
    assert "lower spec.resources.cpu" in str(refused.value)
    assert not refused.value.retryable  # the manifest must change: no retry on a timer
    assert engine.containers == {}


def test_delete_and_prune_remove_only_owned_containers(
    runtime: DockerRuntime, engine: FakeDockerEngine, client: docker.DockerClient
) -> None:
    run(runtime, Operation.CREATE, desired(name="iris"))
    run(runtime, Operation.CREATE, desired(name="wine", spec="1111222233334444"))
    # Someone else's containers: a look-alike name without our label, and one that claims
    # the deployment label but not the managed one.
    engine.create_unmanaged("aliasflow-iris-aaaabbbb-0000", STUB_IMAGE, {})
    engine.create_unmanaged(
        "aliasflow-wine-12345678-0000", STUB_IMAGE, {"aliasflow.deployment": "wine"}
    )

    owned = {a.name: a for a in runtime.list_owned()}
    prunes = plan({"wine": desired(name="wine", spec="1111222233334444")}, owned, True)
    for action in prunes:
        if action.operation is Operation.DELETE:
            execute(runtime, action)

    assert [a.operation for a in prunes] == [Operation.NOOP, Operation.DELETE]
    assert [a.name for a in runtime.list_owned()] == ["wine"]
    all_names = [c.name for c in client.containers.list(all=True)]
    assert "aliasflow-iris-aaaabbbb-0000" in all_names
    assert "aliasflow-wine-12345678-0000" in all_names
    runtime.delete("wine")
    runtime.delete("never-existed")  # unknown is a no-op
    assert runtime.list_owned() == []
    assert len(engine.containers) == 2  # only the two that were never ours


def test_a_missing_image_is_pulled_and_an_unknown_one_is_an_invalid_spec(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    engine.add_remote_image("registry.example.com/team/stub:2", "stub")

    pulled = run(runtime, Operation.CREATE, desired(image="registry.example.com/team/stub:2"))

    assert pulled.ready
    assert any(r.path == "/images/create" for r in engine.writes())
    with pytest.raises(InvalidSpecError, match="does not exist") as failure:
        run(runtime, Operation.CREATE, desired(name="other", image="nosuch/image:9"))
    assert "nosuch/image" in str(failure.value)
    assert runtime.observe("other") is None


def test_wrong_kind_is_an_invalid_spec(runtime: DockerRuntime) -> None:
    with pytest.raises(InvalidSpecError, match="local"):
        run(runtime, Operation.CREATE, dataclasses.replace(desired(), target_kind=TargetKind.LOCAL))


def test_engine_errors_map_into_the_error_tree(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    engine.fail("GET", r"^/containers/json$", status=500, message="daemon hiccup")
    with pytest.raises(RuntimeUnavailableError, match="daemon hiccup"):
        runtime.list_owned()

    engine.fail("POST", r"^/containers/create$", status=400, message="invalid memory value")
    with pytest.raises(InvalidSpecError, match="invalid memory value"):
        run(runtime, Operation.CREATE, desired())

    engine.fail("POST", r"^/containers/create$", status=503, message="overloaded")
    with pytest.raises(RuntimeUnavailableError, match="overloaded"):
        run(runtime, Operation.CREATE, desired())
    assert runtime.list_owned() == []

    run(runtime, Operation.CREATE, desired())
    engine.fail("DELETE", r"^/containers/", status=500, message="device busy")
    with pytest.raises(RuntimeUnavailableError, match="device busy"):
        runtime.delete("iris")
    assert [a.name for a in runtime.list_owned()] == ["iris"]  # stays; the next pass retries


def test_an_engine_that_does_not_answer_is_runtime_unavailable(data_dir: Path) -> None:
    dead = f"tcp://127.0.0.1:{free_port()}"
    pinned = docker.DockerClient(base_url=dead, version="1.45", timeout=5)
    lazy = DockerRuntime(
        admin_token=ADMIN_TOKEN, tracking_uri="http://x", data_dir=data_dir, base_url=dead
    )
    try:
        for runtime in (
            DockerRuntime(
                pinned, admin_token=ADMIN_TOKEN, tracking_uri="http://x", data_dir=data_dir
            ),
            lazy,  # builds its client on first use: that asks the engine for its version
        ):
            with pytest.raises(RuntimeUnavailableError, match="does not answer"):
                runtime.list_owned()
            with pytest.raises(RuntimeUnavailableError):
                runtime.observe("iris")
            with pytest.raises(RuntimeUnavailableError):
                run(runtime, Operation.CREATE, desired())
            with pytest.raises(RuntimeUnavailableError):
                runtime.delete("iris")
    finally:
        pinned.close()


def test_host_network_binds_loopback_on_a_port_of_its_own(
    runtime: DockerRuntime, engine: FakeDockerEngine
) -> None:
    actual = run(runtime, Operation.CREATE, desired(network="host"))

    (container,) = engine.containers.values()
    assert container.host_config["NetworkMode"] == "host"
    assert "PortBindings" not in container.host_config
    command = container.body["Cmd"]
    assert command[:4] == ["aliasflow", "serve", "--host", "127.0.0.1"]
    assert actual.endpoint == f"http://127.0.0.1:{command[-1]}"
    assert container.labels["aliasflow.host-port"] == command[-1]
    assert actual.ready
    assert runtime.list_owned() == [actual]


def test_build_runtimes_adds_docker_only_when_enabled_and_does_not_touch_the_engine(
    tmp_path: Path,
) -> None:
    base: dict[str, Any] = {"data_dir": tmp_path, "mlflow_tracking_uri": "http://127.0.0.1:5000"}
    assert set(build_runtimes(ControllerSettings(**base), "t")) == {"local"}
    dead = f"tcp://127.0.0.1:{free_port()}"
    settings = ControllerSettings(
        **base,
        docker_enabled=True,
        docker_host=dead,
        docker_tracking_uri="http://host.docker.internal:5000",
    )
    runtimes = build_runtimes(settings, "t")  # no engine: building must still succeed
    assert set(runtimes) == {"local", "docker"}
    with pytest.raises(RuntimeUnavailableError):
        runtimes["docker"].list_owned()
