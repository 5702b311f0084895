"""Output labels of the per-version metrics: classes as they are, numbers in fixed bins."""

from __future__ import annotations

import numpy as np

from model_server.outputs import BINS, OutputLabeler


def test_classes_are_counted_as_predicted_and_probabilities_by_their_argmax() -> None:
    labeler = OutputLabeler()
    assert labeler.tally(np.array([0, 2, 2]), [0, 1, 2]) == {"0": 1, "2": 2}
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert labeler.tally(probabilities, ["no", "yes"]) == {"yes": 1, "no": 1}
    many = np.array(["a"] * 10 + ["b"] * 5, dtype=object)
    assert labeler.tally(many, None) == {"a": 10, "b": 5}
    assert labeler.edges is None  # classifiers never fix regression bins


def test_regression_bins_are_fixed_once_from_the_first_warm_up_outputs() -> None:
    labeler = OutputLabeler()
    labeler.calibrate(np.array([10.0, 12.0, 14.0]), None)
    edges = labeler.edges
    assert edges is not None
    assert len(edges) == BINS - 1
    assert edges[0] == 12.0 - 8.0
    assert edges[-1] == 12.0 + 8.0
    # The example's outputs land in the middle; far outside goes to the end bins.
    assert labeler.tally(np.array([12.3, -1e9, 1e9]), None) == {"b10": 1, "b00": 1, "b19": 1}
    labeler.calibrate(np.array([1000.0, 2000.0]), None)  # a later model: bins unchanged
    assert labeler.edges is edges
    wide = labeler.tally(np.linspace(0.0, 24.0, 1000), None)
    assert sum(wide.values()) == 1000
    assert set(wide) == {f"b{i:02d}" for i in range(BINS)}


def test_bins_of_a_constant_output_are_not_degenerate() -> None:
    labeler = OutputLabeler()
    labeler.calibrate(np.array([0.0, 0.0]), None)
    edges = labeler.edges
    assert edges is not None
    assert len(set(edges.tolist())) == BINS - 1
    nan_only = OutputLabeler()
    assert nan_only.tally(np.array([np.nan]), None) == {"other": 1}


def test_a_pyfunc_answering_a_classifiers_classes_as_numbers_is_labelled_by_class() -> None:
    labeler = OutputLabeler()
    assert labeler.tally(np.array([2]), [0, 1, 2]) == {"2": 1}
    # A pyfunc replacing it answers 2.0 for class 2: the same label, not a regression bin.
    assert labeler.tally(np.array([0.0, 2.0, 2.0]), None) == {"0": 1, "2": 2}
    # Numbers that are not its classes are still binned as a regression.
    assert all(label.startswith("b") for label in labeler.tally(np.array([0.5, 7.25]), None))
