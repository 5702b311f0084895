"""The docker runtime with containers that really serve: the fake engine runs the image as
`aliasflow serve` with the container's env, against a real MLflow server.

One story, one test: every cold start loads a model from MLflow, which costs seconds
on two shared cores.
"""

from __future__ import annotations

from pathlib import Path

import docker
import httpx
import pytest

from aliasflow_cli.devstack import MlflowServer
from controller.core.errors import RolloutRejectedError
from controller.core.types import Action, ActualState, DesiredState, Operation
from controller.reconcile.execute import execute
from controller.reconcile.plan import plan_deployment
from controller.runtimes.docker import DockerRuntime
from tests.controller.runtimes.docker.docker_helpers import ADMIN_TOKEN
from tests.fake_docker import FakeDockerEngine

SERVER_IMAGE = "aliasflow-server:latest"
SECRET = "serving-s3cret-value"
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
ROW = dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


@pytest.fixture(scope="module")
def iris_model(runtime_model: str) -> str:
    """v1 and v2 serve; v3's artifact cannot be read, so its server exits at boot."""
    return runtime_model


def desired(model: str, version: str, spec: str = "5e5e5e5e5e5e5e5e") -> DesiredState:
    return DesiredState(
        name="iris",
        target_kind="docker",
        model_name=model,
        model_version=version,
        run_id=None,
        image=SERVER_IMAGE,
        port=8080,
        cpu=1.0,
        memory_gb=1.0,
        env=(("LOG_LEVEL", "info"),),
        strategy="hotswap",
        health_timeout_seconds=90,
        secret_env=(("MLFLOW_TRACKING_TOKEN", SECRET),),
        spec_hash=spec,
    )


def run(runtime: DockerRuntime, operation: Operation, state: DesiredState) -> ActualState:
    result = execute(runtime, Action(operation, state.name, "test", state))
    assert result is not None
    return result


def predict(endpoint: str) -> httpx.Response:
    return httpx.post(f"{endpoint}/predict", json={"records": [ROW]}, timeout=10)


def test_containers_serve_hot_swap_and_a_broken_version_keeps_the_old_one(
    engine: FakeDockerEngine,
    client: docker.DockerClient,
    data_dir: Path,
    mlflow_server: MlflowServer,
    iris_model: str,
) -> None:
    engine.add_image(SERVER_IMAGE, "serve")
    runtime = DockerRuntime(
        client,
        admin_token=ADMIN_TOKEN,
        tracking_uri=mlflow_server.url,
        data_dir=data_dir,
        stop_timeout_seconds=5,
    )

    created = run(runtime, Operation.CREATE, desired(iris_model, "1"))

    assert (created.ready, created.model_version, created.served_version) == (True, "1", "1")
    endpoint = created.endpoint or ""
    response = predict(endpoint)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1
    assert plan_deployment(desired(iris_model, "1"), runtime.observe("iris")).operation is (
        Operation.NOOP
    )

    # Promotion: the same container loads v2 through /admin/model.
    (container_id,) = engine.containers
    action = plan_deployment(desired(iris_model, "2"), runtime.observe("iris"))
    assert action.operation is Operation.HOTSWAP
    swapped = execute(runtime, action)
    assert swapped is not None
    assert (swapped.model_version, swapped.served_version) == ("2", "2")
    assert swapped.endpoint == endpoint
    assert list(engine.containers) == [container_id]
    assert predict(endpoint).status_code == 200

    # A recreate onto a version that cannot load: the new container exits, the old serves.
    with pytest.raises(RolloutRejectedError, match="exited") as failure:
        run(runtime, Operation.RECREATE, desired(iris_model, "3", spec="6f6f6f6f6f6f6f6f"))
    assert "JSONDecodeError" in str(failure.value)
    assert SECRET not in str(failure.value)
    assert ADMIN_TOKEN not in str(failure.value)
    assert list(engine.containers) == [container_id]
    still = runtime.observe("iris")
    assert still is not None
    assert (still.served_version, still.ready, still.endpoint) == ("2", True, endpoint)
    assert predict(endpoint).status_code == 200

    runtime.delete("iris")
    assert runtime.list_owned() == []
    assert engine.containers == {}
