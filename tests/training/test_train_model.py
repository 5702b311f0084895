"""Model tests on the shipped config: quality, label set, determinism; and the pure gate."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import EstimatorConfig, load_config
from training.data import load_dataset
from training.model import check_gate, evaluate, fit, split


def _train(seed: int = 42, estimator: EstimatorConfig | None = None):  # type: ignore[no-untyped-def]
    config = load_config(None)
    dataset = load_dataset(config.data)
    data = split(dataset, config.test_size, seed)
    pipeline = fit(estimator or config.estimator, data, seed)
    return config, dataset, data, pipeline


@pytest.mark.model_tests
def test_holdout_quality_clears_the_configured_bar() -> None:
    config, _, data, pipeline = _train()
    metrics = evaluate(pipeline, data.x_test, data.y_test)
    assert metrics[config.gate.metric] >= config.gate.threshold
    assert metrics["f1_macro"] >= 0.9
    assert metrics["roc_auc_ovr"] >= 0.95


@pytest.mark.model_tests
def test_predicted_labels_are_in_the_known_set() -> None:
    _, dataset, data, pipeline = _train()
    known = set(dataset.target.unique())
    assert set(pipeline.predict(data.x_test)) <= known
    assert set(pipeline.classes_) == known
    proba = pipeline.predict_proba(data.x_test)
    assert np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.model_tests
def test_same_seed_same_metrics_and_predictions() -> None:
    forest = EstimatorConfig(name="random_forest", params={"n_estimators": 15})
    _, _, data_a, first = _train(seed=7, estimator=forest)
    _, _, data_b, second = _train(seed=7, estimator=forest)
    assert data_a.x_test.index.equals(data_b.x_test.index)
    assert np.array_equal(first.predict(data_a.x_test), second.predict(data_b.x_test))
    assert np.array_equal(first.predict_proba(data_a.x_test), second.predict_proba(data_b.x_test))
    assert evaluate(first, data_a.x_test, data_a.y_test) == evaluate(
        second, data_b.x_test, data_b.y_test
    )


@pytest.mark.model_tests
def test_holdout_is_stratified() -> None:
    _, dataset, data, _ = _train()
    assert set(data.y_test) == set(dataset.target)
    assert data.y_test.value_counts().max() - data.y_test.value_counts().min() <= 1


def test_models_without_predict_proba_skip_roc_auc() -> None:
    _, _, data, pipeline = _train(estimator=EstimatorConfig(name="svc"))
    assert set(evaluate(pipeline, data.x_test, data.y_test)) == {"accuracy", "f1_macro"}


def test_bad_hyper_parameter_value_is_a_config_error() -> None:
    from training.errors import ConfigError

    with pytest.raises(ConfigError, match="logistic_regression rejected its configuration"):
        _train(estimator=EstimatorConfig(name="logistic_regression", params={"C": -1}))


@pytest.mark.parametrize(
    ("value", "threshold", "passed", "message"),
    [
        (0.95, 0.9, True, "accuracy 0.9500 >= 0.9000"),
        (0.9, 0.9, True, "accuracy 0.9000 >= 0.9000"),
        (0.83, 0.9, False, "accuracy 0.8300 < 0.9000 (short by 0.0700)"),
        (1.0, 1.01, False, "accuracy 1.0000 < 1.0100 (short by 0.0100)"),
    ],
)
def test_gate(value: float, threshold: float, passed: bool, message: str) -> None:
    result = check_gate({"accuracy": value}, "accuracy", threshold)
    assert result.passed is passed
    assert result.message == message


def test_gate_on_a_metric_the_model_did_not_produce_fails() -> None:
    result = check_gate({"accuracy": 1.0}, "roc_auc_ovr", 0.5)
    assert not result.passed
    assert "not computed" in result.message
