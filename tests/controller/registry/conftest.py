"""Registry test helpers: model versions in the real MLflow server, env hygiene."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mlflow import MlflowClient

from controller.registry.mlflow_registry import FAST_FAIL_ENV


@pytest.fixture(autouse=True)
def _fast_fail_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """MlflowRegistry defaults these process-wide; pin them per test so nothing leaks."""
    for key, value in FAST_FAIL_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def mlflow_client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@pytest.fixture
def make_versions(mlflow_client: MlflowClient) -> Callable[[str, int], list[str]]:
    """Register a model with `count` versions, all from one run (with a metric).

    Registry tests need no artifacts, and every MLflow call costs on a busy 2-core box.
    """

    def make(name: str, count: int) -> list[str]:
        mlflow_client.create_registered_model(name)
        experiment_id = mlflow_client.create_experiment(f"exp-{name}")
        run = mlflow_client.create_run(experiment_id)
        mlflow_client.log_metric(run.info.run_id, "accuracy", 0.9)
        versions = []
        for index in range(count):
            created = mlflow_client.create_model_version(
                name,
                source=f"{run.info.artifact_uri}/model-{index}",
                run_id=run.info.run_id,
                await_creation_for=0,
            )
            versions.append(str(created.version))
        return versions

    return make
