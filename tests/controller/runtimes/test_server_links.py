"""`ServerLinks`: what linked servers are told, and what they report (kept for a TTL)."""

from __future__ import annotations

from controller.runtimes.link import MAX_REPORTS, DesiredModel, ServerLinks

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
