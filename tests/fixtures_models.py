"""Real iris models in a real MLflow server, shared by every test folder and the benchmarks.

Logged once per session: two good versions of one registered model (v1 and v2 differ)
and four bad ones under another name for failed-rollout tests (an artifact that does
not load, NaN output, the wrong output shape, an incompatible signature).

`bad_versions` (only for the tests that ask for it) puts good and bad versions in ONE
registered model, as a real alias would see them: a good v1, five bad versions (the four
above plus one slower to load than any health timeout), then a good v7.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aliasflow_cli.devstack import MlflowServer

COLUMNS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
MODEL_CODE = Path(__file__).parent / "model_code"
# Explicit requirements: MLflow would otherwise infer them in a subprocess per model (~5 s).
REQUIREMENTS = ["mlflow", "scikit-learn", "numpy"]


@dataclass(frozen=True)
class IrisModels:
    tracking_uri: str
    name: str
    bad_name: str
    v1_run_id: str

    def uri(self, version: int) -> str:
        return f"models:/{self.name}/{version}"

    @property
    def unloadable(self) -> str:
        return f"models:/{self.bad_name}/1"

    @property
    def nan(self) -> str:
        return f"models:/{self.bad_name}/2"

    @property
    def wrong_shape(self) -> str:
        return f"models:/{self.bad_name}/3"

    @property
    def incompatible(self) -> str:
        return f"models:/{self.bad_name}/4"


@dataclass(frozen=True)
class BadVersions:
    """One registered model: v1 good, v2-v6 bad (see `BAD_VERSIONS`), v7 good."""

    tracking_uri: str
    name: str
    slow_load_seconds: float

    def uri(self, version: int) -> str:
        return f"models:/{self.name}/{version}"


# Version -> what is wrong with it, in registration order (v1 and v7 are good).
BAD_VERSIONS = {
    "2": "unloadable",
    "3": "nan",
    "4": "wrong_shape",
    "5": "incompatible",
    "6": "slow",
}
SLOW_LOAD_SECONDS = 20.0


def iris_frame() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    frame, target = load_iris(return_X_y=True, as_frame=True)
    frame.columns = COLUMNS
    return frame, target


def log_iris_pipeline(name: str, c: float = 1.0) -> tuple[str, str]:
    """Train the training job's recipe, log and register it; returns (version, run id)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = iris_frame()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))
    pipeline.fit(frame, target)
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", float(pipeline.score(frame, target)))
        mlflow.set_tag("git_commit", "0123abc")
        info = mlflow.sklearn.log_model(
            sk_model=pipeline,
            name="model",
            signature=infer_signature(frame, pipeline.predict(frame)),
            input_example=frame.head(3),
            pip_requirements=REQUIREMENTS,
        )
    version = mlflow.register_model(info.model_uri, name).version
    return str(version), run.info.run_id


def _start_logging(tracking_uri: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"aliasflow-tests-{uuid.uuid4().hex[:6]}")


def _log_pyfunc(
    name: str,
    code: str,
    artifacts: dict[str, str] | None = None,
    model_config: dict[str, Any] | None = None,
) -> str:
    """Register a models-from-code pyfunc (`tests/model_code/<code>`) with iris's signature;
    returns the id of the run that logged it."""
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    frame, target = iris_frame()
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE / code),
            artifacts=artifacts,
            model_config=model_config,
            signature=infer_signature(frame, target.to_numpy().astype("float64")),
            pip_requirements=REQUIREMENTS,
        )
    mlflow.register_model(info.model_uri, name)
    return str(run.info.run_id)


def _log_unloadable(name: str, scratch: Path) -> None:
    weights = scratch / "weights.json"
    weights.write_text("this is not json")
    _log_pyfunc(name, "unloadable_model.py", artifacts={"weights": str(weights)})


def _log_incompatible(name: str) -> None:
    """A good model on two differently named columns: no served iris input fits it."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame, target = iris_frame()
    other = frame[["sepal_length_cm", "sepal_width_cm"]].rename(
        columns={"sepal_length_cm": "length", "sepal_width_cm": "width"}
    )
    model = LogisticRegression(max_iter=500).fit(other, target)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            sk_model=model,
            name="model",
            signature=infer_signature(other, model.predict(other)),
            input_example=other.head(2),
            pip_requirements=REQUIREMENTS,
        )
    mlflow.register_model(info.model_uri, name)


def _log_bad(name: str, scratch: Path) -> None:
    """Register the four bad kinds, in the order `IrisModels`' properties expect."""
    _log_unloadable(name, scratch)
    _log_pyfunc(name, "nan_model.py")
    _log_pyfunc(name, "wrong_shape_model.py")
    _log_incompatible(name)


def register_iris_models(tracking_uri: str, scratch: Path) -> IrisModels:
    _start_logging(tracking_uri)
    name = f"iris-{uuid.uuid4().hex[:8]}"
    bad_name = f"iris-bad-{uuid.uuid4().hex[:8]}"
    _, v1_run_id = log_iris_pipeline(name, c=1.0)
    log_iris_pipeline(name, c=0.001)
    _log_bad(bad_name, scratch)
    return IrisModels(tracking_uri, name, bad_name, v1_run_id)


def register_bad_versions(
    tracking_uri: str, scratch: Path, slow_seconds: float = SLOW_LOAD_SECONDS
) -> BadVersions:
    _start_logging(tracking_uri)
    name = f"iris-mixed-{uuid.uuid4().hex[:8]}"
    log_iris_pipeline(name, c=1.0)  # v1
    _log_bad(name, scratch)  # v2-v5
    _log_pyfunc(name, "slow_model.py", model_config={"load_seconds": slow_seconds})  # v6
    log_iris_pipeline(name, c=0.001)  # v7
    return BadVersions(tracking_uri, name, slow_seconds)


@pytest.fixture(scope="session")
def iris_models(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> IrisModels:
    return register_iris_models(mlflow_server.url, tmp_path_factory.mktemp("bad-model"))


@pytest.fixture(scope="session")
def bad_versions(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> BadVersions:
    return register_bad_versions(mlflow_server.url, tmp_path_factory.mktemp("bad-versions"))


@pytest.fixture(scope="session")
def runtime_model(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """For runtime tests: one registered model, v1 and v2 good, v3 fails to load."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    name = f"iris-runtime-{uuid.uuid4().hex[:8]}"
    log_iris_pipeline(name, c=1.0)
    log_iris_pipeline(name, c=0.01)
    _log_unloadable(name, tmp_path_factory.mktemp("runtime-model"))
    return name


@dataclass(frozen=True)
class MarkerModel:
    """A registered pyfunc (`model_code/marker_model.py`) whose `load_context` writes the
    file named by `ALIASFLOW_TEST_MARKER`, and a downloaded copy of it (`local_dir`)."""

    tracking_uri: str
    name: str
    run_id: str
    local_dir: Path

    def uri(self, version: int = 1) -> str:
        return f"models:/{self.name}/{version}"


def register_marker_model(tracking_uri: str, scratch: Path) -> MarkerModel:
    import mlflow.artifacts

    _start_logging(tracking_uri)
    name = f"marker-{uuid.uuid4().hex[:8]}"
    run_id = _log_pyfunc(name, "marker_model.py")
    # Downloading does not import the model's code: only loading does.
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/1", dst_path=str(scratch), tracking_uri=tracking_uri
    )
    return MarkerModel(tracking_uri, name, run_id, Path(local))


@pytest.fixture(scope="session")
def marker_model(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> MarkerModel:
    return register_marker_model(mlflow_server.url, tmp_path_factory.mktemp("marker-model"))


@dataclass(frozen=True)
class PromotionModels:
    """One registered model for watched promotions: every version loads and passes its
    warm-up, and each bad one misbehaves only under traffic."""

    tracking_uri: str
    name: str
    good: str  # v1: the training recipe
    better: str  # v2: the recipe again (a good promotion)
    slow: str  # v3: answers in `SLOW_PREDICT_SECONDS`
    flaky: str  # v4: fails on long petals (about a third of iris)
    shifted: str  # v5: predicts one class for everything
    worse: str  # v6: the recipe with heavy regularisation: lower accuracy


SLOW_PREDICT_SECONDS = 0.4


def register_promotion_models(tracking_uri: str) -> PromotionModels:
    _start_logging(tracking_uri)
    name = f"iris-watch-{uuid.uuid4().hex[:8]}"
    log_iris_pipeline(name, c=1.0)
    log_iris_pipeline(name, c=0.8)
    _log_pyfunc(
        name, "slow_predict_model.py", model_config={"predict_seconds": SLOW_PREDICT_SECONDS}
    )
    _log_pyfunc(name, "flaky_model.py")
    _log_pyfunc(name, "constant_model.py")
    log_iris_pipeline(name, c=0.0005)
    return PromotionModels(tracking_uri, name, "1", "2", "3", "4", "5", "6")


@pytest.fixture(scope="session")
def promotion_models(mlflow_server: MlflowServer) -> PromotionModels:
    return register_promotion_models(mlflow_server.url)
