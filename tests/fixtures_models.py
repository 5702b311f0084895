"""Real iris models in a real MLflow server, shared by every test folder and the benchmarks.

Logged once per session: two good versions of one registered model (v1 and v2 differ)
and four bad ones under another name for failed-rollout tests (an artifact that does
not load, NaN output, the wrong output shape, an incompatible signature).
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


def register_iris_models(tracking_uri: str, scratch: Path) -> IrisModels:
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"aliasflow-tests-{uuid.uuid4().hex[:6]}")
    name = f"iris-{uuid.uuid4().hex[:8]}"
    bad_name = f"iris-bad-{uuid.uuid4().hex[:8]}"
    _, v1_run_id = log_iris_pipeline(name, c=1.0)
    log_iris_pipeline(name, c=0.001)

    frame, target = iris_frame()
    signature = infer_signature(frame, target.to_numpy().astype("float64"))
    weights = scratch / "weights.json"
    weights.write_text("this is not json")
    for code, artifacts in (
        ("unloadable_model.py", {"weights": str(weights)}),
        ("nan_model.py", None),
        ("wrong_shape_model.py", None),
    ):
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE / code),
                artifacts=artifacts,
                signature=signature,
                pip_requirements=REQUIREMENTS,
            )
        mlflow.register_model(info.model_uri, bad_name)

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
    mlflow.register_model(info.model_uri, bad_name)
    return IrisModels(tracking_uri, name, bad_name, v1_run_id)


@pytest.fixture(scope="session")
def iris_models(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> IrisModels:
    return register_iris_models(mlflow_server.url, tmp_path_factory.mktemp("bad-model"))
