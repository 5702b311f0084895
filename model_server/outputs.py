"""What a prediction "was", as a metrics label: the class, or the bin of a number.

The controller compares two versions' distributions of outputs (analysis.py: prediction
shift). For a classifier the label is the predicted class (the argmax class when the
model answers probabilities). For a regressor it is one of `BINS` bins `b00`..`b19`, and
the bins must be the same for every version of one process, or the distributions would
not be comparable: the edges are fixed once, from the warm-up outputs of the first
regression model the process loads (the primary at boot, normally), and never move.

A model that declares no classes (a pyfunc) but answers only numbers that are the
classes of a classifier this process serves (2.0 where the classifier says 2) is labelled
with those classes: otherwise a pyfunc replacing a scikit-learn classifier would differ
in every label and show a shift of 1 whatever it predicts.

Edges: the warm-up outputs' midpoint `c` and spread `s` (their range, at least a quarter
of |c| and never 0); 19 evenly spaced edges from `c - 2s` to `c + 2s`, so the example's
outputs fall in the middle bins, b00 holds everything below `c - 2s` and b19 everything
above `c + 2s`.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from model_server.predictors import Output

BINS = 20
_TALLY_AT = 8  # below this many rows a loop beats np.unique


class OutputLabeler:
    def __init__(self) -> None:
        self._edges: np.ndarray | None = None
        self._lock = threading.Lock()
        # The numeric classes of the first classifier seen: value -> its label.
        self._class_labels: dict[float, str] | None = None

    @property
    def edges(self) -> np.ndarray | None:
        return self._edges

    def calibrate(self, output: Output, classes: list[Any] | None) -> None:
        """Fix the regression bins from a model's warm-up `output`, if not fixed yet."""
        if self._edges is not None or classes is not None:
            return
        values = _numbers(output)
        if values is None or values.size == 0:
            return
        with self._lock:  # loads run in threads; the first one to get here wins
            if self._edges is not None:
                return
            low, high = float(values.min()), float(values.max())
            centre = (low + high) / 2
            spread = max(high - low, abs(centre) / 4, 1e-9)
            self._edges = np.linspace(centre - 2 * spread, centre + 2 * spread, BINS - 1)

    def tally(self, output: Output, classes: list[Any] | None) -> dict[str, int]:
        """Output label -> rows with it, for one request's predictions."""
        if classes is not None and self._class_labels is None:
            self._class_labels = _numeric_labels(classes)
        if classes is not None and type(output) is np.ndarray and output.shape == (1,):
            return {str(output.tolist()[0]): 1}  # one row of a classifier: most requests
        array = output if isinstance(output, np.ndarray) else np.asarray(output, dtype=object)
        if array.ndim == 2 and classes is not None and array.shape[1] == len(classes):
            array = np.asarray(classes, dtype=object)[array.argmax(axis=1)]
        elif array.ndim > 1:
            array = array.reshape(array.shape[0], -1)[:, 0]
        if classes is None and self._class_labels and array.dtype.kind in "fiu":
            labels = [self._class_labels.get(v) for v in array.tolist()]
            if None not in labels:
                return _count([label for label in labels if label is not None])
        if classes is None and array.dtype.kind == "f":
            if self._edges is None:
                self.calibrate(array, None)
            if self._edges is None:  # nothing finite to fix bins on yet
                return {"other": int(array.shape[0])}
            array = np.searchsorted(self._edges, array, side="right")
            return _count([f"b{int(i):02d}" for i in array.tolist()])
        return _count([str(v) for v in array.tolist()])


def _numeric_labels(classes: list[Any]) -> dict[float, str]:
    """A classifier's numeric classes as value -> label; empty when any is not a number."""
    labels: dict[float, str] = {}
    for value in classes:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            return {}
        labels[float(value)] = str(value)
    return labels


def _numbers(output: Output) -> np.ndarray | None:
    array = np.asarray(output)
    if array.dtype.kind not in "fiu":
        return None
    if array.ndim > 1:
        array = array.reshape(array.shape[0], -1)[:, 0]
    finite: np.ndarray = array[np.isfinite(array)].astype(np.float64)
    return finite


def _count(labels: list[str]) -> dict[str, int]:
    if len(labels) < _TALLY_AT:
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        return counts
    found, numbers = np.unique(np.asarray(labels), return_counts=True)
    return {str(k): int(n) for k, n in zip(found.tolist(), numbers.tolist(), strict=True)}
