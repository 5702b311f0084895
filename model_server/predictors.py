"""Calling the model: the native scikit-learn estimator when there is one, else pyfunc.

MLflow's pyfunc wrapper converts every request to a DataFrame and re-checks the schema
(~2 ms per call here); we have already checked the input against the signature, so the
scikit-learn path hands a float64 matrix straight to the estimator with sklearn's own
re-validation trimmed (`assume_finite`, `skip_parameter_validation`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from model_server.inputs import Batch


class OutputError(ValueError):
    """The model's output is not one well-formed prediction per input row."""


class Predictor(Protocol):
    flavor: str

    def predict(self, batch: Batch) -> np.ndarray | list[Any]:
        """One prediction per row of `batch`, in order."""
        ...


class SklearnPredictor:
    """A scikit-learn estimator fed a float64 matrix in its fitted column order."""

    flavor = "sklearn"

    def __init__(self, estimator: Any) -> None:
        self._estimator = estimator

    def predict(self, batch: Batch) -> np.ndarray | list[Any]:
        import sklearn

        data: Any = batch.matrix
        if data is None:
            import pandas as pd

            data = pd.DataFrame(batch.rows, columns=list(batch.columns) or None)
        # Our parser already refused NaN/inf and wrong shapes; sklearn need not re-check.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return self._estimator.predict(data)  # type: ignore[no-any-return]


class PyfuncPredictor:
    """Any MLflow model, through `mlflow.pyfunc` with a DataFrame (what it expects)."""

    flavor = "pyfunc"

    def __init__(self, model: Any, dtypes: dict[str, str] | None = None) -> None:
        self._model = model
        self._dtypes = dtypes or {}

    def predict(self, batch: Batch) -> np.ndarray | list[Any]:
        import pandas as pd

        columns = list(batch.columns) or None
        if batch.matrix is not None:
            frame = pd.DataFrame(batch.matrix, columns=columns)
        elif batch.rows and isinstance(batch.rows[0], dict):
            frame = pd.DataFrame(batch.rows)
        else:
            frame = pd.DataFrame(batch.rows, columns=columns)
        if self._dtypes:
            frame = frame.astype({k: v for k, v in self._dtypes.items() if k in frame})
        return normalize_output(self._model.predict(frame))


def normalize_output(raw: Any) -> np.ndarray | list[Any]:
    """pandas/numpy/list output → a numpy array or a list, one entry per row."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas comes with mlflow
        pd = None
    if pd is not None and isinstance(raw, pd.DataFrame):
        if raw.shape[1] == 1:
            return raw.iloc[:, 0].to_numpy()
        return raw.to_dict(orient="records")
    if pd is not None and isinstance(raw, pd.Series):
        return raw.to_numpy()
    if isinstance(raw, np.ndarray):
        return raw
    if isinstance(raw, (list, tuple)):
        return list(raw)
    raise OutputError(f"model returned {type(raw).__name__}, not an array of predictions")


def check_output(output: np.ndarray | list[Any], n_rows: int) -> None:
    """Well-formed means: one prediction per row, at most 2-D, no NaN or inf, no None."""
    if isinstance(output, np.ndarray):
        if output.ndim == 0 or output.ndim > 2:
            raise OutputError(f"model returned a {output.ndim}-D array; expected 1-D or 2-D")
        if output.shape[0] != n_rows:
            raise OutputError(f"model returned {output.shape[0]} predictions for {n_rows} rows")
        if output.dtype.kind in "fc" and not np.isfinite(output).all():
            raise OutputError("model returned NaN or infinite predictions")
        if output.dtype.kind == "O" and any(_bad_scalar(v) for v in output.ravel()):
            raise OutputError("model returned null, NaN or infinite predictions")
        return
    if len(output) != n_rows:
        raise OutputError(f"model returned {len(output)} predictions for {n_rows} rows")
    for value in output:
        values: Sequence[Any] = list(value.values()) if isinstance(value, dict) else [value]
        if any(_bad_scalar(v) for v in values):
            raise OutputError("model returned null, NaN or infinite predictions")


def _bad_scalar(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(float(value))
    return False


def check_output_length(output: np.ndarray | list[Any], n_rows: int) -> None:
    """The cheap part of `check_output`, run on every call: one prediction per row."""
    if isinstance(output, np.ndarray) and output.ndim == 0:
        raise OutputError("model returned a single scalar, not one prediction per row")
    count = len(output)
    if count != n_rows:
        raise OutputError(f"model returned {count} predictions for {n_rows} rows")
