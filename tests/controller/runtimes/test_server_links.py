"""`ServerLinks`: what linked servers are told, and what they report (kept for a TTL)."""

from __future__ import annotations

import pytest

from controller.reconcile import analysis
from controller.reconcile.analysis import parse_server_metrics
from controller.runtimes.counters import (
    LATENCY,
    MAX_SERIES,
    OUTPUTS,
    REQUESTS,
    SAMPLES,
    SHADOW_AGREEMENT,
    SHADOW_LATENCY,
    SHADOW_REQUESTS,
    CountersError,
    parse_counters,
)
from controller.runtimes.link import (
    MAX_REPORTS,
    AppliedTraffic,
    DesiredModel,
    LinkTraffic,
    RoleModel,
    ServerLinks,
)

V1 = DesiredModel("models:/iris/1", "1")
V2 = DesiredModel("models:/iris/2", "2")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_decision_holds_for_every_revision_unless_one_is_pinned_until_the_next() -> None:
    links = ServerLinks()
    assert links.desired("iris") is None
    links.decide("iris", V1)
    links.decide("iris", V2, revision="iris--r2")
    assert links.desired("iris") == V1
    assert links.desired("iris", "iris--r1") == V1
    assert links.desired("iris", "iris--r2") == V2
    links.decide("iris", V2)  # the proven revision takes over: pins end
    assert links.desired("iris", "iris--r1") == V2
    assert links.desired("iris", "iris--r2") == V2


def test_a_seed_never_overrides_a_decision_of_this_process() -> None:
    links = ServerLinks()
    links.seed("iris", V1)
    assert links.desired("iris") == V1
    links.decide("iris", V2)
    links.seed("iris", V1)  # a tag not re-written yet (a PATCH that failed)
    assert links.desired("iris") == V2


def test_reports_live_for_their_ttl_and_the_newest_per_replica_counts() -> None:
    clock = Clock()
    links = ServerLinks(report_ttl=3.0, clock=clock)
    links.report("iris", "r-a", "1", True)
    clock.now = 2.0
    links.report("iris", "r-b", "1", True)
    links.report("iris", "r-a", "2", True, revision="iris--r2")
    assert {n: r.served_version for n, r in links.reports("iris").items()} == {
        "r-a": "2",
        "r-b": "1",
    }
    clock.now = 5.5  # r-b reported at 2.0, r-a at 2.0: both older than 3 s
    assert links.reports("iris") == {}
    links.forget("iris")
    assert links.desired("iris") is None


def test_a_flood_of_replica_names_keeps_the_newest() -> None:
    clock = Clock()
    links = ServerLinks(report_ttl=1e9, clock=clock)
    for i in range(MAX_REPORTS + 5):
        clock.now = float(i)
        links.report("iris", f"r-{i}", "1", True)
    reports = links.reports("iris")
    assert len(reports) == MAX_REPORTS
    assert "r-0" not in reports
    assert f"r-{MAX_REPORTS + 4}" in reports


CANARY = LinkTraffic(RoleModel("models:/iris/2", "2", 20), None)
SHADOW = RoleModel("models:/iris/3", "3", 100)


def test_the_split_is_recorded_and_a_new_primary_ends_the_canary_but_not_the_shadow() -> None:
    links = ServerLinks()
    assert links.traffic("iris") == LinkTraffic()
    links.decide("iris", V1)
    links.decide_traffic("iris", LinkTraffic(CANARY.canary, SHADOW))
    assert links.traffic("iris").applied() == AppliedTraffic("2", 20, "3", 100)
    # A pinned revision (a rollout being proven) does not end it.
    links.decide("iris", V2, revision="iris--r2")
    assert links.traffic("iris").canary == CANARY.canary
    links.decide("iris", V2)  # the canary promoted
    assert links.traffic("iris") == LinkTraffic(None, SHADOW)


def test_a_seed_brings_the_recorded_split_only_without_a_decision() -> None:
    links = ServerLinks()
    links.seed("iris", V1, CANARY)
    assert links.traffic("iris") == CANARY
    links.decide_traffic("iris", LinkTraffic())
    links.seed("iris", V1, CANARY)  # tags not re-written yet
    assert links.traffic("iris") == LinkTraffic()


def counters(ok: float, canary_ok: float = 0.0) -> str:
    requests = "aliasflow_server_prediction_requests"
    primary, canary = 'role="primary",version="1"', 'role="canary",version="2"'
    lines = [
        f'{requests}_total{{outcome="ok",{primary}}} {ok}',
        f'{requests}_total{{outcome="ok",{canary}}} {canary_ok}',
        f'aliasflow_server_prediction_latency_seconds_bucket{{le="+Inf",{primary}}} {ok}',
        # Not a count: never summed.
        f'{requests}_created{{outcome="ok",{primary}}} 1.7e9',
    ]
    return "\n".join(lines) + "\n"


def summed_stats(links: ServerLinks) -> dict[tuple[str, str], float]:
    text = links.metrics("iris")
    assert text is not None
    return {key: stats.requests for key, stats in parse_server_metrics(text).items()}


def test_the_deployment_counters_are_the_sum_over_replicas_and_never_fall() -> None:
    clock = Clock()
    links = ServerLinks(report_ttl=3.0, clock=clock)
    assert links.metrics("iris") is None
    links.report("iris", "r-a", "1", True, counters=parse_counters(counters(10, 2)))
    links.report("iris", "r-b", "1", True, counters=parse_counters(counters(5, 1)))
    assert summed_stats(links) == {("1", "primary"): 15, ("2", "canary"): 3}
    assert "_created" not in (links.metrics("iris") or "")
    # r-b restarts: its counters begin again, the sum goes on from where it was.
    links.report("iris", "r-b", "1", True, counters=parse_counters(counters(1, 0)))
    assert summed_stats(links) == {("1", "primary"): 16, ("2", "canary"): 3}
    # r-a stops reporting (scaled in): its report expires, its counts stay counted.
    clock.now = 2.0
    links.report("iris", "r-b", "1", True, counters=parse_counters(counters(4, 2)))
    clock.now = 4.0
    assert list(links.reports("iris")) == ["r-b"]
    assert summed_stats(links) == {("1", "primary"): 19, ("2", "canary"): 5}
    # A replica that was only late goes on from its own counts: nothing counted twice.
    links.report("iris", "r-a", "1", True, counters=parse_counters(counters(12, 2)))
    assert summed_stats(links) == {("1", "primary"): 21, ("2", "canary"): 5}
    links.forget("iris")
    assert links.metrics("iris") is None


def test_a_window_over_the_sum_counts_every_request_across_a_replica_leaving() -> None:
    """The analysis' window is the difference of two readings: with a replica gone in
    between, no bucket or count of it goes negative."""
    clock = Clock()
    links = ServerLinks(report_ttl=1.0, clock=clock)
    links.report("iris", "r-a", "1", True, counters=parse_counters(counters(100)))
    links.report("iris", "r-b", "1", True, counters=parse_counters(counters(100)))
    before = parse_server_metrics(links.metrics("iris") or "")[("1", "primary")]
    clock.now = 5.0
    links.report("iris", "r-b", "1", True, counters=parse_counters(counters(130)))
    after = parse_server_metrics(links.metrics("iris") or "")[("1", "primary")]
    window = after.minus(before)
    assert window.requests == 30
    assert all(v >= 0 for v in window.latency.values())


def test_a_flood_of_replicas_folds_the_oldest_counters_without_losing_them() -> None:
    clock = Clock()
    links = ServerLinks(report_ttl=1e9, clock=clock)
    for i in range(MAX_REPORTS + 3):
        clock.now = float(i)
        links.report("iris", f"r-{i}", "1", True, counters=parse_counters(counters(1)))
    assert summed_stats(links) == {("1", "primary"): MAX_REPORTS + 3, ("2", "canary"): 0}


def test_reported_counters_that_are_not_a_model_servers_are_refused_with_the_reason() -> None:
    assert parse_counters("") == {}
    with pytest.raises(CountersError, match="not Prometheus text"):
        parse_counters("aliasflow_server_prediction_requests_total{version=1} x\n")
    with pytest.raises(CountersError, match="not a count"):
        parse_counters('aliasflow_server_prediction_requests_total{version="1"} -3\n')
    with pytest.raises(CountersError, match="not a count"):
        parse_counters('aliasflow_server_prediction_requests_total{version="1"} NaN\n')
    with pytest.raises(CountersError, match="unexpected label"):
        parse_counters('aliasflow_server_prediction_requests_total{user="bob"} 3\n')
    flood = "".join(
        f'aliasflow_server_prediction_outputs_total{{output="c{i}"}} 1\n'
        for i in range(MAX_SERIES + 1)
    )
    with pytest.raises(CountersError, match="more than"):
        parse_counters(flood)
    # Other families (a newer server's) are not summed, and not an error.
    assert parse_counters("process_cpu_seconds_total 3\n") == {}


def test_the_families_reported_are_the_ones_the_analysis_reads() -> None:
    assert reported_samples() == SAMPLES
    assert {REQUESTS, LATENCY, OUTPUTS, SHADOW_REQUESTS, SHADOW_LATENCY, SHADOW_AGREEMENT} == {
        analysis.REQUESTS,
        analysis.LATENCY,
        analysis.OUTPUTS,
        analysis.SHADOW_REQUESTS,
        analysis.SHADOW_LATENCY,
        analysis.SHADOW_AGREEMENT,
    }


def reported_samples() -> frozenset[str]:
    from model_server.link import REPORTED_SAMPLES

    return REPORTED_SAMPLES
