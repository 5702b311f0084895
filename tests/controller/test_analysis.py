"""Analysis of a version under traffic: parsing the server's counters, windows, verdicts."""

from __future__ import annotations

import math

import pytest

from controller.core.manifest import Analysis
from controller.reconcile.analysis import (
    VerdictState,
    VersionStats,
    combined,
    judge,
    parse_server_metrics,
    prediction_shift,
)

METRICS = """\
# HELP aliasflow_server_prediction_requests_total Prediction requests.
# TYPE aliasflow_server_prediction_requests_total counter
aliasflow_server_prediction_requests_total{version="2",role="primary",outcome="ok"} 90.0
aliasflow_server_prediction_requests_total{version="2",role="primary",outcome="server_error"} 10.0
aliasflow_server_prediction_requests_total{version="3",role="canary",outcome="ok"} 5.0
# HELP aliasflow_server_prediction_latency_seconds Latency.
# TYPE aliasflow_server_prediction_latency_seconds histogram
aliasflow_server_prediction_latency_seconds_bucket{version="2",role="primary",le="0.01"} 50.0
aliasflow_server_prediction_latency_seconds_bucket{version="2",role="primary",le="0.1"} 99.0
aliasflow_server_prediction_latency_seconds_bucket{version="2",role="primary",le="1.0"} 100.0
aliasflow_server_prediction_latency_seconds_bucket{version="2",role="primary",le="+Inf"} 100.0
aliasflow_server_prediction_latency_seconds_count{version="2",role="primary"} 100.0
aliasflow_server_prediction_latency_seconds_sum{version="2",role="primary"} 3.0
# HELP aliasflow_server_prediction_outputs_total Outputs.
# TYPE aliasflow_server_prediction_outputs_total counter
aliasflow_server_prediction_outputs_total{version="2",role="primary",output="setosa"} 30.0
aliasflow_server_prediction_outputs_total{version="2",role="primary",output="virginica"} 60.0
"""


def test_the_servers_counters_parse_by_version_and_role() -> None:
    stats = parse_server_metrics(METRICS)
    v2 = stats[("2", "primary")]
    assert (v2.ok, v2.server_errors, v2.requests) == (90, 10, 100)
    assert v2.error_rate == pytest.approx(0.1)
    assert v2.p99_ms() == pytest.approx(100.0)  # the 99th of 100 is the last of le=0.1
    assert v2.outputs == {"setosa": 30, "virginica": 60}
    assert stats[("3", "canary")].ok == 5
    assert combined(stats, "3").requests == 5


def test_p99_interpolates_within_the_bucket() -> None:
    stats = VersionStats(ok=100, latency={0.01: 0.0, 0.02: 100.0, math.inf: 100.0})
    assert stats.p99_ms() == pytest.approx(19.9)
    assert VersionStats().p99_ms() is None


def test_a_window_is_the_difference_of_two_readings() -> None:
    before = VersionStats(ok=10, server_errors=1, latency={0.1: 11.0}, outputs={"a": 11})
    after = VersionStats(ok=20, server_errors=5, latency={0.1: 25.0}, outputs={"a": 25})
    window = after.minus(before)
    assert (window.ok, window.server_errors, window.outputs) == (10, 4, {"a": 14})
    assert VersionStats.from_json(after.as_json()) == after


@pytest.mark.parametrize(
    ("new", "old", "shift"),
    [
        ({"a": 50, "b": 50}, {"a": 5, "b": 5}, 0.0),
        ({"a": 100}, {"b": 7}, 1.0),
        ({"a": 75, "b": 25}, {"a": 50, "b": 50}, 0.25),
        ({}, {"a": 1}, None),
    ],
)
def test_prediction_shift_is_total_variation(
    new: dict[str, float], old: dict[str, float], shift: float | None
) -> None:
    assert prediction_shift(new, old) == (None if shift is None else pytest.approx(shift))


RULES = Analysis.model_validate(
    {"minRequests": 50, "maxErrorRate": 0.01, "maxLatencyP99Ms": 250, "maxPredictionShift": 0.25}
)
BASELINE = VersionStats(
    ok=500, latency={0.05: 500.0, math.inf: 500.0}, outputs={"a": 250, "b": 250}
)


def window(
    ok: float, errors: float = 0, slow: bool = False, outputs: dict[str, float] | None = None
) -> VersionStats:
    total = ok + errors
    buckets = {0.05: 0.0 if slow else total, 1.0: total, math.inf: total}
    return VersionStats(
        ok=ok,
        server_errors=errors,
        latency=buckets,
        outputs=outputs or {"a": total / 2, "b": total / 2},
    )


@pytest.mark.parametrize(
    ("new", "state", "failure"),
    [
        (window(30), VerdictState.NOT_ENOUGH_DATA, None),
        (window(100), VerdictState.PASSING, None),
        (window(90, errors=10), VerdictState.FAILING, "error rate 10.00% > 1.00%"),
        (window(100, slow=True), VerdictState.FAILING, "p99 990 ms > 250 ms"),
        (
            window(1000, outputs={"a": 900, "b": 100}),
            VerdictState.FAILING,
            "prediction shift 0.40 > 0.25",
        ),
        # The same shift on 60 answers is within what chance allows (0.21 + 0.10).
        (window(60, outputs={"a": 54, "b": 6}), VerdictState.PASSING, None),
        # Chance alone: 60 answers of the baseline's own distribution, unevenly drawn.
        (window(60, outputs={"a": 39, "b": 21}), VerdictState.PASSING, None),
    ],
)
def test_verdicts(new: VersionStats, state: VerdictState, failure: str | None) -> None:
    verdict = judge(RULES, new, BASELINE)
    assert verdict.state is state
    if failure is not None:
        assert any(failure in text for text in verdict.failures)
        assert failure in str(verdict)
    assert (verdict.state is VerdictState.PASSING) == (state is VerdictState.PASSING)


def test_client_errors_are_not_the_versions_failures() -> None:
    bad_input = VersionStats(ok=50, client_errors=50, latency={0.05: 100.0, math.inf: 100.0})
    assert judge(RULES, bad_input, BASELINE).state is VerdictState.PASSING


SHADOW_METRICS = """\
aliasflow_server_shadow_requests_total{version="3",outcome="ok"} 90.0
aliasflow_server_shadow_requests_total{version="3",outcome="error"} 2.0
aliasflow_server_shadow_requests_total{version="3",outcome="dropped"} 8.0
aliasflow_server_shadow_agreement_total{version="3",agree="true"} 81.0
aliasflow_server_shadow_agreement_total{version="3",agree="false"} 9.0
aliasflow_server_shadow_latency_seconds_bucket{version="3",le="0.01"} 92.0
aliasflow_server_shadow_latency_seconds_bucket{version="3",le="+Inf"} 92.0
"""


def test_the_shadows_counters_read_as_the_shadow_role() -> None:
    stats = parse_server_metrics(METRICS + SHADOW_METRICS)
    shadow = stats[("3", "shadow")]
    assert (shadow.ok, shadow.server_errors) == (90, 2)  # dropped ones were never answered
    assert shadow.agreement == pytest.approx(0.9)
    assert shadow.p99_ms() == pytest.approx(9.9)  # interpolated within (0, 10 ms]
    # The shadow's answers are never returned: they are not version 3's traffic.
    assert combined(stats, "3").requests == 5
