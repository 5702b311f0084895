"""Kernels answer exactly what the estimator answers, or are not used at all."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from model_server.kernels import build, compile_kernel


def _fitted(kind: str) -> tuple[Any, np.ndarray]:
    if kind == "binary":
        x, y = load_breast_cancer(return_X_y=True)
        model: Any = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    elif kind == "multiclass":
        x, y = load_iris(return_X_y=True)
        model = make_pipeline(StandardScaler(), StandardScaler(), LogisticRegression())
    elif kind == "ridge":
        x, y = load_diabetes(return_X_y=True)
        model = make_pipeline(StandardScaler(with_mean=False), Ridge())
    else:
        x, y = load_diabetes(return_X_y=True)
        model = LinearRegression()
    return model.fit(x, y), np.asfortranarray(x)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "ridge", "linear"])
def test_a_kernel_is_bit_identical_to_the_estimator(kind: str) -> None:
    model, x = _fitted(kind)
    steps, name = compile_kernel(model, "predict", x[:2])
    assert steps is not None, name
    kernel = build(steps)
    for rows in (x[:1], x[:7], x):
        rows = np.asfortranarray(rows)
        expected = model.predict(rows)
        assert kernel(rows).tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("model", "predict_fn", "reason"),
    [
        (make_pipeline(MinMaxScaler(), LogisticRegression()), "predict", "step MinMaxScaler"),
        (make_pipeline(StandardScaler(), LogisticRegression()), "predict_proba", "predict_proba"),
    ],
)
def test_anything_else_gets_no_kernel(model: Any, predict_fn: str, reason: str) -> None:
    x, y = load_iris(return_X_y=True)
    model.fit(x, y)
    kernel, why = compile_kernel(model, predict_fn, np.asfortranarray(x[:2]))
    assert kernel is None
    assert reason in why


def test_a_kernel_that_disagrees_is_refused() -> None:
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    model[0].mean_ = model[0].mean_.copy()
    honest = model.predict
    # An estimator whose own answer differs from its fitted arithmetic (as a changed
    # scikit-learn could): the check rows catch it.
    model.predict = lambda rows: honest(rows)[::-1].copy()  # type: ignore[method-assign]
    kernel, why = compile_kernel(model, "predict", np.asfortranarray(x[:50:10]))
    assert kernel is None
    assert "disagrees" in why
