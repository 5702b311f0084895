"""Calling the model: the native scikit-learn estimator when that gives MLflow's answer,
else MLflow's pyfunc.

MLflow's pyfunc wrapper converts every request to a DataFrame and re-checks the schema
(~2 ms per call here); we have already checked the input against the signature, so the
scikit-learn path hands a float64 matrix straight to the estimator's `pyfunc_predict_fn`
(what `mlflow.pyfunc.load_model(...).predict` calls) with sklearn's own re-validation
trimmed (`assume_finite`, `skip_parameter_validation`). `loading.py` decides when that
is provably the same answer; every other model goes through pyfunc itself.

Outputs are made JSON-able exactly as MLflow's scoring server does
(`mlflow.utils.proto_json_utils._get_jsonable_obj`): arrays by `tolist()`, a DataFrame
or Series as a list of records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from model_server.inputs import Batch
from model_server.kernels import Step, build

if TYPE_CHECKING:
    from model_server.bootfile import Boot

# Extra outputs a client may ask for beside MLflow's predictions (`/predict` "outputs",
# V2 requested outputs).
PROBABILITIES = "probabilities"
LABELS = "labels"
EXTRA_OUTPUTS = (PROBABILITIES, LABELS)

Output = np.ndarray | list[Any]


class OutputError(ValueError):
    """The model's output is not one well-formed prediction per input row."""


class Predictor(Protocol):
    flavor: str
    # The extra outputs this model can give ("probabilities", "labels"); empty for most.
    extras: frozenset[str]
    classes: list[Any] | None
    kernel_name: str | None  # the kernels.py shortcut in use, if any
    # Whether requests may be stacked into one call without changing any answer (batching.py).
    stackable: bool

    def predict(self, batch: Batch) -> Output:
        """MLflow's predictions for `batch`, one per row, in order."""
        ...

    def predict_extras(self, batch: Batch, names: frozenset[str]) -> dict[str, np.ndarray]:
        """The requested extra outputs (a subset of `extras`) for `batch`."""
        ...

    def runs_inline(self, extras: frozenset[str]) -> bool:
        """Whether a call is cheap enough, by kind, to run on the event loop (batching.py
        also checks the measured cost); pyfunc models never are."""
        ...


class SklearnPredictor:
    """A scikit-learn estimator fed a float64 matrix in its fitted column order."""

    flavor = "sklearn"

    def __init__(
        self,
        estimator: Any,
        predict_fn: str = "predict",
        steps: list[Step] | None = None,
        kernel_name: str | None = None,
    ) -> None:
        self._estimator = estimator
        self._predict = getattr(estimator, predict_fn)
        # kernels.py: the same arithmetic without re-validation (verified before we get here)
        self.steps = steps
        self._kernel = build(steps) if steps is not None else None
        self.kernel_name = kernel_name
        self.predict_fn = predict_fn
        self._proba = getattr(estimator, "predict_proba", None)
        classes = getattr(estimator, "classes_", None)
        self.classes = None if classes is None else np.asarray(classes).tolist()
        self.extras = (
            frozenset(EXTRA_OUTPUTS)
            if self._proba is not None and classes is not None
            else frozenset()
        )
        # Stacking rows changes float results in the last bits (BLAS takes another kernel
        # for a matrix than for one row), so only class labels, which such a difference
        # cannot move short of an exact tie, are computed for several requests at once.
        from sklearn.base import is_classifier

        self.stackable = predict_fn == "predict" and is_classifier(estimator)

    def _data(self, batch: Batch) -> Any:
        if batch.matrix is not None:
            # Column-major, as the DataFrame MLflow's schema enforcement hands the
            # estimator: the same memory layout takes the same BLAS path, so the same bits.
            return np.asfortranarray(batch.matrix)
        import pandas as pd

        return pd.DataFrame(batch.rows, columns=list(batch.columns) or None)

    def predict(self, batch: Batch) -> Output:
        import sklearn

        data = self._data(batch)
        if self._kernel is not None and batch.matrix is not None:
            return self._kernel(data)
        # Our parser already refused NaN/inf and wrong shapes; sklearn need not re-check.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return normalize_output(self._predict(data))

    def runs_inline(self, extras: frozenset[str]) -> bool:
        return True

    def predict_extras(self, batch: Batch, names: frozenset[str]) -> dict[str, np.ndarray]:
        import sklearn

        data = self._data(batch)
        out: dict[str, np.ndarray] = {}
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            if PROBABILITIES in names:
                out[PROBABILITIES] = np.asarray(self._proba(data))  # type: ignore[misc]
            if LABELS in names:
                # The estimator's own `predict`, not argmax(proba): for some classifiers
                # (SVC with probability=True) the two can disagree.
                out[LABELS] = np.asarray(self._estimator.predict(data))
        return out


class PyfuncPredictor:
    """Any MLflow model, through `mlflow.pyfunc` with a DataFrame (what it expects)."""

    flavor = "pyfunc"
    kernel_name: str | None = None
    extras: frozenset[str] = frozenset()
    classes: list[Any] | None = None
    # MLflow calls a pyfunc model once per request; rows of two requests in one call
    # may not give the same answers (a model may normalise over its input, for one).
    stackable = False

    def __init__(self, model: Any, dtypes: dict[str, str] | None = None) -> None:
        self._model = model
        self._dtypes = dtypes or {}

    def predict(self, batch: Batch) -> Output:
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

    def predict_extras(self, batch: Batch, names: frozenset[str]) -> dict[str, np.ndarray]:
        return {}

    def runs_inline(self, extras: frozenset[str]) -> bool:
        return False


class BootPredictor:
    """The kernel of a boot file, serving while MLflow's model loads in the background.

    Extra outputs need the estimator: they wait for that load (in the predict thread,
    never on the loop). Once it is done, the model's predictor is the full one.
    """

    flavor = "sklearn"

    def __init__(self, boot: Boot, full: Callable[[], Predictor]) -> None:
        self._kernel = build(boot.steps)
        self._full = full  # blocks until the background load is done
        self.kernel_name: str | None = boot.kernel_name
        self.classes = boot.classes
        self.extras = frozenset(boot.extras)
        self.stackable = boot.stackable

    def predict(self, batch: Batch) -> Output:
        if batch.matrix is None:
            return self._full().predict(batch)
        return self._kernel(np.asfortranarray(batch.matrix))

    def predict_extras(self, batch: Batch, names: frozenset[str]) -> dict[str, np.ndarray]:
        return self._full().predict_extras(batch, names)

    def runs_inline(self, extras: frozenset[str]) -> bool:
        return not extras


def normalize_output(raw: Any) -> Output:
    """pandas/numpy/list output → an array, or a list as MLflow's JSON would hold it."""
    import pandas as pd

    if isinstance(raw, np.ndarray):
        return raw
    if isinstance(raw, pd.DataFrame):
        return raw.to_dict(orient="records")
    if isinstance(raw, pd.Series):
        # MLflow: `pd.DataFrame(series).to_dict(orient="records")`.
        return pd.DataFrame(raw).to_dict(orient="records")
    if isinstance(raw, (list, tuple)):
        return list(raw)
    raise OutputError(f"model returned {type(raw).__name__}, not an array of predictions")


def jsonable(output: Output) -> list[Any]:
    """What MLflow's scoring server puts under "predictions" for this output."""
    if isinstance(output, np.ndarray):
        return output.tolist()  # type: ignore[no-any-return]
    return output


def check_output(output: Output, n_rows: int) -> None:
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


def check_output_length(output: Output, n_rows: int) -> None:
    """The cheap part of `check_output`, run on every call: one prediction per row."""
    if isinstance(output, np.ndarray) and output.ndim == 0:
        raise OutputError("model returned a single scalar, not one prediction per row")
    count = len(output)
    if count != n_rows:
        raise OutputError(f"model returned {count} predictions for {n_rows} rows")
