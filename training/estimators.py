"""The estimators a config may name, and the pipeline built around them.

A small registry instead of free-form import paths: a config stays reviewable, and an
unknown name or hyper-parameter is caught at validation time instead of mid-run.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

# name -> "module:Class", imported on use so the registry costs nothing to read.
ESTIMATORS: dict[str, str] = {
    "logistic_regression": "sklearn.linear_model:LogisticRegression",
    "random_forest": "sklearn.ensemble:RandomForestClassifier",
    "gradient_boosting": "sklearn.ensemble:GradientBoostingClassifier",
    "hist_gradient_boosting": "sklearn.ensemble:HistGradientBoostingClassifier",
    "extra_trees": "sklearn.ensemble:ExtraTreesClassifier",
    "decision_tree": "sklearn.tree:DecisionTreeClassifier",
    "knn": "sklearn.neighbors:KNeighborsClassifier",
    "svc": "sklearn.svm:SVC",
    # A deliberately weak baseline: useful to prove the metric gate works.
    "dummy": "sklearn.dummy:DummyClassifier",
}


def estimator_class(name: str) -> type[BaseEstimator]:
    """The class registered under `name`; KeyError lists the known names."""
    try:
        target = ESTIMATORS[name]
    except KeyError:
        known = ", ".join(sorted(ESTIMATORS))
        raise KeyError(f"unknown estimator {name!r}; expected one of: {known}") from None
    module_name, _, class_name = target.partition(":")
    cls: type[BaseEstimator] = getattr(importlib.import_module(module_name), class_name)
    return cls


def unknown_params(name: str, params: Mapping[str, Any]) -> list[str]:
    """Hyper-parameter names the estimator does not accept (empty when all are fine)."""
    accepted = estimator_class(name)().get_params(deep=False)
    return sorted(set(params) - set(accepted))


def build_estimator(name: str, params: Mapping[str, Any], seed: int) -> BaseEstimator:
    """The configured estimator, seeded unless the config pins `random_state` itself."""
    estimator = estimator_class(name)(**params)
    if "random_state" in estimator.get_params(deep=False) and "random_state" not in params:
        estimator.set_params(random_state=seed)
    return estimator


def build_pipeline(name: str, params: Mapping[str, Any], seed: int) -> Pipeline:
    """StandardScaler + estimator: the scaler makes linear and distance models behave."""
    return Pipeline([("scaler", StandardScaler()), ("model", build_estimator(name, params, seed))])
