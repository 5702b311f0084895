"""Config validation: strict keys, named fields, the shipped default."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_training import DATA_DIR, train_direct, write_config

from training.config import (
    DEFAULT_CONFIG_PATH,
    CsvSource,
    IrisSource,
    TrainConfig,
    load_config,
    parse_config,
    reserved_alias,
)
from training.errors import ConfigError


def test_shipped_default_config_loads_with_documented_defaults() -> None:
    config = load_config(None)
    assert DEFAULT_CONFIG_PATH.name == "config.yaml"
    assert config.model_name == "iris-classifier"
    assert config.alias == "challenger"
    assert config.seed == 42
    assert isinstance(config.data, IrisSource)
    assert config.gate.metric == "accuracy"
    assert config.gate.threshold == 0.9


def test_empty_document_means_all_defaults() -> None:
    assert parse_config(None) == TrainConfig()


def test_csv_path_is_resolved_against_the_config_file() -> None:
    config = load_config(DATA_DIR / "train_csv.yaml")
    assert isinstance(config.data, CsvSource)
    assert config.data.path == DATA_DIR / "train_small.csv"


def test_config_hash_ignores_yaml_formatting(tmp_path: Path) -> None:
    a = write_config(tmp_path, seed=3, alias="challenger")
    first = load_config(a).config_hash()
    a.write_text("alias: challenger\nseed: 3   # same values, other order\n")
    assert load_config(a).config_hash() == first
    assert parse_config({"seed": 4}).config_hash() != first


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"modle_name": "x"}, "modle_name: Extra inputs are not permitted"),
        ({"estimator": {"name": "xgboost"}}, "estimator.name: unknown estimator 'xgboost'"),
        (
            {"estimator": {"name": "random_forest", "params": {"n_trees": 3}}},
            "random_forest does not accept hyper-parameter(s): ['n_trees']",
        ),
        ({"alias": "latest"}, "alias: alias 'latest' is reserved"),
        ({"alias": "v3"}, "alias: alias 'v3' is reserved"),
        ({"alias": "has space"}, "alias: alias may only contain"),
        ({"test_size": 1.5}, "test_size: Input should be less than 1"),
        ({"gate": {"metric": "recall"}}, "gate.metric: Input should be"),
        ({"data": {"kind": "csv", "path": "x.csv"}}, "data.csv.target: Field required"),
        ({"data": {"kind": "parquet"}}, "data: Input tag 'parquet' found"),
        ({"seed": "abc"}, "seed: Input should be a valid integer"),
    ],
)
def test_invalid_config_names_the_field(raw: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="cfg.yaml")
    assert str(caught.value).startswith("cfg.yaml: invalid training config")
    assert expected in str(caught.value)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["a", "b"], source="cfg.yaml")


@pytest.mark.parametrize("alias", ["latest", "LATEST", "v1", "V22"])
def test_reserved_aliases(alias: str) -> None:
    assert reserved_alias(alias)


@pytest.mark.parametrize("alias", ["champion", "challenger", "v1x", "version2"])
def test_ordinary_aliases(alias: str) -> None:
    assert not reserved_alias(alias)


def test_config_errors_exit_2_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Config errors are reported before MLflow is contacted: no server needed.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    code, out, err = train_direct(capsys, tmp_path / "nope.yaml")
    assert (code, out) == (2, "")
    assert "config file not found" in err

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("seed: [unclosed\n")
    code, out, err = train_direct(capsys, bad_yaml)
    assert (code, out) == (2, "")
    assert "not valid YAML" in err

    code, out, err = train_direct(capsys, write_config(tmp_path, estimator={"name": "nope"}))
    assert (code, out) == (2, "")
    assert "estimator.name: unknown estimator 'nope'" in err
    assert "Traceback" not in err


def test_a_tracking_uri_is_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = train_direct(capsys, None)
    assert code == 2
    assert "MLFLOW_TRACKING_URI is not set" in err


def test_unreachable_mlflow_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    code, out, err = train_direct(capsys, None)
    assert (code, out) == (3, "")
    assert "MLflow is not reachable at http://127.0.0.1:9" in err
