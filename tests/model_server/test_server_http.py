"""`aliasflow serve` as a real process over real HTTP: boot, predict, hot swaps, baking."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller.runtimes.netutil import free_port, stop_process
from tests.fixtures_models import BAD_VERSIONS, COLUMNS, BadVersions, IrisModels
from tests.model_server.conftest import ADMIN_TOKEN, ServerProcess, admin_request, start_server

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def _served_version(server: ServerProcess) -> str:
    return httpx.get(f"{server.url}/health").json()["model"]["version"]


def _swap(server: ServerProcess, uri: str, **extra: object) -> httpx.Response:
    return admin_request(None, "POST", f"{server.url}/admin/model", {"model_uri": uri, **extra})


def test_serves_predictions_over_http(served_v1: ServerProcess, iris_models: IrisModels) -> None:
    response = httpx.post(f"{served_v1.url}/predict", json={"instances": ROWS})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["predictions"][:2] == [0, 2]
    assert httpx.get(f"{served_v1.url}/livez").status_code == 200


@pytest.fixture(scope="module")
def served_mixed(
    bad_versions: BadVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server of the registered model whose versions 2-5 are bad (the own-model rule
    lets a server swap only to versions of its own model)."""
    server = start_server(
        {
            "MODEL_URI": bad_versions.uri(1),
            "MLFLOW_TRACKING_URI": bad_versions.tracking_uri,
            "ALIASFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
        },
        tmp_path_factory.mktemp("serve-mixed") / "server.log",
    )
    try:
        yield server
    finally:
        stop_process(server.process)


@pytest.mark.parametrize(
    ("version", "status", "reason"),
    [
        (2, 422, "could not load"),
        (3, 422, "NaN"),
        (4, 422, "predictions for 1 rows"),
        (5, 409, "incompatible input signature"),
    ],
    ids=[BAD_VERSIONS[str(v)] for v in (2, 3, 4, 5)],
)
def test_a_bad_swap_leaves_the_old_version_serving(
    served_mixed: ServerProcess, bad_versions: BadVersions, version: int, status: int, reason: str
) -> None:
    before = _served_version(served_mixed)
    uri = bad_versions.uri(version)
    response = _swap(served_mixed, uri)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert uri in response.json()["detail"]
    assert _served_version(served_mixed) == before
    ok = httpx.post(f"{served_mixed.url}/predict", json={"instances": ROWS})
    assert ok.status_code == 200
    assert ok.json()["model"]["version"] == before


def test_hot_swap_under_load_drops_no_request(
    served_v1: ServerProcess, iris_models: IrisModels
) -> None:
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    lock = threading.Lock()

    def hammer() -> None:
        with httpx.Client(base_url=served_v1.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post("/predict", json={"instances": ROWS[:1]})
                    key = str(response.status_code)
                    version = response.json()["model"]["version"] if response.is_success else "-"
                except httpx.HTTPError as exc:
                    key, version = type(exc).__name__, "-"
                with lock:
                    outcomes[key] += 1
                    versions[version] += 1

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        first = _swap(served_v1, iris_models.uri(2))
        assert first.status_code == 200, first.text
        assert first.json()["model"]["version"] == "2"
        time.sleep(0.5)
        back = _swap(served_v1, iris_models.uri(1))  # and back, leaving v1 for other tests
        assert back.status_code == 200, back.text
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(outcomes) == {"200"}, outcomes
    assert versions["1"] > 0, versions
    assert versions["2"] > 0, versions
    metrics = httpx.get(f"{served_v1.url}/metrics").text
    assert 'aliasflow_server_model_swaps_total{result="swapped"} 2.0' in metrics


def test_concurrent_swaps_are_serialised(served_v1: ServerProcess, iris_models: IrisModels) -> None:
    results: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda u=u: results.append(_swap(served_v1, u)))
        for u in (iris_models.uri(2), iris_models.uri(1))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200, 200]
    last = results[-1].json()["model"]["version"]
    assert _served_version(served_v1) == last
    if _served_version(served_v1) != "1":
        assert _swap(served_v1, iris_models.uri(1)).status_code == 200


def test_baked_directory_needs_no_mlflow_server(
    baked_model_dir: Path, iris_models: IrisModels, tmp_path: Path
) -> None:
    server = start_server(
        {
            "MODEL_URI": f"file://{baked_model_dir}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",  # nothing listens here
            "ALIASFLOW_LOG_FORMAT": "json",
        },
        tmp_path / "baked.log",
    )
    try:
        meta = httpx.get(f"{server.url}/metadata").json()
        assert meta["source"] == "baked"
        assert (meta["name"], meta["version"]) == (iris_models.name, "1")
        assert meta["run_id"] == iris_models.v1_run_id
        assert meta["metrics"] == {"accuracy": 0.97}
        assert meta["git_sha"] == "baked0sha"
        records = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]
        response = httpx.post(f"{server.url}/predict", json={"dataframe_records": records})
        assert response.json()["predictions"][:2] == [0, 2]
    finally:
        stop_process(server.process)
    assert '"message":"model ready' in server.output()


def _serve(env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "MODEL_URI"} | env
    return subprocess.run(
        [sys.executable, "-m", "aliasflow_cli.main", "serve", "--port", str(free_port())],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MODEL_URI: not set (required)"),
        ({"MODEL_URI": "x", "ALIASFLOW_MAX_BATCH_ROWS": "lots"}, "ALIASFLOW_MAX_BATCH_ROWS"),
        ({"MODEL_URI": "x", "ALIASFLOW_MAX_BODY_BYTES": "0"}, "ALIASFLOW_MAX_BODY_BYTES"),
    ],
)
def test_bad_settings_exit_with_a_message(env: dict[str, str], message: str) -> None:
    result = _serve(env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_that_cannot_load_at_boot_exits_non_zero(iris_models: IrisModels) -> None:
    result = _serve(
        {
            "MODEL_URI": f"models:/{iris_models.name}/42",
            "MLFLOW_TRACKING_URI": iris_models.tracking_uri,
        }
    )
    assert result.returncode == 1
    assert f"models:/{iris_models.name}/42" in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_requests_batched_together_get_their_own_answers(
    served_v1: ServerProcess,
) -> None:
    expected = {
        i: httpx.post(f"{served_v1.url}/predict", json={"instances": [row]}).json()["predictions"]
        for i, row in enumerate(ROWS)
    }
    mismatches: list[tuple[int, object]] = []

    def worker(index: int) -> None:
        which = index % len(ROWS)
        with httpx.Client(base_url=served_v1.url, timeout=30) as client:
            for _ in range(40):
                got = client.post("/predict", json={"instances": [ROWS[which]]}).json()
                if got.get("predictions") != expected[which]:
                    mismatches.append((which, got))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []
