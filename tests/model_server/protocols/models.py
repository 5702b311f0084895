"""MLflow models of every kind the server must answer for exactly as MLflow does.

Registered once per session (`protocol_models`) and shared by the differential tests,
the client tests and the benchmarks. Each kind exercises one rule of `loading.py`:

- `cancer` / `cancer_proba`: a 30-feature scikit-learn pipeline (breast cancer data that
  scikit-learn ships), logged with `predict` and with `pyfunc_predict_fn="predict_proba"`:
  native path, answers class labels and probabilities respectively;
- `iris_long`: integer (`long`) columns, native;
- `iris_float32`: `float` columns MLflow casts to 32 bits first: pyfunc fallback;
- `strings`: a string column one-hot encoded: pyfunc fallback;
- `params`: a signature with params: pyfunc fallback (MLflow applies the params);
- `frame`: a python_function model answering a DataFrame (records in MLflow's JSON).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures_models import REQUIREMENTS, iris_frame

MODEL_CODE = Path(__file__).parent / "model_code"
KINDS = ("cancer", "cancer_proba", "iris_long", "iris_float32", "strings", "params", "frame")
# The kinds served natively; the others must say why not in /metadata.
NATIVE = frozenset({"cancer", "cancer_proba", "iris_long"})


@dataclass(frozen=True)
class ProtocolModels:
    tracking_uri: str
    names: dict[str, str]  # kind -> registered model name (version 1 each)

    def uri(self, kind: str) -> str:
        return f"models:/{self.names[kind]}/1"


def cancer_frame() -> tuple[Any, Any]:
    from sklearn.datasets import load_breast_cancer

    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    return frame, target


def example_frame(kind: str, rows: int = 5) -> Any:
    """Rows of the model's own training data, as a DataFrame with its signature's columns."""
    return _DATA[kind]()[0].head(rows)


def _iris_long() -> tuple[Any, Any]:
    frame, target = iris_frame()
    return (frame * 10).round().astype("int64"), target


def _iris_float32() -> tuple[Any, Any]:
    frame, target = iris_frame()
    return frame.astype("float32"), target


def _strings() -> tuple[Any, Any]:
    frame, target = iris_frame()
    frame = frame.copy()
    frame["colour"] = ["red", "green", "blue"] * (len(frame) // 3)
    return frame, target


_DATA = {
    "cancer": cancer_frame,
    "cancer_proba": cancer_frame,
    "iris_long": _iris_long,
    "iris_float32": _iris_float32,
    "strings": _strings,
    "params": iris_frame,
    "frame": iris_frame,
}


def log_cancer_pipeline(name: str, predict_fn: str = "predict", boot_file: bool = False) -> str:
    """StandardScaler + LogisticRegression on the 30 breast-cancer features; the version.
    `boot_file` adds the boot file as a training job would (`bootfile.log_boot_file`)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = cancer_frame()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(frame, target)
    output = getattr(pipeline, predict_fn)(frame)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            sk_model=pipeline,
            name="model",
            signature=infer_signature(frame, output),
            input_example=frame.head(2),
            pyfunc_predict_fn=predict_fn,
            pip_requirements=REQUIREMENTS,
        )
    if boot_file:
        from model_server.bootfile import log_boot_file

        assert log_boot_file(info.model_id, mlflow.get_tracking_uri()) is not None
    return str(mlflow.register_model(info.model_uri, name).version)


def _log_sklearn(name: str, kind: str) -> None:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, target = _DATA[kind]()
    if kind == "strings":
        numeric = [c for c in frame.columns if c != "colour"]
        model = make_pipeline(
            make_column_transformer(
                (OneHotEncoder(handle_unknown="ignore"), ["colour"]), (StandardScaler(), numeric)
            ),
            LogisticRegression(max_iter=500),
        )
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(frame, target)
    params = {"threshold": 0.5} if kind == "params" else None
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            sk_model=model,
            name="model",
            signature=infer_signature(frame, model.predict(frame), params=params),
            input_example=frame.head(2),
            pip_requirements=REQUIREMENTS,
        )
    mlflow.register_model(info.model_uri, name)


def _log_frame(name: str) -> None:
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    frame, _ = iris_frame()
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE / "frame_model.py"),
            signature=infer_signature(frame),
            input_example=frame.head(2),
            pip_requirements=[*REQUIREMENTS, "pandas"],
        )
    mlflow.register_model(info.model_uri, name)


def register_protocol_models(tracking_uri: str) -> ProtocolModels:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"aliasflow-protocols-{uuid.uuid4().hex[:6]}")
    suffix = uuid.uuid4().hex[:6]
    names = {kind: f"{kind.replace('_', '-')}-{suffix}" for kind in KINDS}
    log_cancer_pipeline(names["cancer"])
    log_cancer_pipeline(names["cancer_proba"], "predict_proba")
    for kind in ("iris_long", "iris_float32", "strings", "params"):
        _log_sklearn(names[kind], kind)
    _log_frame(names["frame"])
    return ProtocolModels(tracking_uri, names)
