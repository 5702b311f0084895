"""Session-wide models for the protocol tests, and in-process apps serving them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from aliasflow_cli.devstack import MlflowServer
from tests.model_server.conftest import wait_ready
from tests.model_server.protocols.models import KINDS, ProtocolModels, register_protocol_models


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
