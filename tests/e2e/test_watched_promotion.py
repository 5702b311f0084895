"""Safe promotion end to end: a real MLflow, a real controller, a real model server, under
steady load, with signed notifications to a real receiver.

One deployment walks through what issue 13 asks: a worse model moved with the plain
MLflow client is refused by the gate; a good version passes its bake; a slow one, one
that errs on a share of inputs and one whose predictions shift are each rolled back
within the bake (alias back, version quarantined, notification signed); a controller
stopped mid-bake resumes it. The load generator records which version answered every
request: no request may fail that would not have failed on the version it hit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import serving, start_controller
from tests.e2e.watching import NAME, Watch, watched, write_manifest
from tests.fixtures_models import PromotionModels

# Long enough for the slow version (one 0.4 s answer at a time) to answer minRequests.
BAKE_SECONDS = 10


def _spec(gates: bool) -> str:
    promotion = "  promotion: {require: ['accuracy>=served'], onFailure: revert}\n" if gates else ""
    return (
        f"{promotion}"
        "  rollout:\n"
        "    strategy: hotswap\n"
        "    healthTimeoutSeconds: 60\n"
        "    analysis: {minRequests: 15, maxErrorRate: 0.02, maxLatencyP99Ms: 250,\n"
        f"               maxPredictionShift: 0.25, bakeSeconds: {BAKE_SECONDS}}}\n"
    )


@pytest.fixture
def watch(promotion_models: PromotionModels, tmp_path: Path) -> Iterator[Watch]:
    with watched(promotion_models, tmp_path, lambda _: _spec(gates=False)) as world:
        yield world


def test_bad_versions_are_rolled_back_quarantined_and_announced(watch: Watch) -> None:
    models = watch.models
    assert watch.load is not None
    timings = {}
    for bad in (models.slow, models.flaky, models.shifted):
        time.sleep(1.0)  # the served version's figures before the switch
        moved = watch.move(bad)
        back = watch.rolled_back(bad)
        bake = watch.running.deployment(NAME)["bake"]
        timings[bad] = (
            round(back["finished_at"] - moved, 2),
            round(bake["finished_at"] - bake["failed_at"], 2),
        )
        assert watch.aliased() == models.good
        assert watch.tag(bad), f"version {bad} was not quarantined"
        rolled = watch.notifications("promotion.rolled_back")
        assert any(n["model"]["from_version"] == bad for n in rolled), rolled  # type: ignore[index]
        # Moving the alias to a quarantined version rolls nothing out.
        watch.move(bad)
        watch.running.wait_for(NAME, lambda r: r["reason"] == "Quarantined", timeout=15)
        since = time.time()
        time.sleep(0.5)
        after = watch.answers_sent_after(since)
        assert after, "no answers while the alias pointed at a quarantined version"
        assert {a.version for a in after} == {models.good}
        watch.move(models.good)
        watch.running.wait_for(NAME, serving(models.good), timeout=15)
    watch.load.stop()
    failed = watch.load.failures()
    # Only the version that errs on long petals failed requests, and only its own.
    assert {a.version for a in failed} <= {models.flaky}, failed[:5]
    print(f"\nversion: (alias move -> rolled back s, breach found -> rolled back s): {timings}")


def test_gate_good_bake_and_a_controller_restarted_mid_bake(watch: Watch) -> None:
    models = watch.models
    manifests = watch.settings.manifests_dir
    write_manifest(manifests, models.name, watch.alias, _spec(gates=True))
    watch.running.wait_for_polls()
    # A worse model, moved with the plain MLflow client: refused, alias back.
    watch.move(models.worse)
    row = watch.running.wait_for_history(NAME, lambda r: r["reason"] == "GateFailed", timeout=30)
    assert "accuracy 0.82 < served" in row["message"]
    assert watch.aliased() == models.good
    assert watch.notifications("promotion.refused")
    # The bad versions log no accuracy at all: from here on, only the analysis judges.
    write_manifest(manifests, models.name, watch.alias, _spec(gates=False))
    watch.running.wait_for_polls()
    # A good version passes its bake.
    time.sleep(1.0)
    watch.move(models.better)
    watch.running.wait_for(
        NAME,
        lambda r: (
            (r.get("bake") or {}).get("state") == "Baking"
            and r["bake"]["to_version"] == models.better
        ),
        timeout=30,
    )
    watch.running.wait_for_history(
        NAME,
        lambda r: r["model_version"] == models.better and "passed" in r["message"],
        timeout=BAKE_SECONDS + 20,
    )
    assert watch.notifications("promotion.succeeded")
    # Stopped mid-bake, a new controller on the same store resumes the bake.
    time.sleep(1.0)
    watch.move(models.slow)
    watch.running.wait_for(NAME, lambda r: r["served_version"] == models.slow, timeout=30)
    watch.running.stop()
    watch.running = start_controller(watch.settings)
    watch.rolled_back(models.slow)
    watch.running.wait_for(NAME, serving(models.better), timeout=15)
    assert watch.aliased() == models.better
