"""Canary, shadow and rollback copy on a real `aliasflow serve` with real MLflow models.

One server of the iris v1 (and its v2, which predicts differently on part of iris) is
shared by the tests of this module; each test sets the split it needs first. The
controller's own admin calls (controller/runtimes/hotswap.py), probe (probe.py) and
metrics parser (reconcile/analysis.py) are used against it, which checks the contract
(docs/server-contract.md) from both sides.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.core.types import DesiredState, Traffic
from controller.reconcile.analysis import VersionStats, parse_server_metrics
from controller.runtimes.hotswap import release_previous, request_hot_swap, request_traffic
from controller.runtimes.netutil import stop_process
from controller.runtimes.probe import probe_server
from tests.fixtures_models import (  # noqa: F401 - bad_versions is a fixture
    COLUMNS,
    BadVersions,
    IrisModels,
    bad_versions,
    iris_frame,
)
from tests.model_server.conftest import ADMIN_TOKEN, ServerProcess, admin_request, start_v1

Z99 = 2.576  # two-sided 99% normal quantile


@pytest.fixture(scope="module")
def server(
    iris_models: IrisModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    running = start_v1(iris_models, tmp_path_factory.mktemp("traffic") / "server.log")
    try:
        yield running
    finally:
        stop_process(running.process)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        _reset(client, server)
        yield client


@pytest.fixture(scope="module")
def rows() -> list[dict[str, float]]:
    frame, _ = iris_frame()
    records: list[dict[str, float]] = frame[COLUMNS].to_dict(orient="records")
    return records


def _reset(client: httpx.Client, server: ServerProcess) -> None:
    """Back to v1 alone: no canary, no shadow, nothing kept."""
    uri = _uri_of(server, "1")
    admin_request(client, "PUT", "/admin/traffic", {"canary": None, "shadow": None})
    assert admin_request(client, "POST", "/admin/model", {"model_uri": uri}).is_success
    assert admin_request(client, "DELETE", "/admin/model/previous").is_success


def _uri_of(server: ServerProcess, version: str) -> str:
    name = httpx.get(f"{server.url}/metadata", timeout=10).json()["name"]
    return f"models:/{name}/{version}"


def _traffic(
    client: httpx.Client,
    canary: tuple[str, int] | None = None,
    shadow: tuple[str, int] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "canary": {"model_uri": canary[0], "weight": canary[1]} if canary else None,
        "shadow": {"model_uri": shadow[0], "percent": shadow[1]} if shadow else None,
        "deadline_seconds": 60,
    }
    return admin_request(client, "PUT", "/admin/traffic", body)


def _stats(client: httpx.Client) -> dict[tuple[str, str], VersionStats]:
    return parse_server_metrics(client.get("/metrics").text)


def _window(
    after: dict[tuple[str, str], VersionStats], before: dict[tuple[str, str], VersionStats]
) -> dict[tuple[str, str], VersionStats]:
    return {key: stats.minus(before.get(key, VersionStats())) for key, stats in after.items()}


def _within_binomial_99(count: int, n: int, p: float) -> tuple[bool, str]:
    expected = n * p
    bound = Z99 * math.sqrt(n * p * (1 - p)) + 1  # +1: continuity
    return abs(count - expected) <= bound, f"{count} of {n}, expected {expected:.0f} ± {bound:.1f}"


def test_canary_takes_its_weight_on_every_protocol_and_metrics_name_each_role(
    http: httpx.Client, server: ServerProcess, rows: list[dict[str, float]]
) -> None:
    answer = _traffic(http, canary=(_uri_of(server, "2"), 30))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"primary": "1", "canary": "2", "shadow": None, "previous": None}
    assert admin_request(http, "GET", "/admin/traffic").json() == answer.json()
    probe = probe_server(server.url)
    assert (probe.served_version, probe.canary_version, probe.canary_weight) == ("1", "2", 30)
    before = _stats(http)

    n = 800
    seen: Counter[str] = Counter()
    for i in range(n):
        response = http.post("/predict", json={"records": [rows[i % len(rows)]]})
        assert response.status_code == 200, response.text
        version = response.headers["x-aliasflow-model-version"]
        assert response.json()["model"]["version"] == version
        seen[version] += 1
    ok, detail = _within_binomial_99(seen["2"], n, 0.30)
    assert ok, f"canary share off: {detail}"
    assert seen["1"] + seen["2"] == n

    # The other protocols route the same way (the fast lane serves all three).
    other: Counter[str] = Counter()
    name = http.get("/metadata").json()["name"]
    for i in range(100):
        row = rows[i % len(rows)]
        invocations = http.post("/invocations", json={"dataframe_records": [row]})
        assert invocations.status_code == 200, invocations.text
        other[invocations.headers["x-aliasflow-model-version"]] += 1
        v2 = http.post(f"/v2/models/{name}/infer", json=_v2_body(row))
        assert v2.status_code == 200, v2.text
        assert v2.json()["model_version"] == v2.headers["x-aliasflow-model-version"]
        other[v2.headers["x-aliasflow-model-version"]] += 1
    ok, detail = _within_binomial_99(other["2"], 200, 0.30)
    assert ok, f"canary share off on /invocations and V2: {detail}"

    window = _window(_stats(http), before)
    assert window[("1", "primary")].ok == seen["1"] + other["1"]
    assert window[("2", "canary")].ok == seen["2"] + other["2"]
    assert sum(window[("2", "canary")].outputs.values()) == seen["2"] + other["2"]
    assert set(window[("1", "primary")].outputs) <= {"0", "1", "2"}
    assert window[("2", "canary")].latency[math.inf] == seen["2"] + other["2"]


def _v2_body(row: dict[str, float]) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": column, "datatype": "FP64", "shape": [1], "data": [row[column]]}
            for column in COLUMNS
        ]
    }


def test_a_request_pinned_to_a_role_is_answered_by_it(
    http: httpx.Client, server: ServerProcess, rows: list[dict[str, float]]
) -> None:
    body = {"records": rows[:3]}
    alone = http.post("/predict", json=body, headers={"X-Aliasflow-Role": "canary"})
    assert alone.status_code == 409, alone.text
    assert "no canary" in alone.json()["detail"]
    assert _traffic(http, canary=(_uri_of(server, "2"), 1)).status_code == 200
    for _ in range(20):
        pinned = http.post("/predict", json=body, headers={"X-Aliasflow-Role": "canary"})
        assert pinned.headers["x-aliasflow-model-version"] == "2", pinned.text
        primary = http.post("/invocations", json=body, headers={"X-Aliasflow-Role": "primary"})
        assert primary.headers["x-aliasflow-model-version"] == "1", primary.text
    name = http.get("/metadata").json()["name"]
    # A V2 path naming the canary's version is the canary's.
    by_path = http.post(f"/v2/models/{name}/versions/2/infer", json=_v2_body(rows[0]))
    assert by_path.status_code == 200, by_path.text
    assert by_path.json()["model_version"] == "2"
    wrong = http.post("/predict", json=body, headers={"X-Aliasflow-Role": "shadow"})
    assert wrong.status_code == 422
    assert "primary" in wrong.json()["detail"]


def test_the_shadow_is_never_returned_and_its_agreement_is_counted(
    http: httpx.Client, server: ServerProcess, rows: list[dict[str, float]]
) -> None:
    v2 = _uri_of(server, "2")
    answer = _traffic(http, shadow=(v2, 100))
    assert answer.json() == {"primary": "1", "canary": None, "shadow": "2", "previous": None}
    assert probe_server(server.url).shadow_version == "2"
    before = _stats(http)
    primary_answers = []
    for row in rows:
        response = http.post("/predict", json={"records": [row]})
        assert response.headers["x-aliasflow-model-version"] == "1"
        primary_answers.append(response.json()["predictions"][0])
        time.sleep(0.002)  # the shadow keeps up: nothing dropped
    window = _wait_for_shadow(http, before, "2", len(rows))
    shadow = window[("2", "shadow")]

    # What v2 answers for the same rows, asked directly as a pinned canary.
    assert _traffic(http, canary=(v2, 0)).status_code == 200
    pinned = {"X-Aliasflow-Role": "canary"}
    v2_answers = [
        http.post("/predict", json={"records": [row]}, headers=pinned).json()["predictions"][0]
        for row in rows
    ]
    same = sum(a == b for a, b in zip(primary_answers, v2_answers, strict=True))
    assert 0 < same < len(rows), "v1 and v2 should differ on part of iris"
    assert shadow.outputs == {"agree": same, "disagree": len(rows) - same}
    assert shadow.ok == len(rows)
    # Mirrored requests are the shadow's alone: no answer of v2 reached a client.
    assert window.get(("2", "canary"), VersionStats()).requests == 0
    assert window.get(("2", "primary"), VersionStats()).requests == 0


def _wait_for_shadow(
    http: httpx.Client, before: dict[tuple[str, str], VersionStats], version: str, n: int
) -> dict[tuple[str, str], VersionStats]:
    deadline = time.monotonic() + 30
    while True:
        window = _window(_stats(http), before)
        shadow = window.get((version, "shadow"))
        if (shadow is not None and shadow.requests >= n) or time.monotonic() > deadline:
            return window
        time.sleep(0.1)


def test_keep_previous_makes_the_swap_back_instant_and_delete_drops_it(
    http: httpx.Client, server: ServerProcess
) -> None:
    v1, v2 = _uri_of(server, "1"), _uri_of(server, "2")
    started = time.monotonic()
    swap = admin_request(http, "POST", "/admin/model", {"model_uri": v2, "keep_previous": True})
    load_seconds = time.monotonic() - started
    assert swap.status_code == 200, swap.text
    assert http.get("/readyz").json()["traffic"] == {
        "canary": None,
        "shadow": None,
        "previous": "1",
    }
    instant_before = server.output().count("(instant)")
    started = time.monotonic()
    back = admin_request(http, "POST", "/admin/model", {"model_uri": v1, "keep_previous": True})
    back_seconds = time.monotonic() - started
    assert back.status_code == 200, back.text
    assert back.json()["model"]["version"] == "1"
    assert (
        http.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}).headers[
            "x-aliasflow-model-version"
        ]
        == "1"
    )
    # Nothing was loaded: a swap back costs a fraction of the load it replaced.
    assert back_seconds < max(0.2, load_seconds / 3), (back_seconds, load_seconds)
    assert server.output().count("(instant)") == instant_before + 1
    # The version swapped away from is now the one kept (a toggle).
    assert admin_request(http, "GET", "/admin/traffic").json()["previous"] == "2"

    assert release_previous(server.url, ADMIN_TOKEN)
    assert admin_request(http, "GET", "/admin/traffic").json()["previous"] is None
    again = admin_request(http, "DELETE", "/admin/model/previous")
    assert again.status_code == 200  # idempotent
    assert again.json() == {"primary": "1", "canary": None, "shadow": None, "previous": None}


def test_the_controllers_admin_calls_drive_a_canary_to_promotion(
    http: httpx.Client, server: ServerProcess, iris_models: IrisModels
) -> None:
    """hotswap.py's own requests: traffic, then a promotion by a swap to the canary."""
    desired = _desired(iris_models, "2")
    request_traffic(server.url, ADMIN_TOKEN, desired, Traffic(desired.model_uri, 25))
    assert admin_request(http, "GET", "/admin/traffic").json()["canary"] == "2"
    started = time.monotonic()
    request_hot_swap(server.url, ADMIN_TOKEN, desired, "1")
    assert time.monotonic() - started < 1.0  # the canary is promoted: nothing loaded
    assert admin_request(http, "GET", "/admin/traffic").json() == {
        "primary": "2",
        "canary": None,
        "shadow": None,
        "previous": "1",  # the watched promotion keeps v1 for a rollback
    }
    request_traffic(server.url, ADMIN_TOKEN, desired, Traffic())
    assert probe_server(server.url).traffic() == {
        "canary_version": None,
        "canary_weight": 0,
        "shadow_version": None,
        "shadow_percent": 0,
        "api_keys": "",  # no client keys asked for
    }


def _desired(models: IrisModels, version: str) -> DesiredState:
    return DesiredState(
        name="iris",
        target_kind="local",
        model_name=models.name,
        model_version=version,
        run_id=None,
        image="unused",
        port=8080,
        cpu=1.0,
        memory_gb=1.0,
        env=(),
        strategy="hotswap",
        health_timeout_seconds=60,
        keep_previous=True,
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"canary": {"model_uri": "models:/x/2", "weight": 150}, "shadow": None}, "canary.weight"),
        ({"canary": {"weight": 10}, "shadow": None}, "canary.model_uri: Field required"),
        ({"canary": None, "shadow": {"model_uri": "models:/x/2", "percent": -1}}, "percent"),
        ({"canary": None}, "shadow: Field required"),
        ({"canary": None, "shadow": None, "split": 3}, "split: Extra inputs"),
        ({"canary": None, "shadow": None, "deadline_seconds": 0}, "deadline_seconds"),
    ],
)
def test_bad_traffic_bodies_are_422_naming_the_field(
    http: httpx.Client, body: dict[str, Any], detail: str
) -> None:
    response = admin_request(http, "PUT", "/admin/traffic", body)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]
    assert admin_request(http, "GET", "/admin/traffic").json()["canary"] is None


def test_admin_traffic_routes_need_the_token(http: httpx.Client) -> None:
    assert http.get("/admin/traffic").status_code == 401
    assert http.put("/admin/traffic", json={"canary": None, "shadow": None}).status_code == 401
    assert http.delete("/admin/model/previous").status_code == 401


def test_a_version_that_fails_to_load_leaves_the_split_as_it_was(
    bad_versions: BadVersions,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """Versions of the server's own registered model (bad_versions: v1 and v7 good, v3
    answers NaN, v5 has another input signature)."""
    models = IrisModels(bad_versions.tracking_uri, bad_versions.name, bad_versions.name, "")
    running = start_v1(models, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=running.url, timeout=60, trust_env=False) as client:
            good, nan, incompatible = models.uri(7), models.uri(3), models.uri(5)
            assert _traffic(client, canary=(good, 10)).status_code == 200
            failed = _traffic(client, canary=(good, 20), shadow=(nan, 50))
            assert failed.status_code == 422, failed.text
            assert "NaN" in failed.json()["detail"] or "nan" in failed.json()["detail"]
            after = client.get("/readyz").json()["traffic"]
            assert after["canary"] == {"version": "7", "weight": 10}  # not 20: nothing applied
            assert after["shadow"] is None
            refused = _traffic(client, canary=(incompatible, 10))
            assert refused.status_code == 409, refused.text
            assert "signature" in refused.json()["detail"]
            assert admin_request(client, "GET", "/admin/traffic").json()["canary"] == "7"
            # A shadow's signature may differ: its answers are never returned.
            assert _traffic(client, shadow=(incompatible, 100)).status_code == 200
            answer = client.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
            assert answer.status_code == 200, answer.text
    finally:
        stop_process(running.process)


def test_a_slow_shadow_neither_slows_the_primary_nor_grows_without_bound(
    promotion_models: Any, tmp_path: Path, rows: list[dict[str, float]]
) -> None:
    """The shadow answers in 0.4 s; the primary in a few ms. With a queue of 2, nearly
    every mirror is dropped and counted, and no client waits for the shadow."""
    models = promotion_models
    running = start_v1(
        IrisModels(models.tracking_uri, models.name, models.name, ""),
        tmp_path / "server.log",
        ALIASFLOW_SHADOW_QUEUE_SIZE="2",
    )
    try:
        with httpx.Client(base_url=running.url, timeout=30, trust_env=False) as client:
            slow = f"models:/{models.name}/{models.slow}"
            assert _traffic(client, shadow=(slow, 100)).status_code == 200
            before = _stats(client)
            seconds = []
            for row in rows[:60]:
                started = time.perf_counter()
                response = client.post("/predict", json={"records": [row]})
                seconds.append(time.perf_counter() - started)
                assert response.headers["x-aliasflow-model-version"] == models.good
            seconds.sort()
            assert seconds[len(seconds) // 2] < 0.05, seconds  # the median: no 0.4 s wait
            assert seconds[-1] < 0.3, seconds
            dropped = _dropped(client.get("/metrics").text, models.slow)
            assert dropped >= 40, dropped
            window = _wait_for_shadow(client, before, models.slow, 60 - int(dropped))
            shadow = window[(models.slow, "shadow")]
            assert shadow.ok + dropped == 60
            p99 = shadow.p99_ms()
            assert p99 is not None
            assert p99 >= 300, p99
    finally:
        stop_process(running.process)


def _dropped(metrics_text: str, version: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "aliasflow_server_shadow_requests_total" and sample.labels == {
                "version": version,
                "outcome": "dropped",
            }:
                return float(sample.value)
    return 0.0
