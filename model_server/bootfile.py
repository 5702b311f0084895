"""Boot files: what the server needs to answer before MLflow and scikit-learn load.

Cold start is imports, not work: `import mlflow` and scikit-learn with skops take seconds
on one core, the arithmetic of a scaler + linear model takes microseconds. A boot file
(`aliasflow-boot.npz`, written beside `MLmodel` by `scripts/bake_model.py`, or by a
training job with `write_boot_file`) holds a verified kernel (`kernels.py`), the input
columns, the model's example rows and its signature, so the server is ready once numpy is
imported; MLflow's model object loads right after, in the background (`loading.py`), for
what only it can answer (MLflow's own /invocations handler, probabilities and labels).

A boot file is trusted only with the exact library versions it was verified with
(`VERSIONS`); with any other, the server loads the model the ordinary way. Arrays are
stored as `.npy` entries and the description as a JSON string: no pickle anywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from model_server.kernels import Step
from model_server.signature import Column, InputSpec, kind_of

BOOT_FILE = "aliasflow-boot.npz"
FORMAT = 1
# The kernel was checked bit for bit against scikit-learn on numpy; MLflow and pandas
# decide the column layout the estimator sees under pyfunc.
VERSIONS = ("scikit-learn", "numpy", "mlflow", "pandas")


@dataclass(frozen=True)
class Boot:
    kernel_name: str
    steps: list[Step]
    predict_fn: str
    columns: list[tuple[str, str]]  # (name, MLflow type), in the estimator's order
    classes: list[Any] | None
    extras: list[str]
    stackable: bool
    example: np.ndarray
    signature: dict[str, Any] | None
    run_id: str | None

    def spec(self) -> InputSpec:
        return InputSpec(tuple(Column(n, kind_of(t), t) for n, t in self.columns))


def installed_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in VERSIONS:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def write_boot_file(model_dir: Path) -> Boot | None:
    """Load `model_dir` as the server does and, when it gets a kernel, write its boot file.

    Returns what was written, or None (no kernel: the server loads it the ordinary way).
    """
    from model_server.loading import load_model
    from model_server.predictors import SklearnPredictor
    from model_server.settings import ServerSettings

    (model_dir / BOOT_FILE).unlink(missing_ok=True)
    model = load_model(str(model_dir), ServerSettings(model_uri=str(model_dir)))
    predictor = model.predictor
    if not isinstance(predictor, SklearnPredictor) or predictor.steps is None:
        return None
    assert model.spec is not None
    assert model.example.matrix is not None
    boot = Boot(
        kernel_name=predictor.kernel_name or "",
        steps=predictor.steps,
        predict_fn=model.predict_fn,
        columns=[(c.name, c.mlflow_type) for c in model.spec.columns],
        classes=predictor.classes,
        extras=sorted(predictor.extras),
        stackable=predictor.stackable,
        example=model.example.matrix,
        signature=model.signature,
        run_id=model.run_id,
    )
    meta = {
        "format": FORMAT,
        "versions": installed_versions(),
        "kernel_name": boot.kernel_name,
        "ops": [step.op for step in boot.steps],
        "predict_fn": boot.predict_fn,
        "columns": boot.columns,
        "classes": boot.classes,
        "extras": boot.extras,
        "stackable": boot.stackable,
        "signature": boot.signature,
        "run_id": boot.run_id,
    }
    arrays: dict[str, Any] = {
        f"step{i}.{key}": value
        for i, step in enumerate(boot.steps)
        for key, value in step.arrays.items()
    }
    with open(model_dir / BOOT_FILE, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), example=boot.example, **arrays)
    return boot


def read_boot_file(model_dir: Path) -> Boot | None:
    """The boot file of `model_dir` when there is one made with the installed versions."""
    path = model_dir / BOOT_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != FORMAT or meta.get("versions") != installed_versions():
            return None
        steps = []
        for i, op in enumerate(meta["ops"]):
            prefix = f"step{i}."
            arrays: dict[str, Any] = {
                k.removeprefix(prefix): data[k] for k in data.files if k.startswith(prefix)
            }
            steps.append(Step(op, arrays))
        example = data["example"]
    return Boot(
        kernel_name=meta["kernel_name"],
        steps=steps,
        predict_fn=meta["predict_fn"],
        columns=[(str(n), str(t)) for n, t in meta["columns"]],
        classes=meta["classes"],
        extras=list(meta["extras"]),
        stackable=bool(meta["stackable"]),
        example=example,
        signature=meta["signature"],
        run_id=meta["run_id"],
    )


def log_boot_file(model_id: str, tracking_uri: str | None = None) -> Boot | None:
    """For a training job, right after `log_model`: add the logged model's boot file to
    its artifacts, so every server that downloads a version of it boots without MLflow."""
    import tempfile

    import mlflow.artifacts
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as scratch:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{model_id}", dst_path=scratch, tracking_uri=tracking_uri
            )
        )
        boot = write_boot_file(local)
        if boot is not None:
            MlflowClient(tracking_uri).log_model_artifact(model_id, str(local / BOOT_FILE))
    return boot
