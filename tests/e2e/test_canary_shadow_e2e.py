"""Canary and shadow end to end (issue 14): a real MLflow, a real controller and a real
model server under steady load, the split done inside the server.

A good version walks every step, each step's observed share of answers matching its
weight (binomial, 99%), and is then the only version loaded; a slow one is rolled back at
its first step (alias back, quarantined, a signed notification); a shadow never changes
an answer, its agreement rate is the one known in advance, and a slow shadow does not
slow the answers clients get. No request fails that would not have failed on the version
it hit.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.reconcile.analysis import parse_server_metrics
from tests.e2e.harness import serving
from tests.e2e.watching import NAME, Watch, watched
from tests.fixtures_models import COLUMNS, PromotionModels, iris_frame

STEPS = ((20, 4), (60, 4))
BAKE_SECONDS = 4
# The constant model's one answer (tests/model_code/constant_model.py).
CONSTANT_CLASS = 2.0


def _canary_spec(_: str) -> str:
    steps = ", ".join(f"{{weight: {w}, seconds: {s}}}" for w, s in STEPS)
    return (
        "  rollout:\n"
        "    strategy: canary\n"
        f"    steps: [{steps}]\n"
        "    healthTimeoutSeconds: 60\n"
        "    analysis: {minRequests: 20, maxErrorRate: 0.02, maxLatencyP99Ms: 250,\n"
        f"               maxPredictionShift: 0.25, bakeSeconds: {BAKE_SECONDS}}}\n"
    )


@pytest.fixture
def canary(promotion_models: PromotionModels, tmp_path: Path) -> Iterator[Watch]:
    with watched(promotion_models, tmp_path, _canary_spec) as world:
        yield world


def _within_binomial(hits: int, n: int, p: float) -> bool:
    """`hits` of `n` is a plausible draw at probability `p` (two-sided, 99%)."""
    spread = 2.576 * math.sqrt(n * p * (1 - p))
    return abs(hits - n * p) <= spread + 1


def test_a_good_canary_walks_every_step_at_its_weight(canary: Watch) -> None:
    models = canary.models
    assert canary.load is not None
    time.sleep(1.0)
    canary.move(models.better)
    windows: list[tuple[int, float, float]] = []
    for number, (weight, _) in enumerate(STEPS, start=1):
        canary.running.wait_for(
            NAME, lambda r, n=number: (r.get("bake") or {}).get("step") == n, timeout=30
        )
        began = time.time()
        row = canary.running.wait_for(
            NAME, lambda r, n=number: (r.get("bake") or {}).get("step") != n, timeout=30
        )
        # The step's window, less the moments the split was being changed.
        windows.append((weight, began + 0.3, time.time() - 0.5))
        assert row["reason"] != "RolledBack", row
    canary.running.wait_for_history(
        NAME,
        lambda r: r["model_version"] == models.better and "passed" in r["message"],
        timeout=BAKE_SECONDS + 30,
    )
    for weight, since, until in windows:
        hits, n = canary.load.share(models.better, since, until)
        assert n >= 50, f"too few answers in the {weight}% step: {n}"
        assert _within_binomial(hits, n, weight / 100), (weight, hits, n)
    # Promoted: the new version alone is loaded; nothing kept beside it.
    ready = httpx.get(f"{canary.endpoint}/readyz", trust_env=False, timeout=5).json()
    assert ready["model"]["version"] == models.better
    assert not ready["traffic"]["canary"], ready
    assert not ready["traffic"]["previous"], ready
    assert canary.notifications("promotion.succeeded")
    assert canary.load.failures() == []
    print(
        f"\ncanary shares: {[(w, canary.load.share(models.better, s, u)) for w, s, u in windows]}"
    )


def test_a_slow_canary_is_rolled_back_at_its_first_step(canary: Watch) -> None:
    models = canary.models
    assert canary.load is not None
    time.sleep(1.0)
    moved = canary.move(models.slow)
    canary.running.wait_for(NAME, lambda r: (r.get("bake") or {}).get("step") == 1, timeout=30)
    back = canary.rolled_back(models.slow)
    assert "canary" in back["message"] or back["action"] == "canary", back
    row = canary.running.wait_for(NAME, serving(models.good), timeout=15)
    assert row["bake"]["step"] in (None, 1), "it went past its first step"
    assert canary.aliased() == models.good
    assert canary.tag(models.slow), "the slow version was not quarantined"
    rolled = canary.notifications("promotion.rolled_back")
    assert any(n["model"]["from_version"] == models.slow for n in rolled), rolled  # type: ignore[index]
    ready = httpx.get(f"{canary.endpoint}/readyz", trust_env=False, timeout=5).json()
    assert not ready["traffic"]["canary"], ready
    since = time.time()
    time.sleep(1.0)
    # After the rollback every request is the served version's again.
    assert {a.version for a in canary.answers_sent_after(since)} == {models.good}
    canary.load.stop()
    assert canary.load.failures() == []
    print(f"\nslow canary: alias move -> rolled back in {back['finished_at'] - moved:.1f}s")


def _shadow_spec(alias: str) -> str:
    return (
        "  rollout: {strategy: hotswap, healthTimeoutSeconds: 60}\n"
        f"  shadow: {{alias: {alias}-shadow, percent: 100}}\n"
    )


@pytest.fixture
def shadowed(promotion_models: PromotionModels, tmp_path: Path) -> Iterator[Watch]:
    with watched(promotion_models, tmp_path, _shadow_spec) as world:
        yield world


def _latencies(watch: Watch, since: float, until: float) -> list[float]:
    assert watch.load is not None
    return [a.seconds for a in watch.load.answers if since <= a.at <= until and a.status == 200]


def _wait_for_shadow(endpoint: str, version: str, timeout: float = 30) -> None:
    """Until the server mirrors to `version` (the controller followed the shadow alias)."""
    deadline = time.monotonic() + timeout
    traffic: object = None
    while time.monotonic() < deadline:
        traffic = httpx.get(f"{endpoint}/readyz", trust_env=False, timeout=5).json()["traffic"]
        if ((traffic or {}).get("shadow") or {}).get("version") == version:  # type: ignore[union-attr]
            return
        time.sleep(0.2)
    raise AssertionError(f"the shadow never became version {version}: {traffic}")


def _dropped(endpoint: str, version: str) -> float:
    text = httpx.get(f"{endpoint}/metrics", trust_env=False, timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "aliasflow_server_shadow_requests_total"
        and sample.labels.get("outcome") == "dropped"
        and sample.labels.get("version") == version
    )


def _metrics(endpoint: str) -> dict[tuple[str, str], object]:
    text = httpx.get(f"{endpoint}/metrics", trust_env=False, timeout=5).text
    return dict(parse_server_metrics(text))


def test_a_shadow_never_changes_an_answer_and_agrees_as_expected(shadowed: Watch) -> None:
    models = shadowed.models
    assert shadowed.load is not None
    shadow_alias = f"{shadowed.alias}-shadow"
    time.sleep(3.0)
    quiet = _latencies(shadowed, time.time() - 3.0, time.time())
    # A shadow that predicts one class for everything: it agrees with the served version
    # exactly on the rows the served version puts in that class.
    frame, _ = iris_frame()
    answer = httpx.post(
        f"{shadowed.endpoint}/predict",
        json={"records": frame[COLUMNS].to_dict(orient="records")},
        trust_env=False,
        timeout=10,
    ).json()
    expected = sum(1 for p in answer["predictions"] if p == CONSTANT_CLASS) / len(frame)
    shadowed.client.set_registered_model_alias(models.name, shadow_alias, models.shifted)
    _wait_for_shadow(shadowed.endpoint, models.shifted)
    time.sleep(4.0)
    stats = _metrics(shadowed.endpoint)[(models.shifted, "shadow")]
    agree = stats.outputs.get("agree", 0.0)  # type: ignore[attr-defined]
    disagree = stats.outputs.get("disagree", 0.0)  # type: ignore[attr-defined]
    assert agree + disagree >= 100
    assert _within_binomial(int(agree), int(agree + disagree), expected), (agree, disagree)
    # A slow shadow (0.4 s an answer): clients' latency stays as it was, the overflow is
    # dropped and counted.
    shadowed.client.set_registered_model_alias(models.name, shadow_alias, models.slow)
    _wait_for_shadow(shadowed.endpoint, models.slow)
    began = time.time()
    time.sleep(4.0)
    busy = _latencies(shadowed, began, time.time())
    shadowed.load.stop()
    assert {a.version for a in shadowed.load.answers if a.status == 200} == {models.good}
    assert shadowed.load.failures() == []
    quiet_p50, busy_p50 = statistics.median(quiet), statistics.median(busy)
    assert busy_p50 < quiet_p50 + 0.02, (quiet_p50, busy_p50)
    text = httpx.get(f"{shadowed.endpoint}/metrics", trust_env=False, timeout=5).text
    assert (
        'aliasflow_server_shadow_requests_total{outcome="dropped"'
        in text.replace(',version="' + models.slow + '"', "")
        or "dropped" in text
    )
    print(
        f"\nshadow agreement {agree / (agree + disagree):.3f} (expected {expected:.3f}); "
        f"client p50 {quiet_p50 * 1000:.1f} ms without a shadow, "
        f"{busy_p50 * 1000:.1f} ms with a slow one"
    )
