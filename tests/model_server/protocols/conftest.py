"""Session-wide models for the protocol tests, and in-process apps serving them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from aliasflow_cli.devstack import MlflowServer
from controller.runtimes.netutil import free_port, stop_process, wait_until_ready
from tests.model_server.conftest import ServerProcess, start_server, wait_ready
from tests.model_server.protocols.models import KINDS, ProtocolModels, register_protocol_models
from tests.model_server.protocols.reference_venv import ensure_reference_venv


@pytest.fixture(scope="session")
def protocol_models(mlflow_server: MlflowServer) -> ProtocolModels:
    return register_protocol_models(mlflow_server.url)


@pytest.fixture(scope="module")
def kind_clients(protocol_models: ProtocolModels) -> Iterator[dict[str, TestClient]]:
    """One in-process app per model kind (lifespan running, model loaded)."""
    from model_server.app import create_app
    from model_server.settings import ServerSettings

    clients: dict[str, TestClient] = {}
    try:
        for kind in KINDS:
            settings = ServerSettings(
                model_uri=protocol_models.uri(kind), tracking_uri=protocol_models.tracking_uri
            )
            client = TestClient(create_app(settings), raise_server_exceptions=False)
            client.__enter__()
            clients[kind] = client
            wait_ready(client)
        yield clients
    finally:
        for client in clients.values():
            client.__exit__(None, None, None)


@dataclass
class ServedPair:
    """The same model version behind `aliasflow serve` and `mlflow models serve`."""

    ours: ServerProcess
    mlflow_url: str
    kind: str


@pytest.fixture(scope="session")
def served_pair(
    protocol_models: ProtocolModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedPair]:
    """Both servers on `cancer_proba` (probabilities: a float answer is the hardest to
    match bit for bit). `mlflow models serve` takes ~10 s to start: once per session."""
    kind = "cancer_proba"
    logs = tmp_path_factory.mktemp("served-pair")
    port = free_port()
    # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    handle = open(logs / "mlflow-serve.log", "wb")  # noqa: SIM115 - lives with the process
    mlflow_process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "--env-manager",
            "local",
            "-m",
            protocol_models.uri(kind),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": protocol_models.tracking_uri, "PATH": path},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ours: ServerProcess | None = None
    try:
        ours = start_server(
            {
                "MODEL_URI": protocol_models.uri(kind),
                "MLFLOW_TRACKING_URI": protocol_models.tracking_uri,
            },
            logs / "ours.log",
        )
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(f"{url}/ping", timeout=120, process=mlflow_process)
        yield ServedPair(ours, url, kind)
    finally:
        if ours is not None:
            stop_process(ours.process)
        stop_process(mlflow_process)


@dataclass
class MLServer:
    url: str
    model_name: str


@pytest.fixture(scope="session")
def mlserver(
    protocol_models: ProtocolModels,
    served_pair: ServedPair,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MLServer]:
    """MLServer + mlserver-mlflow serving the same version as `served_pair` (loopback)."""
    python = ensure_reference_venv()
    root = tmp_path_factory.mktemp("mlserver")
    name = protocol_models.names[served_pair.kind]
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    (root / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": 0,
            }
        )
    )
    model_dir = root / "model"
    model_dir.mkdir()
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": name,
                "implementation": "mlserver_mlflow.MLflowRuntime",
                "parameters": {"uri": protocol_models.uri(served_pair.kind), "version": "1"},
            }
        )
    )
    handle = open(root / "mlserver.log", "wb")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(
        [str(python), "-m", "mlserver.cli.main", "start", str(root)],
        env={**os.environ, "MLFLOW_TRACKING_URI": protocol_models.tracking_uri},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until_ready(f"{url}/v2/models/{name}/ready", timeout=180, process=process)
        yield MLServer(url, name)
    finally:
        stop_process(process)
