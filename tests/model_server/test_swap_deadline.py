"""Hot swap deadlines and repeated swaps, in-process against real MLflow models.

The controller gives up on a rollout after its health timeout; a version that finishes
loading later must never be swapped in behind its back. A controller that repeats a swap
(a retry, a restart) must not pay a second load.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from controller.runtimes.hotswap import swap_deadline
from model_server.app import create_app
from model_server.loading import LoadedModel, load_model
from model_server.settings import ServerSettings
from tests.fixtures_models import IrisModels
from tests.model_server.conftest import ADMIN_TOKEN, admin_request, wait_ready

SLOW_S = 4.0


class RecordingLoader:
    """The real loader, slowed down on the first load of `slow_uri`; counts every load."""

    def __init__(self, slow_uri: str | None = None) -> None:
        self.slow_uri = slow_uri
        self.calls: Counter[str] = Counter()
        self.loaded: list[LoadedModel] = []
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, uri: str, settings: ServerSettings) -> LoadedModel:
        with self._lock:
            self.calls[uri] += 1
            slow = uri == self.slow_uri and self.calls[uri] == 1
        if slow:
            time.sleep(SLOW_S)
        model = load_model(uri, settings)
        self.loaded.append(model)
        if slow:
            self.finished.set()
        return model


def _client(models: IrisModels, loader: RecordingLoader) -> Iterator[TestClient]:
    settings = ServerSettings(
        model_uri=models.uri(1), tracking_uri=models.tracking_uri, admin_token=ADMIN_TOKEN
    )
    app = create_app(settings, loader=loader)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@pytest.fixture
def loader(iris_models: IrisModels) -> RecordingLoader:
    return RecordingLoader(slow_uri=iris_models.uri(2))


@pytest.fixture
def client(iris_models: IrisModels, loader: RecordingLoader) -> Iterator[TestClient]:
    yield from _client(iris_models, loader)


def _version(client: TestClient) -> str:
    return str(client.get("/metadata").json()["version"])


def test_a_load_over_the_deadline_is_refused_at_the_deadline_and_never_swapped_in(
    client: TestClient, loader: RecordingLoader, iris_models: IrisModels
) -> None:
    started = time.monotonic()
    response = admin_request(
        client, "POST", "/admin/model", {"model_uri": iris_models.uri(2), "deadline_seconds": 0.5}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert iris_models.uri(2) in detail
    assert "over the swap deadline of 0.5 s" in detail
    assert elapsed < SLOW_S, "the answer must come at the deadline, not when the load ends"
    assert _version(client) == "1"

    # The abandoned load ends later: it is thrown away, not swapped in.
    assert loader.finished.wait(timeout=30)
    time.sleep(0.3)
    assert _version(client) == "1"
    late = next(m for m in loader.loaded if m.model_uri == iris_models.uri(2))
    assert late.local_dir is not None
    deadline = time.monotonic() + 5
    while Path(late.local_dir).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(late.local_dir).exists(), "the late model's download was not removed"
    metrics = client.get("/metrics").text
    assert 'aliasflow_server_model_swaps_total{result="failed"} 1.0' in metrics


def test_the_next_swap_does_not_wait_for_an_abandoned_load(
    client: TestClient, loader: RecordingLoader, iris_models: IrisModels
) -> None:
    refused = admin_request(
        client, "POST", "/admin/model", {"model_uri": iris_models.uri(2), "deadline_seconds": 0.2}
    )
    assert refused.status_code == 422
    # The same version again (its second load is not slowed): swapped while the first
    # load is still sleeping, so the lock was not held for the abandoned one.
    swapped = admin_request(
        client, "POST", "/admin/model", {"model_uri": iris_models.uri(2), "deadline_seconds": 30}
    )
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["status"] == "swapped"
    assert not loader.finished.is_set(), "the swap waited for the abandoned load"
    assert _version(client) == "2"
    assert loader.finished.wait(timeout=30)
    time.sleep(0.3)
    assert _version(client) == "2", "the late copy of v2 must not replace the served one"


def test_swapping_to_the_served_uri_is_unchanged_without_a_reload(
    client: TestClient, loader: RecordingLoader, iris_models: IrisModels
) -> None:
    loader.slow_uri = None
    same = admin_request(client, "POST", "/admin/model", {"model_uri": iris_models.uri(1)})
    assert same.status_code == 200, same.text
    assert same.json()["status"] == "unchanged"
    assert same.json()["model"]["version"] == "1"
    assert same.json()["previous"] is None
    assert loader.calls[iris_models.uri(1)] == 1  # the boot load only

    first = admin_request(client, "POST", "/admin/model", {"model_uri": iris_models.uri(2)})
    again = admin_request(client, "POST", "/admin/model", {"model_uri": iris_models.uri(2)})
    assert first.json()["status"] == "swapped"
    assert again.json()["status"] == "unchanged"
    assert loader.calls[iris_models.uri(2)] == 1
    metrics = client.get("/metrics").text
    assert 'aliasflow_server_model_swaps_total{result="unchanged"} 2.0' in metrics
    assert 'aliasflow_server_model_swaps_total{result="swapped"} 1.0' in metrics


def test_an_alias_uri_is_always_reloaded(
    client: TestClient, loader: RecordingLoader, iris_models: IrisModels
) -> None:
    """`models:/name@alias` may point elsewhere by now; "unchanged" would be a guess."""
    from mlflow import MlflowClient

    loader.slow_uri = None
    alias = f"deadline{time.monotonic_ns() % 10**8}"
    MlflowClient(iris_models.tracking_uri).set_registered_model_alias(iris_models.name, alias, "2")
    uri = f"models:/{iris_models.name}@{alias}"
    for _ in range(2):
        response = admin_request(client, "POST", "/admin/model", {"model_uri": uri})
        assert response.json()["status"] == "swapped", response.text
    assert loader.calls[uri] == 2


@pytest.mark.parametrize("deadline", [0, -1, "soon"])
def test_the_deadline_must_be_a_positive_number(client: TestClient, deadline: object) -> None:
    response = admin_request(
        client, "POST", "/admin/model", {"model_uri": "models:/x/1", "deadline_seconds": deadline}
    )
    assert response.status_code == 422
    assert "deadline_seconds" in response.json()["detail"]


@pytest.mark.parametrize(("timeout", "deadline"), [(8, 7.0), (60, 57.0), (120, 114.0), (1, 0.5)])
def test_the_local_runtime_asks_for_a_deadline_inside_its_own_timeout(
    timeout: float, deadline: float
) -> None:
    assert swap_deadline(timeout) == pytest.approx(deadline)
    assert swap_deadline(timeout) < timeout
