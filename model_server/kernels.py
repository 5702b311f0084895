"""Bit-exact shortcuts for the commonest scikit-learn pipelines: scalers + a linear model.

On a one-row request, scikit-learn's own `Pipeline.predict` spends ~200 µs re-validating
an input we have already checked (`validate_data` per step: dataframe-library probes,
feature-name checks, `check_is_fitted`), against ~5 µs of arithmetic. For a pipeline made
only of `StandardScaler` steps and a `LogisticRegression`, `LinearRegression` or `Ridge`
called through `predict`, a kernel here does that arithmetic with the same numpy
operations, in the same order, on the same memory layout as scikit-learn 1.x
(`StandardScaler.transform`, `LinearClassifierMixin.decision_function`/`predict`,
`LinearModel._decision_function`): `X - mean_`, `/ scale_`, `X @ coef_.T + intercept_`,
`> 0` or argmax, `classes_.take`.

A kernel is never trusted by construction alone: `compile_kernel` runs it beside the
estimator on the model's input example and on rows spread around it, and keeps it only
when every answer is identical, bit for bit; any other estimator, or any difference
(another scikit-learn version may compute otherwise), and the estimator itself is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Kernel = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Step:
    """One operation of a kernel and the fitted arrays it needs (what a boot file stores).

    op: "scale" (arrays "mean" and/or "scale"), "classify" ("coef_t", "intercept",
    "classes") or "regress" ("coef_t", "intercept").
    """

    op: str
    arrays: dict[str, np.ndarray]


def compile_kernel(
    estimator: Any, predict_fn: str, example: np.ndarray
) -> tuple[list[Step] | None, str]:
    """(steps, description) when a kernel reproduces `estimator.<predict_fn>` exactly here;
    (None, why not) otherwise. `example` is a checked float64 matrix of real inputs."""
    if predict_fn != "predict":
        return None, f"no kernel for {predict_fn}"
    estimators = _estimators(estimator)
    if estimators is None:
        return None, f"no kernel for {type(estimator).__name__}"
    *transforms, final = estimators
    steps: list[Step] = []
    for transform in transforms:
        scale = _standard_scaler(transform)
        if scale is None:
            return None, f"no kernel for step {type(transform).__name__}"
        steps.append(scale)
    head = _linear(final)
    if head is None:
        return None, f"no kernel for {type(final).__name__}"
    steps.append(head)
    if not agrees(build(steps), estimator, example):
        return None, "kernel disagrees with the estimator on the check rows"
    return steps, ">".join(type(e).__name__ for e in estimators)


def build(steps: list[Step]) -> Kernel:
    """The kernel function for `steps` (from `compile_kernel` or a boot file)."""
    parts = [_OPS[step.op](step.arrays) for step in steps]

    def run(x: np.ndarray) -> np.ndarray:
        for part in parts:
            x = part(x)
        return x

    return run


def _estimators(estimator: Any) -> list[Any] | None:
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        steps = [s for _, s in estimator.steps if s is not None and s != "passthrough"]
        return steps or None
    return [estimator]


def _standard_scaler(step: Any) -> Step | None:
    from sklearn.preprocessing import StandardScaler

    if type(step) is not StandardScaler:
        return None
    arrays = {}
    if step.with_mean:
        arrays["mean"] = step.mean_
    if step.with_std:
        arrays["scale"] = step.scale_
    return Step("scale", arrays)


def _linear(final: Any) -> Step | None:
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

    if type(final) is LogisticRegression:
        arrays = {"coef_t": final.coef_.T, "intercept": final.intercept_}
        return Step("classify", {**arrays, "classes": final.classes_})
    if type(final) in (LinearRegression, Ridge):
        coef = final.coef_
        return Step(
            "regress",
            {
                "coef_t": coef if coef.ndim == 1 else coef.T,
                "intercept": np.asarray(final.intercept_),
            },
        )
    return None


def _scale(arrays: dict[str, np.ndarray]) -> Kernel:
    mean, scale = arrays.get("mean"), arrays.get("scale")

    def transform(x: np.ndarray) -> np.ndarray:
        x = x.copy(order="K")  # validate_data(copy=True) keeps the layout
        if mean is not None:
            x -= mean
        if scale is not None:
            x /= scale
        return x

    return transform


def _classify(arrays: dict[str, np.ndarray]) -> Kernel:
    coef_t, intercept, classes = arrays["coef_t"], arrays["intercept"], arrays["classes"]

    def classify(x: np.ndarray) -> np.ndarray:
        scores = x @ coef_t + intercept
        if scores.shape[1] == 1:
            indices = (scores.reshape(-1) > 0).astype(np.intp)
        else:
            indices = scores.argmax(axis=1)
        return np.asarray(classes.take(indices, axis=0))

    return classify


def _regress(arrays: dict[str, np.ndarray]) -> Kernel:
    coef_t, intercept = arrays["coef_t"], arrays["intercept"]

    def regress(x: np.ndarray) -> np.ndarray:
        return x @ coef_t + intercept  # type: ignore[no-any-return]

    return regress


_OPS: dict[str, Callable[[dict[str, np.ndarray]], Kernel]] = {
    "scale": _scale,
    "classify": _classify,
    "regress": _regress,
}


def agrees(kernel: Kernel, estimator: Any, example: np.ndarray) -> bool:
    """The kernel's answers equal the estimator's, bit for bit, on `example` and on 64
    rows spread around it."""
    rng = np.random.default_rng(0)
    spread = np.abs(example).mean(axis=0) + 1.0
    noise = rng.normal(size=(64, example.shape[1])) * spread
    for rows in (example, example[:1], example.mean(axis=0) + noise):
        rows = np.asfortranarray(rows)
        expected = np.asarray(estimator.predict(rows))
        got = kernel(rows)
        if got.dtype != expected.dtype or got.shape != expected.shape:
            return False
        if got.tobytes() != expected.tobytes():
            return False
    return True
