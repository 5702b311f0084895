"""The local runtime against real `aliasflow serve` processes and a real MLflow server.

Every server a test starts is stopped by the `runtime` fixture's finalizer (`stop_all`),
so a failing test never leaves strays behind on the shared cores. Each test serves on a
free port of its own, as a manifest's `port` would name it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from aliasflow_cli.devstack import MlflowServer
from controller.core.errors import (
    HealthTimeoutError,
    RolloutRejectedError,
    RuntimeUnavailableError,
)
from controller.core.ports import Runtime
from controller.core.serverkeys import api_keys_fingerprint, deployment_key
from controller.core.types import Action, ActualState, DesiredState, Operation
from controller.reconcile.execute import execute
from controller.reconcile.plan import LEGACY_KEY_REASON, plan_deployment
from controller.runtimes.local import LocalRuntime
from controller.runtimes.local.frontdoor import FrontDoors, PortInUseError
from controller.runtimes.local.process import is_our_proxy, is_our_server, serve_command
from controller.runtimes.netutil import free_port

ADMIN_TOKEN = "test-admin-token"
SECRET = "s3cr3t-value-never-on-disk"
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
ROW = dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


@pytest.fixture(scope="module")
def iris_model(runtime_model: str) -> str:
    """v1 and v2 serve; v3's artifact cannot be read, so its server exits at boot."""
    return runtime_model


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def port() -> int:
    """The deployment's stable port (its manifest's `port`)."""
    return free_port()


@pytest.fixture
def runtime(data_dir: Path, mlflow_server: MlflowServer) -> Iterator[LocalRuntime]:
    local = LocalRuntime(data_dir, ADMIN_TOKEN, mlflow_server.url, stop_grace_seconds=5)
    try:
        yield local
    finally:
        local.stop_all()


def desired(
    model: str,
    version: str,
    *,
    name: str = "iris",
    port: int,
    spec: str = "spec-a",
    timeout: int = 90,
    secret_env: tuple[tuple[str, str], ...] = (),
    env: tuple[tuple[str, str], ...] = (("LOG_LEVEL", "info"),),
) -> DesiredState:
    return DesiredState(
        name=name,
        target_kind="local",
        model_name=model,
        model_version=version,
        run_id=None,
        image="aliasflow-server:latest",
        port=port,
        cpu=1.0,
        memory_gb=1.0,
        env=env,
        strategy="hotswap",
        health_timeout_seconds=timeout,
        secret_env=secret_env,
        spec_hash=spec,
    )


def run(runtime: LocalRuntime, operation: Operation, state: DesiredState) -> ActualState:
    result = execute(runtime, Action(operation, state.name, "test", state))
    assert result is not None
    return result


def served_version(endpoint: str) -> str:
    return str(httpx.get(f"{endpoint}/metadata", timeout=5).json()["version"])


def predict(endpoint: str) -> httpx.Response:
    return httpx.post(f"{endpoint}/predict", json={"records": [ROW]}, timeout=10)


def pid_of(runtime: LocalRuntime, name: str) -> int:
    state = json.loads(runtime.state_file.read_text())
    return int(state["servers"][name]["pid"])


def server_port_of(runtime: LocalRuntime, name: str) -> int:
    """The server's own port behind the stable one."""
    state = json.loads(runtime.state_file.read_text())
    return int(state["servers"][name]["port"])


def proxy_of(runtime: LocalRuntime, name: str) -> tuple[int, int]:
    proxy = json.loads(runtime.state_file.read_text())["proxies"][name]
    return int(proxy["pid"]), int(proxy["port"])


def wait_dead(pid: int, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_our_server(pid, port):
            return True
        time.sleep(0.05)
    return False


def test_is_a_runtime(runtime: LocalRuntime) -> None:
    as_protocol: Runtime = runtime
    assert as_protocol.kind == "local"
    assert runtime.list_owned() == []


def test_create_serves_v1_with_secrets_only_in_the_child_env_then_hot_swaps(
    runtime: LocalRuntime, iris_model: str, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One server for the whole story: a cold start costs seconds on two shared cores.
    monkeypatch.setenv("ALIASFLOW_API_TOKEN", "controller-only")  # must not leak to servers
    state = desired(iris_model, "1", port=port, secret_env=(("MLFLOW_TRACKING_TOKEN", SECRET),))

    actual = run(runtime, Operation.CREATE, state)

    assert actual.running
    assert actual.ready
    assert (actual.model_version, actual.served_version, actual.spec_hash) == ("1", "1", "spec-a")
    # Served on the manifest's port, not wherever a free port happened to be.
    endpoint = actual.endpoint or ""
    assert endpoint == f"http://127.0.0.1:{port}"
    response = predict(endpoint)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1
    assert runtime.observe("iris") == actual
    assert plan_deployment(state, runtime.observe("iris")).operation is Operation.NOOP

    pid = pid_of(runtime, "iris")
    child_env = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_text().split("\0")
        if "=" in item
    )
    assert child_env["MLFLOW_TRACKING_TOKEN"] == SECRET
    assert child_env["MODEL_URI"] == f"models:/{iris_model}/1"
    # The deployment's own key, never the controller's secret it derives from.
    key = deployment_key(ADMIN_TOKEN, "iris")
    assert child_env["ALIASFLOW_ADMIN_TOKEN"] == key
    assert child_env["LOG_LEVEL"] == "info"
    assert "ALIASFLOW_API_TOKEN" not in child_env
    proxy_pid, _ = proxy_of(runtime, "iris")
    proxy_env = Path(f"/proc/{proxy_pid}/environ").read_text()
    assert SECRET not in proxy_env
    assert ADMIN_TOKEN not in proxy_env
    assert key not in proxy_env
    for path in runtime.root.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
            assert key not in path.read_text(errors="replace"), path

    # Hot swap to v2: same process, same address, state and /metadata move to v2.
    swapped = run(runtime, Operation.HOTSWAP, desired(iris_model, "2", port=port))

    assert (swapped.model_version, swapped.served_version) == ("2", "2")
    assert swapped.endpoint == endpoint
    assert pid_of(runtime, "iris") == pid
    assert proxy_of(runtime, "iris") == (proxy_pid, port)
    assert served_version(endpoint) == "2"
    recorded = json.loads(runtime.state_file.read_text())["servers"]["iris"]
    assert recorded["model_version"] == "2"

    # A version that fails to load is refused; v2 keeps serving and stays recorded.
    with pytest.raises(RolloutRejectedError, match="refused") as refused:
        execute(
            runtime,
            Action(Operation.HOTSWAP, "iris", "test", desired(iris_model, "3", port=port)),
        )

    assert "keeps serving" in str(refused.value)
    assert served_version(endpoint) == "2"
    assert predict(endpoint).status_code == 200
    after = runtime.observe("iris")
    assert after is not None
    assert (after.model_version, after.served_version, after.running) == ("2", "2", True)


def test_restarted_controller_adopts_live_servers_and_sees_a_killed_one(
    runtime: LocalRuntime, iris_model: str, data_dir: Path, port: int, mlflow_server: MlflowServer
) -> None:
    state = desired(iris_model, "1", port=port)
    first = run(runtime, Operation.CREATE, state)
    pid = pid_of(runtime, "iris")
    proxy_pid, _ = proxy_of(runtime, "iris")

    restarted = LocalRuntime(data_dir, ADMIN_TOKEN, mlflow_server.url)
    adopted = restarted.observe("iris")

    assert adopted == first
    assert restarted.list_owned() == [first]
    assert plan_deployment(state, adopted).operation is Operation.NOOP  # nothing to start
    assert _serve_processes_for(data_dir) == [pid]

    # A restarted controller with another admin token cannot hot swap; it says why.
    other_token = LocalRuntime(data_dir, "a-new-token", mlflow_server.url)
    with pytest.raises(RolloutRejectedError, match="ALIASFLOW_ADMIN_TOKEN"):
        execute(
            other_token,
            Action(Operation.HOTSWAP, "iris", "test", desired(iris_model, "2", port=port)),
        )

    # Whatever holds the port dying is a workload that is not running: self-heal recreates.
    os.kill(proxy_pid, signal.SIGKILL)
    assert wait_gone(lambda: is_our_proxy(proxy_pid, port))
    no_proxy = restarted.observe("iris")
    assert no_proxy is not None
    assert not no_proxy.running
    assert f"proxy on port {port}" in no_proxy.detail
    assert plan_deployment(state, no_proxy).operation is Operation.RECREATE

    os.kill(pid, signal.SIGKILL)
    assert wait_dead(pid, server_port_of(runtime, "iris"))
    dead = restarted.observe("iris")

    assert dead is not None
    assert not dead.running
    assert not dead.ready
    assert "gone" in dead.detail
    assert plan_deployment(state, dead).operation is Operation.RECREATE


def test_a_server_started_with_the_shared_token_is_recreated_once_with_its_own_key(
    runtime: LocalRuntime, iris_model: str, port: int
) -> None:
    """Upgrade: a record written before per-deployment keys (no `admin_key`) is a server
    that cannot be told anything; the plan recreates it once, saying why."""
    state = desired(iris_model, "1", port=port)
    run(runtime, Operation.CREATE, state)
    old_pid = pid_of(runtime, "iris")
    raw = json.loads(runtime.state_file.read_text())
    del raw["servers"]["iris"]["admin_key"]
    runtime.state_file.write_text(json.dumps(raw))

    legacy = runtime.observe("iris")
    assert legacy is not None
    assert legacy.legacy_admin_key
    action = plan_deployment(replace(state, model_version="2"), legacy)
    assert action.operation is Operation.RECREATE
    assert action.reason == LEGACY_KEY_REASON

    upgraded = execute(runtime, action)
    assert upgraded is not None
    assert not upgraded.legacy_admin_key
    assert pid_of(runtime, "iris") != old_pid
    assert served_version(upgraded.endpoint or "") == "2"
    assert plan_deployment(replace(state, model_version="2"), upgraded).operation is (
        Operation.NOOP
    )


def _keyed(state: DesiredState, *keys: str) -> DesiredState:
    return replace(state, api_keys=keys, api_keys_fingerprint=api_keys_fingerprint(keys))


def test_client_api_keys_boot_with_the_server_and_rotate_without_a_restart(
    runtime: LocalRuntime, iris_model: str, port: int
) -> None:
    state = _keyed(desired(iris_model, "1", port=port), "first-key-0123456789")
    created = run(runtime, Operation.CREATE, state)
    endpoint = created.endpoint or ""
    pid = pid_of(runtime, "iris")
    assert created.api_keys == state.api_keys_fingerprint
    assert predict(endpoint).status_code == 401
    row = {"records": [ROW]}
    ok = httpx.post(f"{endpoint}/predict", json=row, headers={"X-Api-Key": "first-key-0123456789"})
    assert ok.status_code == 200
    assert plan_deployment(state, runtime.observe("iris")).operation is Operation.NOOP

    rotated = _keyed(state, "second-key-0123456789")
    action = plan_deployment(rotated, runtime.observe("iris"))
    assert action.operation is Operation.KEYS
    after = execute(runtime, action)
    assert after is not None
    assert after.api_keys == rotated.api_keys_fingerprint
    assert pid_of(runtime, "iris") == pid  # no restart
    old = httpx.post(f"{endpoint}/predict", json=row, headers={"X-Api-Key": "first-key-0123456789"})
    new = httpx.post(
        f"{endpoint}/predict", json=row, headers={"Authorization": "Bearer second-key-0123456789"}
    )
    assert (old.status_code, new.status_code) == (401, 200)
    assert plan_deployment(rotated, after).operation is Operation.NOOP
    for path in runtime.root.rglob("*"):
        if path.is_file():
            assert "second-key" not in path.read_text(errors="replace"), path

    # Keys removed from the manifest: the requirement is lifted, still no restart.
    lifted = execute(runtime, plan_deployment(_keyed(state), after))
    assert lifted is not None
    assert predict(endpoint).status_code == 200
    assert pid_of(runtime, "iris") == pid


def test_recreate_is_blue_green_on_one_port_without_a_failed_request(
    runtime: LocalRuntime, iris_model: str, port: int
) -> None:
    old = run(runtime, Operation.CREATE, desired(iris_model, "1", port=port))
    old_pid, old_port = pid_of(runtime, "iris"), server_port_of(runtime, "iris")
    endpoint = old.endpoint or ""

    # The new server cannot load its version: it is stopped, the old one keeps serving.
    with pytest.raises(RolloutRejectedError, match="exited") as failed:
        execute(
            runtime,
            Action(
                Operation.RECREATE,
                "iris",
                "test",
                desired(iris_model, "3", port=port, spec="spec-b"),
            ),
        )

    assert "JSONDecodeError" in str(failed.value)  # the tail of the new server's log
    assert runtime.observe("iris") == old
    assert pid_of(runtime, "iris") == old_pid
    assert predict(endpoint).status_code == 200
    assert json.loads(runtime.state_file.read_text())["pending"] == {}
    assert _serve_processes_for(runtime.root.parent) == [old_pid]

    # A good recreate under load: clients that keep their connections and clients that
    # open one per request see the version change on the same address, and no failure.
    with PredictLoad(endpoint) as load:
        load.wait_for("1")
        new = run(runtime, Operation.RECREATE, desired(iris_model, "2", port=port, spec="spec-b"))
        load.wait_for("2")

    assert load.failures == []
    assert load.answered["1"] > 0
    assert load.answered["2"] > 0
    assert new.endpoint == endpoint
    assert (new.spec_hash, new.model_version, new.served_version) == ("spec-b", "2", "2")
    assert pid_of(runtime, "iris") != old_pid
    assert wait_dead(old_pid, old_port)
    assert [w.name for w in runtime.list_owned()] == ["iris"]

    # Delete stops the proxy and the server and forgets them; a second delete is a no-op.
    new_pid, new_port = pid_of(runtime, "iris"), server_port_of(runtime, "iris")
    assert execute(runtime, Action(Operation.DELETE, "iris", "prune", None, new)) is None
    assert wait_dead(new_pid, new_port, timeout=1)
    with pytest.raises(httpx.ConnectError):
        predict(endpoint)
    assert runtime.observe("iris") is None
    assert runtime.list_owned() == []
    runtime.delete("iris")


class PredictLoad:
    """Two clients calling /predict until stopped: one keeps its connections alive, the
    other opens a new connection per request. Counts answers by version and failures."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.answered: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(keep,), daemon=True) for keep in (20, 0, 20)
        ]

    def __enter__(self) -> PredictLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def wait_for(self, version: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.answered.get(version, 0) < 5:
            assert time.monotonic() < deadline, f"version {version} never answered"
            time.sleep(0.05)

    def _run(self, keepalive: int) -> None:
        limits = httpx.Limits(max_keepalive_connections=keepalive)
        with httpx.Client(timeout=10, limits=limits, trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{self.endpoint}/predict", json={"records": [ROW]})
                    if response.status_code != 200:
                        self.failures.append(f"HTTP {response.status_code}")
                        continue
                    version = str(response.json()["model"]["version"])
                    self.answered[version] = self.answered.get(version, 0) + 1
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))


def test_a_busy_port_fails_the_rollout_before_a_server_starts(
    runtime: LocalRuntime, port: int
) -> None:
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", port))
        stranger.listen()
        with pytest.raises(PortInUseError) as busy:
            execute(runtime, Action(Operation.CREATE, "iris", "test", desired("m", "1", port=port)))

    message = str(busy.value)
    assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in message
    assert "change spec.port" in message
    assert busy.value.reason == "PortInUse"
    assert busy.value.retryable  # it may be freed: retried with backoff
    assert runtime.observe("iris") is None
    assert _serve_processes_for(runtime.root.parent) == []


def wait_gone(alive: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _serve_processes_for(data_dir: Path) -> list[int]:
    """Pids of live serve processes whose log lives in this data dir (ours only)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            fd_target = os.readlink(proc / "fd" / "1")
        except OSError:
            continue
        if b"aliasflow_cli.main" in cmdline and fd_target.startswith(str(data_dir)):
            pids.append(int(proc.name))
    return sorted(pids)


# -- no model server needed ---------------------------------------------------------------


def test_corrupt_state_file_is_reported_and_treated_as_empty(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_file = data_dir / "local" / "state.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text("{not json")
    runtime = LocalRuntime(data_dir, ADMIN_TOKEN, "http://127.0.0.1:1")

    assert runtime.observe("iris") is None
    assert runtime.list_owned() == []
    assert runtime.state_error is not None
    assert "corrupt" in runtime.state_error
    assert "corrupt" in caplog.text
    assert (data_dir / "local" / "state.json.corrupt").read_text() == "{not json"
    runtime.delete("iris")  # writes a fresh, valid file
    assert json.loads(state_file.read_text())["servers"] == {}


def test_a_wrong_shape_state_file_is_also_corrupt(data_dir: Path) -> None:
    state_file = data_dir / "local" / "state.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text(json.dumps({"format": 1, "servers": {"iris": {"pid": "x"}}}))
    runtime = LocalRuntime(data_dir, ADMIN_TOKEN, "http://127.0.0.1:1")
    assert runtime.list_owned() == []
    assert runtime.state_error is not None


def test_a_reused_pid_is_not_ours_and_is_never_signalled(data_dir: Path) -> None:
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        record = {
            "pid": stranger.pid,
            "port": 45678,
            "endpoint": "http://127.0.0.1:45678",
            "spec_hash": "spec-a",
            "model_version": "1",
            "started_at": "2024-01-01T00:00:00+00:00",
            "log_file": str(data_dir / "local" / "logs" / "iris-45678.log"),
        }
        state_file = data_dir / "local" / "state.json"
        state_file.parent.mkdir(parents=True)
        proxy = {
            "pid": stranger.pid,
            "port": 45679,
            "control": "not-ours",
            "started_at": "2024-01-01T00:00:00+00:00",
            "log_file": str(data_dir / "local" / "logs" / "iris-proxy-45679.log"),
        }
        state_file.write_text(
            json.dumps({"format": 1, "servers": {"iris": record}, "proxies": {"iris": proxy}})
        )
        runtime = LocalRuntime(data_dir, ADMIN_TOKEN, "http://127.0.0.1:1")

        actual = runtime.observe("iris")
        assert actual is not None
        assert not actual.running
        with pytest.raises(RuntimeUnavailableError, match="needs a recreate"):
            execute(
                runtime, Action(Operation.HOTSWAP, "iris", "test", desired("m", "2", port=45679))
            )
        assert runtime.stop_all() == []  # nothing of ours was running

        assert stranger.poll() is None  # still alive: not ours to kill
        assert runtime.observe("iris") is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_server_that_exits_at_once_fails_fast_with_its_log(
    tmp_path: Path, data_dir: Path, port: int
) -> None:
    fake_python = tmp_path / "fake-python"
    fake_python.write_text("#!/bin/sh\necho 'cannot load: boom' >&2\nexit 3\n")
    fake_python.chmod(0o755)
    runtime = LocalRuntime(data_dir, ADMIN_TOKEN, "http://127.0.0.1:1", python=str(fake_python))

    started = time.monotonic()
    with pytest.raises(RolloutRejectedError, match="boom") as failed:
        execute(
            runtime,
            Action(Operation.CREATE, "iris", "test", desired("m", "1", port=port, timeout=60)),
        )

    assert time.monotonic() - started < 10
    assert "code 3" in str(failed.value)
    assert runtime.observe("iris") is None
    assert json.loads(runtime.state_file.read_text())["pending"] == {}


def test_a_server_that_never_gets_ready_times_out_and_is_stopped(
    tmp_path: Path, data_dir: Path, port: int
) -> None:
    fake_python = tmp_path / "fake-python"
    # No `exec`: the shell keeps our serve command line, so the runtime knows it as ours.
    fake_python.write_text("#!/bin/sh\nsleep 60\n")
    fake_python.chmod(0o755)
    runtime = LocalRuntime(
        data_dir, ADMIN_TOKEN, "http://127.0.0.1:1", python=str(fake_python), stop_grace_seconds=1
    )
    with pytest.raises(HealthTimeoutError, match="not ready within 1s"):
        execute(
            runtime,
            Action(Operation.CREATE, "iris", "test", desired("m", "1", port=port, timeout=1)),
        )
    assert runtime.observe("iris") is None


def test_an_orphan_proxy_of_the_deployment_is_replaced(data_dir: Path, port: int) -> None:
    """A controller killed between starting a proxy and recording it leaves the port held
    by that proxy: the deployment's next rollout recognises it and takes the port back;
    another deployment asking for the port gets a clear refusal instead."""
    doors = FrontDoors(data_dir / "local", sys.executable, data_dir / "logs", grace=1)
    listener = doors.take("iris", port)
    orphan = doors.open("iris", listener, free_port(), {"PATH": os.environ["PATH"]})
    listener.close()
    try:
        with pytest.raises(PortInUseError, match=f"pid {orphan.pid}"):
            doors.take("another", port)
        assert doors.alive(orphan)

        doors.take("iris", port).close()  # no state file knows of `orphan`

        assert not doors.alive(orphan)
    finally:
        doors.stop(orphan)


def test_serve_command_is_the_image_program() -> None:
    assert serve_command("/py", 1234) == [
        "/py",
        "-m",
        "aliasflow_cli.main",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "1234",
    ]
