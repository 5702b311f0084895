"""`aliasflow train` end to end against the real MLflow server from tests/conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers_training import DATA_DIR, aliasflow, stdout_json, train_direct, write_config


@pytest.fixture
def client(tracking_uri: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def test_train_registers_a_version_with_alias_tags_signature_and_example(
    tracking_uri: str,
    unique_model_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    client,  # type: ignore[no-untyped-def]
) -> None:
    import mlflow

    config = write_config(
        tmp_path,
        model_name=unique_model_name,
        experiment="aliasflow-tests",
        estimator={"name": "logistic_regression", "params": {"C": 10.0, "max_iter": 1000}},
    )
    summary_file = tmp_path / "out" / "summary.json"
    code, out, err = train_direct(capsys, config, summary_file)
    assert code == 0, err

    summary = stdout_json(out)
    assert json.loads(summary_file.read_text()) == summary
    assert summary["model_name"] == unique_model_name
    assert summary["registered"] is True
    assert summary["version"] == 1
    assert summary["alias"] == "challenger"
    assert summary["model_uri"] == f"models:/{unique_model_name}/1"
    assert set(summary["metrics"]) == {"accuracy", "f1_macro", "roc_auc_ovr"}
    assert summary["gate"]["passed"] is True

    by_alias = client.get_model_version_by_alias(unique_model_name, "challenger")
    assert by_alias.version == "1"
    assert by_alias.run_id == summary["run_id"]
    assert by_alias.tags["data_hash"] == summary["data_hash"]

    run = client.get_run(summary["run_id"])
    assert run.data.metrics == pytest.approx(summary["metrics"])
    assert run.data.params["estimator"] == "logistic_regression"
    assert run.data.params["seed"] == "42"
    assert run.data.params["model.C"] == "10.0"
    for tag in ("git_commit", "data_hash", "config_hash"):
        assert run.data.tags[tag] == summary[tag]
    assert len(run.data.tags["data_hash"]) == 64
    assert run.data.tags["git_commit"] != ""

    info = mlflow.models.get_model_info(summary["model_uri"])
    assert info.signature.inputs.input_names() == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    assert info.signature.outputs is not None
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    example = model.input_example
    assert list(example.columns) == info.signature.inputs.input_names()
    assert len(example) == 5
    assert set(model.predict(example)) <= {0, 1, 2}


def test_gate_failure_exits_1_says_by_how_much_and_registers_nothing(
    tracking_uri: str,
    unique_model_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    client,  # type: ignore[no-untyped-def]
) -> None:
    config = write_config(
        tmp_path,
        model_name=unique_model_name,
        experiment="aliasflow-tests",
        estimator={"name": "dummy"},
        gate={"metric": "accuracy", "threshold": 0.9},
    )
    summary_file = tmp_path / "summary.json"
    code, out, err = train_direct(capsys, config, summary_file)
    assert code == 1
    summary = stdout_json(out)
    assert summary["registered"] is False
    assert summary["version"] is None
    assert summary["alias"] is None
    assert summary["model_uri"] == summary["logged_model_uri"]
    assert json.loads(summary_file.read_text()) == summary
    accuracy = summary["metrics"]["accuracy"]
    expected = f"accuracy {accuracy:.4f} < 0.9000 (short by {0.9 - accuracy:.4f})"
    assert expected in err
    assert "not registered" in err
    # The run is kept for the record; the registry is untouched.
    assert client.get_run(summary["run_id"]).data.tags["gate"] == "failed"
    assert client.search_model_versions(f"name='{unique_model_name}'") == []


def test_csv_training_through_the_real_command(
    tracking_uri: str, unique_model_name: str, tmp_path: Path
) -> None:
    """A fresh `aliasflow` process: stdout must be nothing but the JSON summary."""
    raw = yaml.safe_load((DATA_DIR / "train_csv.yaml").read_text())
    raw["model_name"] = unique_model_name
    raw["data"]["path"] = str(DATA_DIR / raw["data"]["path"])
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(raw))
    summary_file = tmp_path / "summary.json"

    done = aliasflow(
        "train",
        "--config",
        str(config),
        "--summary-file",
        str(summary_file),
        env={"MLFLOW_TRACKING_URI": tracking_uri},
    )
    assert done.returncode == 0, done.stderr
    summary = stdout_json(done.stdout)
    assert summary == json.loads(summary_file.read_text())
    assert summary["registered"] is True
    assert summary["gate"]["metric"] == "f1_macro"
    assert "View run" in done.stderr  # MLflow's own lines went to stderr

    import mlflow

    info = mlflow.models.get_model_info(summary["model_uri"])
    assert info.signature.inputs.input_names() == ["feature_a", "feature_b", "c"]
