"""Benchmark fixtures: a real MLflow server and one registered iris model version.

Independent of `tests/conftest.py` (the benchmark runs as `pytest -m bench benchmarks`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from aliasflow_cli.devstack import MlflowServer, start_mlflow_server

COLUMNS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


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
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlflow.set_tracking_uri(bench_mlflow.url)
    frame, target = load_iris(return_X_y=True, as_frame=True)
    frame.columns = COLUMNS
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(frame, target)
    name = f"iris-bench-{uuid.uuid4().hex[:6]}"
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            sk_model=pipeline,
            name="model",
            signature=infer_signature(frame, pipeline.predict(frame)),
            input_example=frame.head(3),
            pip_requirements=["mlflow", "scikit-learn", "numpy"],
        )
    version = mlflow.register_model(info.model_uri, name).version
    return BenchModel(bench_mlflow.url, name, str(version))
