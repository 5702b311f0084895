"""A baked model with a boot file answers before MLflow loads, and answers the same."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from model_server.bootfile import BOOT_FILE, read_boot_file, write_boot_file
from tests.fixtures_models import COLUMNS
from tests.model_server.conftest import AppFactory

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture
def booted_dir(baked_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "baked"
    shutil.copytree(baked_model_dir, target)
    boot = write_boot_file(target)
    assert boot is not None
    assert boot.kernel_name == "StandardScaler>LogisticRegression"
    return target


def _wait_completed(client: TestClient) -> None:
    deadline = time.monotonic() + 60
    while client.get("/metadata").json()["flavor"] != "sklearn" or not _completed(client):
        assert time.monotonic() < deadline, "MLflow's model never loaded behind the boot file"
        time.sleep(0.05)


def _completed(client: TestClient) -> bool:
    app = client.app
    model = app.state.slot.current  # type: ignore[attr-defined]
    return bool(model is not None and model.completed.is_set())


def test_boot_file_serves_the_same_answers_on_every_protocol(
    booted_dir: Path, baked_model_dir: Path, app_client: AppFactory
) -> None:
    booted = app_client(f"file://{booted_dir}")
    plain = app_client(f"file://{baked_model_dir}")
    meta = booted.get("/metadata").json()
    assert (meta["source"], meta["kernel"]) == ("baked", "StandardScaler>LogisticRegression")
    bodies = [
        ("/predict", {"instances": ROWS, "outputs": ["probabilities", "labels"]}),
        ("/invocations", {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}),
        ("/invocations", {"instances": [[5, 3, 1, 0]]}),  # MLflow's own handler
    ]
    for path, body in bodies:  # before and after MLflow's model is loaded behind it
        first = booted.post(path, json=body)
        assert (first.status_code, first.json()) == (
            plain.post(path, json=body).status_code,
            plain.post(path, json=body).json(),
        ), path
    _wait_completed(booted)
    for path, body in bodies:
        assert booted.post(path, json=body).json() == plain.post(path, json=body).json(), path


def test_a_boot_file_from_other_library_versions_is_ignored(booted_dir: Path) -> None:
    path = booted_dir / BOOT_FILE
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta["versions"]["scikit-learn"] = "0.0.1"
    with open(path, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
    assert read_boot_file(booted_dir) is None


def test_a_model_without_a_kernel_gets_no_boot_file(
    iris_models: object, tmp_path: Path, baked_model_dir: Path
) -> None:
    target = tmp_path / "m"
    shutil.copytree(baked_model_dir, target)
    mlmodel = (target / "MLmodel").read_text()
    # Declare predict_proba: there is no kernel for it, so nothing to boot from.
    (target / "MLmodel").write_text(
        mlmodel.replace("predict_fn: predict", "predict_fn: predict_proba")
    )
    assert write_boot_file(target) is None
    assert not (target / BOOT_FILE).exists()


def test_a_registered_version_with_a_boot_file_boots_from_it(
    iris_models: object, app_client: AppFactory, tracking_uri: str, unique_model_name: str
) -> None:
    """As the training job logs it (`log_boot_file`): downloaded over REST, served from
    the boot file, completed by MLflow's model behind it (run metrics included)."""
    import mlflow.pyfunc

    from tests.model_server.protocols.models import example_frame, log_cancer_pipeline

    version = log_cancer_pipeline(unique_model_name, boot_file=True)
    uri = f"models:/{unique_model_name}/{version}"
    client = app_client(uri)
    model = client.app.state.slot.current  # type: ignore[attr-defined]
    assert model.local_dir is not None
    assert (model.local_dir / BOOT_FILE).is_file()
    frame = example_frame("cancer", rows=4)
    body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}
    expected = mlflow.pyfunc.load_model(uri).predict(frame).tolist()
    assert client.post("/predict", json=body).json()["predictions"] == expected
    _wait_completed(client)
    assert client.post("/invocations", json=body).json() == {"predictions": expected}
    assert client.get("/metadata").json()["kernel"] == "StandardScaler>LogisticRegression"
