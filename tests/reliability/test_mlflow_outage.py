"""MLflow stopped for 60 s under a running controller, then restarted on the same port and store.

The test owns its MLflow server (the session one is shared), registers two iris versions
in it, and runs the controller in-process polling every 2 s with webhooks off. While
MLflow is gone nothing may be pruned, deleted or restarted: the same model-server
process keeps answering /predict, and the deployment's sync turns `Unknown` with a
`RegistryUnavailable` reason. A promotion made as soon as MLflow is back is served
within one poll interval plus the swap.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from aliasflow_cli.devstack import MlflowServer, start_mlflow_server
from tests.e2e.harness import serving, start_controller
from tests.fixtures_models import log_iris_pipeline
from tests.reliability.controller_faults import (
    controller_settings,
    predict_version,
    serve_pids_for,
    state_servers,
    wait_until,
    write_manifest,
)

NAME = "iris-outage"
# Ten polls without MLflow: enough to show nothing is touched while it is away.
OUTAGE_SECONDS = 20
POLL_SECONDS = 2.0


@pytest.fixture
def own_mlflow(tmp_path: Path) -> Iterator[list[MlflowServer]]:
    """A list so the test can swap in the restarted server and the fixture still stops it."""
    servers = [start_mlflow_server(tmp_path / "mlflow")]
    yield servers
    servers[-1].stop()


def test_mlflow_outage_touches_nothing_and_converges_after(
    own_mlflow: list[MlflowServer], tmp_path: Path
) -> None:
    server = own_mlflow[0]
    port = int(server.url.rsplit(":", 1)[1])
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server.url)
    try:
        mlflow.set_experiment("outage")
        model = f"iris-{uuid.uuid4().hex[:8]}"
        log_iris_pipeline(model, c=1.0)
        log_iris_pipeline(model, c=0.001)
    finally:
        mlflow.set_tracking_uri(previous_uri)
    client = MlflowClient(server.url)
    client.set_registered_model_alias(model, "champion", "1")

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write_manifest(manifests, NAME, model, "champion")
    data_dir = tmp_path / "data"
    running = start_controller(
        controller_settings(manifests, data_dir, server.url, poll_interval_seconds=POLL_SECONDS)
    )
    failures: list[str] = []
    answered = 0
    stop = threading.Event()
    try:
        row = running.wait_for(NAME, serving("1"))
        endpoint = row["endpoint"]
        pid = state_servers(data_dir)[0][NAME]["pid"]

        def hammer() -> None:
            nonlocal answered
            with httpx.Client(trust_env=False, timeout=10) as http:
                while not stop.is_set():
                    try:
                        response = http.post(
                            f"{endpoint}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
                        )
                        if response.status_code == 200:
                            answered += 1
                        else:
                            failures.append(str(response.status_code))
                    except httpx.HTTPError as exc:
                        failures.append(type(exc).__name__)
                    time.sleep(0.05)

        load = threading.Thread(target=hammer, daemon=True)
        load.start()

        server.stop()
        outage_started = time.monotonic()
        unknown = running.wait_for(NAME, lambda r: r["sync"] == "Unknown", timeout=20)
        assert "RegistryUnavailable" in unknown["message"]
        assert "MLflow" in unknown["message"]
        assert unknown["health"] == "Healthy"  # the workload was not touched
        info = httpx.get(f"{running.url}/api/controller", trust_env=False).json()
        assert info["registry_reachable"] is False
        assert "MLflow" in info["last_poll_error"]
        while time.monotonic() - outage_started < OUTAGE_SECONDS:
            assert state_servers(data_dir)[0][NAME]["pid"] == pid
            time.sleep(2)
        during = running.deployment(NAME)
        assert (during["sync"], during["served_version"]) == ("Unknown", "1")
        assert during["endpoint"] == endpoint

        restarted = start_mlflow_server(tmp_path / "mlflow", port=port)
        own_mlflow.append(restarted)
        promoted = time.monotonic()
        client.set_registered_model_alias(model, "champion", "2")
        wait_until(lambda: predict_version(endpoint) == "2", 30, "v2 served after the outage")
        latency = time.monotonic() - promoted
        assert latency < POLL_SECONDS + 8, f"converged {latency:.1f}s after MLflow returned"
        after = running.wait_for(NAME, serving("2"), timeout=15)
        stop.set()
        load.join(timeout=15)

        assert failures == [], failures[:5]
        assert answered > 100, answered  # it really was answering throughout
        assert after["sync"] == "Synced"
        assert after["endpoint"] == endpoint
        assert serve_pids_for(data_dir, NAME) == [pid]  # same process, no duplicate
        history = running.history(NAME)
        assert [(h["action"], h["result"]) for h in history] == [
            ("hotswap", "Succeeded"),
            ("create", "Succeeded"),
        ]
    finally:
        stop.set()
        running.stop()
        from aliasflow_cli.stack import stop_model_servers_in

        stop_model_servers_in(data_dir)
