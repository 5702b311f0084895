"""Split, fit, evaluate, and the metric gate: pure computation, no MLflow.

Kept apart from the logging boundary so model tests (quality, label set, determinism)
run without a tracking server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from training.config import EstimatorConfig
from training.data import Dataset
from training.errors import ConfigError, DataError
from training.estimators import build_pipeline


@dataclass(frozen=True)
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


@dataclass(frozen=True)
class GateResult:
    metric: str
    value: float | None
    threshold: float
    passed: bool

    @property
    def message(self) -> str:
        if self.value is None:
            return f"{self.metric} was not computed for this model; cannot pass the gate"
        if self.passed:
            return f"{self.metric} {self.value:.4f} >= {self.threshold:.4f}"
        short = self.threshold - self.value
        return f"{self.metric} {self.value:.4f} < {self.threshold:.4f} (short by {short:.4f})"


def split(dataset: Dataset, test_size: float, seed: int) -> Split:
    """Stratified holdout; refuses a size that leaves a side without every class."""
    n_rows = len(dataset.target)
    n_classes = dataset.target.nunique()
    n_test = math.ceil(test_size * n_rows)
    if n_test < n_classes or n_rows - n_test < n_classes:
        raise DataError(
            f"{dataset.source}: test_size {test_size} on {n_rows} rows gives {n_test} holdout "
            f"and {n_rows - n_test} training rows; each side needs at least {n_classes} "
            "(one per class)"
        )
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.features,
        dataset.target,
        test_size=test_size,
        random_state=seed,
        stratify=dataset.target,
    )
    return Split(x_train, x_test, y_train, y_test)


def fit(estimator: EstimatorConfig, data: Split, seed: int) -> Pipeline:
    pipeline = build_pipeline(estimator.name, estimator.params, seed)
    try:
        pipeline.fit(data.x_train, data.y_train)
    except (ValueError, TypeError) as exc:
        # scikit-learn validates hyper-parameter values at fit time (InvalidParameterError
        # subclasses ValueError); the data itself was checked before, so name the config.
        raise ConfigError(f"estimator {estimator.name} rejected its configuration: {exc}") from exc
    return pipeline


def evaluate(pipeline: Pipeline, x_test: pd.DataFrame, y_test: pd.Series) -> dict[str, float]:
    """accuracy, macro F1 and, where the model has predict_proba, one-vs-rest ROC AUC."""
    predicted = pipeline.predict(x_test)
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1_macro": float(f1_score(y_test, predicted, average="macro", zero_division=0)),
    }
    if hasattr(pipeline, "predict_proba"):
        try:
            proba = pipeline.predict_proba(x_test)
        except AttributeError:  # e.g. SVC(probability=False) exposes the attribute but refuses
            proba = None
        if proba is not None:
            metrics["roc_auc_ovr"] = _roc_auc(y_test, proba, list(pipeline.classes_))
    return metrics


def _roc_auc(y_true: pd.Series, proba: np.ndarray[Any, Any], classes: list[Any]) -> float:
    if len(classes) == 2:
        return float(roc_auc_score(y_true, proba[:, 1]))
    return float(roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))


def check_gate(metrics: dict[str, float], metric: str, threshold: float) -> GateResult:
    """Pure: does the holdout metric meet the configured threshold?"""
    value = metrics.get(metric)
    return GateResult(metric, value, threshold, value is not None and value >= threshold)
