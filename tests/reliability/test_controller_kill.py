"""The controller SIGKILLed at each step of a hot-swap rollout, then restarted.

`aliasflow controller` runs as a real subprocess with one failpoint armed
(`ALIASFLOW_FAILPOINTS`, see `controller/failpoints.py`): after the runtime applied the
new version, after the health gate saw it served, and after the status was written but
before the history row was finished. Each time the controller dies with -9 mid-rollout,
a controller without the failpoint is started on the same data dir and database, and
must converge in one pass with one model server (no orphan, no duplicate) and a history
that shows the killed sync as `Interrupted`, followed by a pass that succeeded.

The three kills share one deployment and one model server, alternating v2/v1, so the
whole test costs one model-server cold start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from tests.fixtures_models import IrisModels
from tests.reliability.controller_faults import (
    ControllerProcess,
    get_json,
    predict_version,
    serve_pids_for,
    start_controller_process,
    state_servers,
    wait_until,
    write_manifest,
)

NAME = "iris-kill"
STEPS = [("after_apply", "2"), ("after_health_gate", "1"), ("before_finish", "2")]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    yield data
    from aliasflow_cli.stack import stop_model_servers_in

    stop_model_servers_in(data)


def _deployment(controller: ControllerProcess) -> dict[str, Any]:
    row: dict[str, Any] = get_json(f"{controller.url}/api/deployments/{NAME}")
    return row


def _serving(controller: ControllerProcess, version: str) -> Any:
    def check() -> dict[str, Any] | None:
        row = _deployment(controller)
        ok = (
            row["sync"] == "Synced"
            and row["health"] == "Healthy"
            and row["served_version"] == version
        )
        return row if ok else None

    return check


def test_sigkill_at_each_rollout_step_loses_nothing(
    iris_models: IrisModels, tmp_path: Path, data_dir: Path
) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    alias = f"kill{uuid.uuid4().hex[:8]}"
    client = MlflowClient(iris_models.tracking_uri)
    write_manifest(manifests, NAME, iris_models.name, alias)
    client.set_registered_model_alias(iris_models.name, alias, "1")

    def start(failpoints: str = "") -> ControllerProcess:
        return start_controller_process(
            manifests,
            data_dir,
            iris_models.tracking_uri,
            tmp_path / "controller.log",
            failpoints=failpoints,
        )

    first = start()
    try:
        row = wait_until(_serving(first, "1"), 90, "first rollout of v1")
    finally:
        first.stop()
    endpoint = row["endpoint"]
    (original_pid,) = serve_pids_for(data_dir, NAME)

    for failpoint, version in STEPS:
        doomed = start(failpoint)
        try:
            wait_until(_serving(doomed, "1" if version == "2" else "2"), 30, "adoption")
            client.set_registered_model_alias(iris_models.name, alias, version)
            code = doomed.process.wait(timeout=60)
        finally:
            doomed.stop()
        assert code == -9, f"{failpoint}: controller exited {code}\n{doomed.log_tail()}"

        survivor = start()
        try:
            row = wait_until(_serving(survivor, version), 30, f"convergence after {failpoint}")
            # The restart pass is queued at start-up, before the first poll can touch it.
            history_url = f"{survivor.url}/api/deployments/{NAME}/history"
            wait_until(
                lambda url=history_url: get_json(url)[0]["trigger"] == "restart",
                15,
                f"the restart pass after {failpoint} in the history",
            )
            history = get_json(history_url)
        finally:
            survivor.stop()

        assert predict_version(endpoint) == version, failpoint
        assert row["endpoint"] == endpoint, f"{failpoint}: the workload was replaced"
        latest, killed = history[0], history[1]
        assert (killed["result"], killed["action"], killed["model_version"]) == (
            "Interrupted",
            "hotswap",
            version,
        ), f"{failpoint}: {history[:3]}"
        assert (latest["result"], latest["trigger"], latest["model_version"]) == (
            "Succeeded",
            "restart",
            version,
        ), f"{failpoint}: {history[:3]}"
        # The killed controller had finished the swap: the restart pass had nothing to do.
        assert latest["action"] == "noop", f"{failpoint}: {latest}"
        assert not any(h["result"] == "Running" for h in history)

        servers, pending = state_servers(data_dir)
        assert list(servers) == [NAME], servers
        assert pending == {}, pending
        assert serve_pids_for(data_dir, NAME) == [original_pid], f"{failpoint}: duplicate server"
