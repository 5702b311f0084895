"""The findings of issue 12 that live in the controller and the CLI, each reproduced.

A real controller app on a real uvicorn server, over an in-memory registry and runtime
(what the findings are about is the status, the logs and the CLI, not a model server);
the CLI runs as a subprocess against it, as a person runs it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from aliasflow_cli.stack import Stack, StackError
from aliasflow_cli.tables import format_status_table
from controller.api.app import create_app
from controller.core.errors import RuntimeUnavailableError
from controller.core.records import DeploymentStatus, Health, Reason, Sync
from controller.core.types import Operation
from controller.manifests.loader import load_directory
from controller.reconcile.failurelog import RepeatedFailures
from controller.registry.memory import MemoryRegistry
from controller.runtimes.memory import MemoryRuntime
from controller.runtimes.netutil import free_port, wait_until_ready
from controller.service.controller import Controller
from controller.service.settings import ControllerSettings

TOKEN = "workstation-api-token"
MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{name: iris, alias: champion}}
  port: {port}
  rollout: {{strategy: {strategy}, healthTimeoutSeconds: 5}}
"""


@dataclass
class Live:
    url: str
    controller: Controller
    registry: MemoryRegistry
    runtime: MemoryRuntime
    manifests: Path
    data_dir: Path

    def write(self, name: str, port: int, strategy: str = "hotswap") -> Path:
        path = self.manifests / f"{name}.yaml"
        path.write_text(MANIFEST.format(name=name, port=port, strategy=strategy))
        return path

    def model(self, *versions: str, champion: str | None = None) -> None:
        """Register iris `versions`; the champion alias on `champion` (default: the first)."""
        for version in versions:
            self.registry.add_version("iris", version)
        self.registry.set_alias("iris", "champion", champion or versions[0])

    def poll(self) -> None:
        self.controller.poll_once()
        assert self.controller.queue.wait_idle(15)

    def rows(self) -> dict[str, dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/deployments", trust_env=False, timeout=10)
        return {row["name"]: row for row in response.json()}

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALIASFLOW_")}
        env.update(ALIASFLOW_URL=self.url, ALIASFLOW_DATA_DIR=str(self.data_dir))
        if token:
            env["ALIASFLOW_API_TOKEN"] = token
        return subprocess.run(
            [sys.executable, "-m", "aliasflow_cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    settings = ControllerSettings(
        manifests_dir=manifests,
        data_dir=tmp_path / "data",
        port=free_port(),
        api_token=TOKEN,
        poll_interval_seconds=3600,  # the tests poll by hand
    )
    registry = MemoryRegistry()
    runtime = MemoryRuntime()
    # The real manifest source: it reads the directory when the controller polls.
    controller = Controller(settings, registry=registry, runtimes={"local": runtime})
    controller.reconciler.health_poll_interval = 0.01
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, controller),
            host="127.0.0.1",
            port=settings.port,
            log_config=None,
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    wait_until_ready(f"{url}/healthz", timeout=30)
    assert controller.queue.wait_idle(15)
    try:
        yield Live(url, controller, registry, runtime, manifests, settings.data_dir)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def serving(live: Live, name: str, version: str) -> None:
    deadline = time.monotonic() + 15
    while live.rows().get(name, {}).get("served_version") != version:
        assert time.monotonic() < deadline, live.rows().get(name)
        live.poll()


# -- finding 3: a deployment with neither manifest nor workload leaves status -----------


def test_a_deployment_with_neither_manifest_nor_workload_leaves_status_not_history(
    live: Live,
) -> None:
    live.model("1")
    manifest = live.write("iris-gone", free_port())
    live.poll()
    serving(live, "iris-gone", "1")

    # The workload disappears by hand and its manifest is deleted: nothing is left to show.
    live.runtime.remove("iris-gone")
    manifest.unlink()
    live.poll()

    assert "iris-gone" not in live.rows()
    history = httpx.get(f"{live.url}/api/deployments/iris-gone/history", trust_env=False)
    assert [row["action"] for row in history.json()] == ["create"]  # the record stays


def test_a_workload_without_manifest_stays_in_status(live: Live) -> None:
    """Only a row with nothing behind it goes: a kept workload (prune: false) still shows."""
    live.model("1")
    manifest = live.write("iris-kept", free_port())
    manifest.write_text(manifest.read_text() + "  syncPolicy: {prune: false}\n")
    live.poll()
    serving(live, "iris-kept", "1")
    manifest.unlink()
    live.poll()

    assert live.rows()["iris-kept"]["health"] == "Healthy"  # its workload still serves


# -- finding 7: an invalid manifest is a row of its own, logged once ---------------------


def test_an_invalid_manifest_is_a_row_with_file_field_and_message_logged_once(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    live.model("1")
    manifest = live.write("iris-local", free_port())
    live.poll()
    serving(live, "iris-local", "1")

    manifest.write_text(manifest.read_text().replace("strategy: hotswap", "strategy: bluegreen"))
    with caplog.at_level(logging.WARNING, logger="aliasflow"):
        for _ in range(3):
            live.poll()

    row = live.rows()["iris-local"]
    assert (row["sync"], row["reason"]) == ("Invalid", "ManifestInvalid")
    assert row["health"] == "Healthy"  # the last version keeps serving; nothing is touched
    (problem,) = row["manifest_errors"]
    assert problem["file"] == "iris-local.yaml"
    assert problem["field"] == "spec.rollout.strategy"
    assert "bluegreen" in problem["message"]
    logged = [r.getMessage() for r in caplog.records if "spec.rollout.strategy" in r.getMessage()]
    assert len(logged) == 1, logged  # when it appears, not on every poll

    table = format_status_table(list(live.rows().values()))
    assert "Invalid" in table
    assert "iris-local.yaml (document 1): spec.rollout.strategy:" in table
    assert "iris@champion" in table
    assert "vNone" not in table

    page = httpx.get(f"{live.url}/", trust_env=False).text
    assert 'data-sync="Invalid"' in page
    assert "spec.rollout.strategy" in page
    detail = httpx.get(f"{live.url}/deployments/iris-local", trust_env=False)
    assert detail.status_code == 200
    assert "spec.rollout.strategy" in detail.text


def test_a_file_too_broken_to_name_anything_stays_under_its_deployment(live: Live) -> None:
    live.model("1")
    manifest = live.write("iris-local", free_port())
    live.poll()
    manifest.write_text("kind: [\n")  # not even YAML
    broken = live.manifests / "new.yaml"
    broken.write_text("kind: [\n")
    live.poll()

    rows = live.rows()
    assert rows["iris-local"]["sync"] == "Invalid"
    assert "invalid YAML" in rows["iris-local"]["manifest_errors"][0]["message"]
    assert rows["new.yaml"]["sync"] == "Invalid"  # never named a deployment: its file


def test_the_model_column_never_shows_vnone() -> None:
    row = {"name": "x", "sync": "Unknown", "health": "Unknown", "model_name": "iris"}
    assert "vNone" not in format_status_table([row])
    assert "iris v3" in format_status_table([{**row, "pinned_version": 3}])
    assert " - " in format_status_table([{**row, "model_name": None}])


def test_up_waits_with_a_bound_and_says_why_in_words(live: Live, tmp_path: Path) -> None:
    """The wait for the first rollout ends, and says what the deployment is doing."""
    live.registry.add_version("iris", "1")  # registered, but no champion alias yet
    live.write("iris-local", free_port())
    live.poll()
    stack = Stack(tmp_path, live.manifests, 0, int(live.url.rsplit(":", 1)[1]))

    with pytest.raises(StackError) as waited:
        stack.wait_serving("iris-local", "1", timeout=1)

    message = str(waited.value)
    assert message.startswith("iris-local is not serving version 1 after 1 s: ")
    assert "(AliasMissing): alias 'champion' of model 'iris' is not set" in message
    assert "aliasflow status" in message
    assert "{" not in message  # words, not a dict


def test_up_rolls_out_only_deployments_with_a_valid_manifest(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stale row (no manifest, no workload) or an invalid manifest is not waited for."""
    from aliasflow_cli.stack_commands import _first_rollout

    live.registry.add_version("iris-classifier", "1")  # what `up` trains and waits for
    live.registry.set_alias("iris-classifier", "champion", "1")
    manifest = live.write("iris-local", free_port())
    manifest.write_text(manifest.read_text().replace("name: iris,", "name: iris-classifier,"))
    (live.manifests / "broken.yaml").write_text(
        MANIFEST.format(name="iris-broken", port=free_port(), strategy="bluegreen")
    )
    live.poll()
    stale = DeploymentStatus(
        "iris-old", Sync.UNKNOWN, Health.UNKNOWN, "", model_name="iris-classifier", alias="champion"
    )
    live.controller.store.put_status(stale)  # as the row of a deleted manifest was
    stack = Stack(tmp_path, live.manifests, 0, int(live.url.rsplit(":", 1)[1]))

    rows = _first_rollout(stack, "1")

    assert [row["name"] for row in rows] == ["iris-local"]
    assert "manifest not applied: broken.yaml: spec.rollout.strategy:" in capsys.readouterr().out


# -- finding 5: validation refuses two local deployments on one port ---------------------


def test_two_local_deployments_on_one_port_are_both_refused(tmp_path: Path) -> None:
    for name in ("iris-a", "iris-b"):
        (tmp_path / f"{name}.yaml").write_text(
            MANIFEST.format(name=name, port=9321, strategy="hotswap")
        )
    (tmp_path / "iris-c.yaml").write_text(
        MANIFEST.format(name="iris-c", port=9322, strategy="hotswap")
    )

    snapshot = load_directory(tmp_path)

    assert sorted(snapshot.deployments) == ["iris-c"]
    assert {(e.name, e.path) for e in snapshot.errors} == {
        ("iris-a", "spec.port"),
        ("iris-b", "spec.port"),
    }
    assert (
        "port 9321 is claimed by the local deployments iris-a, iris-b" in snapshot.errors[0].message
    )


# -- finding 10: logs a person can act on; no-op syncs; the local image -------------------


def test_first_start_without_a_model_is_info_with_what_to_do(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    live.write("iris-local", free_port())
    with caplog.at_level(logging.INFO, logger="aliasflow"):
        live.poll()
        live.registry.add_version("iris", "1")
        live.poll()

    waiting = [r for r in caplog.records if "waits for its model" in r.getMessage()]
    assert waiting, [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.INFO for r in waiting)
    assert "aliasflow promote iris --to champion --version N" in waiting[-1].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_poll_path_says_the_alias_moved(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    live.model("1", "2")
    live.write("iris-local", free_port())
    live.poll()
    live.registry.set_alias("iris", "champion", "2")
    with caplog.at_level(logging.INFO, logger="aliasflow"):
        live.poll()
    assert "alias champion of iris moved to 2: 1 deployment(s) queued" in caplog.text


def test_a_repeated_failure_is_logged_once_then_at_a_growing_pause() -> None:
    now = [0.0]
    repeats = RepeatedFailures(clock=lambda: now[0], first_pause=60, max_pause=3600)
    assert repeats.admit("iris", "RegistryUnavailable: down") == 0
    for _ in range(5):
        now[0] += 10
        assert repeats.admit("iris", "RegistryUnavailable: down") is None
    now[0] += 15  # 65 s after the first line
    assert repeats.admit("iris", "RegistryUnavailable: down") == 5
    now[0] += 100  # the next pause is 120 s
    assert repeats.admit("iris", "RegistryUnavailable: down") is None
    assert repeats.admit("iris", "HealthCheckFailed: other") == 0  # news at once
    repeats.forget("iris")
    assert repeats.admit("iris", "HealthCheckFailed: other") == 0


def test_a_failing_deployment_logs_one_warning_over_many_retries(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    live.model("1")
    busy = RuntimeUnavailableError("port 8080 is busy (test)")
    for _ in range(20):  # every attempt fails the same way, retries included
        live.runtime.fail_next(Operation.CREATE, busy)
    live.write("iris-local", free_port())
    with caplog.at_level(logging.WARNING, logger="aliasflow"):
        for _ in range(4):
            live.controller.sync("iris-local")
            assert live.controller.queue.wait_idle(15)

    assert live.controller.queue.runs["iris-local"] >= 4
    failures = [r for r in caplog.records if "reconcile of iris-local failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert "port 8080 is busy" in failures[0].getMessage()


def test_a_manual_sync_that_changes_nothing_adds_no_history_row(live: Live) -> None:
    live.model("1")
    live.write("iris-local", free_port())
    live.poll()
    serving(live, "iris-local", "1")
    before = live.controller.history("iris-local")

    result = live.cli("sync", "iris-local", token=TOKEN)
    assert result.returncode == 0, result.stderr
    assert live.controller.queue.wait_idle(15)

    assert live.controller.history("iris-local") == before


def test_a_local_target_shows_no_image(live: Live) -> None:
    live.model("1")
    live.write("iris-local", free_port())
    live.poll()
    detail = httpx.get(f"{live.url}/api/deployments/iris-local", trust_env=False).json()
    assert detail["image"] is None
    page = httpx.get(f"{live.url}/deployments/iris-local", trust_env=False).text
    assert "aliasflow-server:latest" not in page.split("Manifest as applied")[0]
    assert "the local target runs" in page


def test_validate_refuses_a_target_kind_the_controller_does_not_enable(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text(
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {name: iris-docker}\n"
        "spec:\n  model: {name: iris, alias: champion}\n  target: {kind: docker}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIASFLOW_")}

    def validate(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aliasflow_cli.main", "validate", str(tmp_path), *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=False,
        )

    refused = validate()
    assert refused.returncode == 1
    assert "targets 'docker', which the controller does not enable (enabled: local)" in (
        refused.stderr
    )
    assert "ALIASFLOW_DOCKER_ENABLED=true" in refused.stderr
    assert validate(ALIASFLOW_DOCKER_ENABLED="true").returncode == 0
    assert validate("--kinds", "local,docker").returncode == 0


# -- finding 8: the CLI covers the story ----------------------------------------------------


def test_history_and_rollback_from_the_cli(live: Live) -> None:
    live.model("1", "2")
    live.write("iris-local", free_port())
    live.poll()
    serving(live, "iris-local", "1")
    live.registry.set_alias("iris", "champion", "2")
    live.poll()
    serving(live, "iris-local", "2")

    table = live.cli("history", "iris-local", "--limit", "1")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:4] == ["STARTED", "(UTC)", "TRIGGER", "VERSION"]
    assert len(lines) == 1
    assert " 2 " in lines[0]
    assert "hotswap" in lines[0]
    rows = json.loads(live.cli("history", "iris-local", "--json").stdout)
    assert [row["model_version"] for row in rows] == ["2", "1"]

    refused = live.cli("rollback", "iris-local")
    assert refused.returncode == 2
    assert "this needs the controller's API token" in refused.stderr
    assert str(live.data_dir.resolve() / "api-token") in refused.stderr
    assert "--token" in refused.stderr
    assert "ALIASFLOW_API_TOKEN" in refused.stderr

    done = live.cli("rollback", "iris-local", token=TOKEN)
    assert done.returncode == 0, done.stderr
    assert "moved back from version 2 to 1" in done.stdout
    assert live.registry.resolve_alias("iris", "champion").version == "1"
    serving(live, "iris-local", "1")

    again = live.cli("rollback", "iris-local", "--to", "2", token=TOKEN)
    assert again.returncode == 0, again.stderr
    assert live.registry.resolve_alias("iris", "champion").version == "2"
    wrong = live.cli("rollback", "iris-local", token="not-it")
    assert wrong.returncode == 2
    assert "refused the API token" in wrong.stderr


def test_sync_without_a_token_and_status_without_a_controller_say_what_to_do(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIASFLOW_")}
    env.update(ALIASFLOW_URL=f"http://127.0.0.1:{free_port()}", ALIASFLOW_DATA_DIR=str(tmp_path))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aliasflow_cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    status = cli("status")
    assert status.returncode == 2
    assert "no controller answers at" in status.stderr
    assert "make up" in status.stderr
    assert "Traceback" not in status.stderr
    sync = cli("sync")
    assert sync.returncode == 2
    assert f"`make up` writes it to {tmp_path.resolve() / 'api-token'}" in sync.stderr


def test_help_is_in_plain_words() -> None:
    from typer.testing import CliRunner

    from aliasflow_cli.main import app

    runner = CliRunner()
    commands = ["", "up", "down", "env", "status", "history", "sync", "rollback", "promote"]
    commands += ["controller", "validate", "train", "serve", "diff", "demo", "schema"]
    for command in commands:
        result = runner.invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, (command, result.output)
        for label in ("<bool>", "<str>", "<int>", "<path>", "<float>", "{"):
            assert label not in result.output, (command, label, result.output)
    assert "'accuracy>=champion'" in runner.invoke(app, ["promote", "--help"]).output


def test_status_is_unknown_until_health_is_known() -> None:
    """Sync `Invalid` is part of the vocabulary every consumer shares."""
    assert Sync("Invalid") is Sync.INVALID
    assert Reason("PortInUse") is Reason.PORT_IN_USE
    assert Health.UNKNOWN.value == "Unknown"


def test_a_port_a_stopped_stack_left_in_time_wait_is_still_ours() -> None:
    """`make up` after `make down` keeps its addresses; only a listener makes a port busy."""
    from aliasflow_cli.stack import port_or_free

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    assert port_or_free(port) == port
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        assert port_or_free(port) != port
