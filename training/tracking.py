"""The one MLflow boundary of the training job: log the run, register when the gate passes.

Everything before this module is pure computation; everything MLflow-shaped is here, so
a failure to reach MLflow surfaces as one TrackingError (exit 3) instead of a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from sklearn.pipeline import Pipeline

from training.config import CsvSource, TrainConfig
from training.data import Dataset
from training.errors import TrackingError
from training.model import GateResult, Split

log = logging.getLogger(__name__)

MODEL_ARTIFACT_NAME = "model"
INPUT_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class RunRecord:
    """What the run produced; `version` is None when the gate kept it unregistered."""

    run_id: str
    experiment_id: str
    logged_model_uri: str
    version: int | None
    tags: dict[str, str]


def git_commit() -> str:
    """HEAD of the working tree, else CI's GITHUB_SHA, else "unknown" (never fails)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("GITHUB_SHA", "unknown")


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail fast: MLflow's own client retries a dead server for minutes before giving up."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        httpx.get(url, timeout=timeout).raise_for_status()
    except httpx.HTTPError as exc:
        raise TrackingError(f"MLflow is not reachable at {tracking_uri} ({exc})") from exc


def run_params(config: TrainConfig, dataset: Dataset, data: Split) -> dict[str, Any]:
    params: dict[str, Any] = {
        "estimator": config.estimator.name,
        "seed": config.seed,
        "test_size": config.test_size,
        "data_source": config.data.kind,
        "gate_metric": config.gate.metric,
        "gate_threshold": config.gate.threshold,
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "n_features": dataset.features.shape[1],
        "features": json.dumps(list(dataset.features.columns)),
    }
    if isinstance(config.data, CsvSource):
        params["data_path"] = str(config.data.path)
        params["target"] = config.data.target
    params.update({f"model.{key}": value for key, value in config.estimator.params.items()})
    return params


def _pip_requirements(serialization_format: str) -> list[str]:
    # Pinning the requirements ourselves skips MLflow's inference, which re-loads the
    # model in a subprocess (seconds per run) to guess what we already know.
    import mlflow.sklearn

    return list(
        mlflow.sklearn.get_default_pip_requirements(
            include_cloudpickle=serialization_format == "cloudpickle",
            include_skops=serialization_format == "skops",
        )
    )


@contextlib.contextmanager
def _mlflow_errors(tracking_uri: str) -> Iterator[None]:
    """Wrap MLflow and transport failures at the edge, so the CLI reports one line."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise TrackingError(f"MLflow refused a request: {exc.message}") from exc
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise TrackingError(f"MLflow request failed at {tracking_uri}: {exc}") from exc


def _skops_trusted_types(pipeline: Pipeline, serialization_format: str) -> list[str] | None:
    """Types skops would refuse to load from the file we are about to write.

    We built this pipeline ourselves from the estimator registry, so the producer vouches
    for exactly these types (e.g. `sklearn.tree._tree.Tree` for forests) and records them
    in the MLmodel; loaders then trust those and nothing else.
    """
    if serialization_format != "skops":
        return None
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))) or None


def log_and_register(
    *,
    tracking_uri: str,
    config: TrainConfig,
    dataset: Dataset,
    data: Split,
    pipeline: Pipeline,
    metrics: dict[str, float],
    gate: GateResult,
) -> RunRecord:
    """Log params, metrics, tags and the model; register and alias it if the gate passed."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    check_reachable(tracking_uri)
    tags = {
        "git_commit": git_commit(),
        "data_hash": dataset.data_hash,
        "config_hash": config.config_hash(),
    }
    # MLflow prints run links on stdout; stdout belongs to the JSON summary.
    with contextlib.redirect_stdout(sys.stderr), _mlflow_errors(tracking_uri):
        mlflow.set_tracking_uri(tracking_uri)
        experiment = mlflow.set_experiment(config.experiment)
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            mlflow.log_params(run_params(config, dataset, data))
            mlflow.log_metrics(metrics)
            mlflow.set_tags({**tags, "gate": "passed" if gate.passed else "failed"})
            signature = infer_signature(data.x_train, pipeline.predict(data.x_train))
            model_info = mlflow.sklearn.log_model(
                sk_model=pipeline,
                name=MODEL_ARTIFACT_NAME,
                signature=signature,
                input_example=data.x_train.head(INPUT_EXAMPLE_ROWS),
                pip_requirements=_pip_requirements(config.serialization_format),
                serialization_format=config.serialization_format,
                skops_trusted_types=_skops_trusted_types(pipeline, config.serialization_format),
            )
            log.info("logged run %s (model %s)", run.info.run_id, model_info.model_uri)
            version: int | None = None
            if gate.passed:
                version_tags = {**tags, **{k: f"{v:.6g}" for k, v in metrics.items()}}
                registered = mlflow.register_model(
                    model_info.model_uri, config.model_name, tags=version_tags
                )
                version = int(registered.version)
                MlflowClient(tracking_uri).set_registered_model_alias(
                    config.model_name, config.alias, str(version)
                )
                log.info(
                    "registered %s version %d, alias %r", config.model_name, version, config.alias
                )
    return RunRecord(
        run_id=run.info.run_id,
        experiment_id=experiment.experiment_id,
        logged_model_uri=model_info.model_uri,
        version=version,
        tags=tags,
    )
