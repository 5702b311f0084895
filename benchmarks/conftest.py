"""Benchmark fixtures: a real MLflow server and one registered iris model version.

Independent of `tests/conftest.py` (the benchmark runs as `pytest -m bench benchmarks`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from aliasflow_cli.devstack import MlflowServer, start_mlflow_server
from tests.fixtures_models import log_iris_pipeline


@dataclass(frozen=True)
class BenchModel:
    tracking_uri: str
    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@pytest.fixture(scope="session")
def bench_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"), timeout=180)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bench_model(bench_mlflow: MlflowServer) -> BenchModel:
    """The same recipe as training: scaler + logistic regression on snake_case iris."""
    import mlflow

    mlflow.set_tracking_uri(bench_mlflow.url)
    name = f"iris-bench-{uuid.uuid4().hex[:6]}"
    version, _ = log_iris_pipeline(name)
    return BenchModel(bench_mlflow.url, name, str(version))
