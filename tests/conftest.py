"""Fixtures shared by every test: a real MLflow server on a free loopback port.

One server per test session (sqlite store, one worker, webhooks allowed to loopback);
tests that register models use unique model names so they never see each other's state.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aliasflow_cli.devstack import MlflowServer, start_mlflow_server
from tests.fixtures_models import (  # noqa: F401 - fixtures for every folder
    iris_models,
    marker_model,
    promotion_models,
    runtime_model,
)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(autouse=True)
def _restore_mlflow_tracking_uri() -> Iterator[None]:
    """`mlflow.set_tracking_uri` is process-wide (it even sets the env var): undo it."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules and before is not None:
        sys.modules["mlflow"].set_tracking_uri(before)
    elif before is not None:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture
def tracking_uri(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    return mlflow_server.url


@pytest.fixture
def unique_model_name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
