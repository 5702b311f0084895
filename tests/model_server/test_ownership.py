"""The own-model rule: the swap endpoint never loads anything but the server's own model.

`marker_model` is a pyfunc whose `load_context` writes the file named by
`ALIASFLOW_TEST_MARKER`: a refused swap must leave no such file, whatever form the URI
takes. The last test shows the marker does appear when the model is really loaded, so
the others can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from model_server.errors import ForeignModelError
from model_server.ownership import check_own_model, own_model
from model_server.settings import ServerSettings
from tests.fixtures_models import IrisModels, MarkerModel
from tests.model_server.conftest import ADMIN_TOKEN, AppFactory, admin_request

FORMS = [
    "other-model-version",
    "other-model-alias",
    "path",
    "file-uri",
    "runs-uri",
    "http-uri",
    "https-uri",
    "own-dotdot-other",
    "own-version-dotdot",
    "own-alias-dotdot",
    "own-trailing-newline",
    "own-latest",
    "own-query",
]


def _uri(form: str, own: str, marker: MarkerModel) -> str:
    return {
        "other-model-version": marker.uri(1),
        "other-model-alias": f"models:/{marker.name}@champion",
        "path": str(marker.local_dir),
        "file-uri": marker.local_dir.as_uri(),
        "runs-uri": f"runs:/{marker.run_id}/model",
        "http-uri": f"{marker.tracking_uri}/get-artifact?path=model&run_uuid={marker.run_id}",
        "https-uri": "https://models.example.com/marker/model",
        "own-dotdot-other": f"models:/{own}/../{marker.name}/1",
        "own-version-dotdot": f"models:/{own}/1/../../{marker.name}/1",
        "own-alias-dotdot": f"models:/{own}@a/../../{marker.name}/1",
        "own-trailing-newline": f"models:/{own}/2\n",
        "own-latest": f"models:/{own}/latest",
        "own-query": f"models:/{own}/2?u={marker.local_dir.as_uri()}",
    }[form]


@pytest.fixture
def marker_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "load_context-ran"
    monkeypatch.setenv("ALIASFLOW_TEST_MARKER", str(path))
    return path


@pytest.fixture(scope="module")
def iris_client(iris_models: IrisModels) -> TestClient:
    from model_server.app import create_app

    settings = ServerSettings(
        model_uri=iris_models.uri(1), tracking_uri=iris_models.tracking_uri, admin_token=ADMIN_TOKEN
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        from tests.model_server.conftest import wait_ready

        wait_ready(client)
        yield client


@pytest.mark.parametrize("form", FORMS)
def test_a_foreign_uri_is_refused_before_its_code_runs(
    iris_client: TestClient,
    iris_models: IrisModels,
    marker_model: MarkerModel,
    marker_file: Path,
    form: str,
) -> None:
    uri = _uri(form, iris_models.name, marker_model)
    response = admin_request(iris_client, "POST", "/admin/model", {"model_uri": uri})
    assert response.status_code == 403, response.text
    detail = response.json()["detail"]
    assert "refused to load" in detail
    assert f"models:/{iris_models.name}/<version>" in detail
    assert not marker_file.exists(), f"{uri!r} ran the model's code"
    assert iris_client.get("/metadata").json()["version"] == "1"


def test_the_own_model_is_still_swapped(app_client: AppFactory, iris_models: IrisModels) -> None:
    client = app_client(admin_token=ADMIN_TOKEN)
    response = admin_request(client, "POST", "/admin/model", {"model_uri": iris_models.uri(2)})
    assert response.status_code == 200, response.text
    assert response.json()["model"]["version"] == "2"


def test_a_server_not_started_for_a_registered_model_accepts_no_swap(
    app_client: AppFactory, marker_model: MarkerModel, iris_models: IrisModels, marker_file: Path
) -> None:
    # Booted from a directory (as a baked image may be): it has no model of its own.
    client = app_client(str(marker_model.local_dir), admin_token=ADMIN_TOKEN)
    marker_file.unlink()  # the boot itself ran the model: that is what MODEL_URI says
    response = admin_request(client, "POST", "/admin/model", {"model_uri": marker_model.uri(1)})
    assert response.status_code == 403, response.text
    assert "not started for a registered model" in response.json()["detail"]
    assert not marker_file.exists()


def test_the_marker_appears_when_the_model_really_loads(
    app_client: AppFactory, marker_model: MarkerModel, marker_file: Path
) -> None:
    """The control: served as its own model, the marker model's code does run."""
    client = app_client(marker_model.uri(1), admin_token=ADMIN_TOKEN)
    assert marker_file.exists()
    marker_file.unlink()
    swapped = admin_request(
        client, "POST", "/admin/model", {"model_uri": f"models:/{marker_model.name}@champion"}
    )
    # No such alias: the load fails, but only after it was allowed to try.
    assert swapped.status_code == 422, swapped.text
    assert "refused" not in swapped.json()["detail"]


@pytest.mark.parametrize(
    ("started", "name"),
    [
        ("models:/iris/3", "iris"),
        ("models:/iris@champion", "iris"),
        ("/models/iris", None),
        ("runs:/abc/model", None),
        ("models:/iris/../x/1", None),
    ],
)
def test_own_model_comes_from_model_uri(started: str, name: str | None) -> None:
    assert own_model(ServerSettings(model_uri=started)) == name


def test_own_model_of_a_directory_is_alias_flow_model_name() -> None:
    settings = ServerSettings(model_uri="/models/iris", model_name="iris")
    assert own_model(settings) == "iris"
    check_own_model("iris", "models:/iris/4")
    check_own_model("iris", "models:/iris@prod-1")
    with pytest.raises(ForeignModelError):
        check_own_model("iris", "models:/iris2/4")
    with pytest.raises(ForeignModelError):
        check_own_model("iris", "models:/iri/4")
