"""The per-version, per-role counters the controller judges a rollout by.

Names and labels are the contract's (docs/server-contract.md, "Metrics the controller
reads"). Every prediction request records three of them, so they are kept as plain
numbers in slotted cells, one set per (version, role) made once when a role is
installed, and turned into Prometheus families only when `/metrics` is read (a custom
collector). prometheus_client's own children cost a lock, label checks and a bucket
walk per call: ~2 µs a request here against ~0.3 µs. Every update happens on the event
loop's thread (the shadow's results are recorded there too), as does every scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# A model whose outputs are free text could grow a label per request: past this many
# distinct outputs per version and role, the rest are counted as "other".
MAX_OUTPUT_LABELS = 100
OUTCOMES = ("ok", "client_error", "server_error")


class Cell:
    """One counter value."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Hist:
    """One histogram: a count per bucket (not cumulative; the last is +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: a value on a bound is in it
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        total = 0
        cumulative = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            cumulative.append((_go_float(bound), float(total)))
        return cumulative


def _go_float(bound: float) -> str:
    """A bucket bound as Prometheus spells it ("+Inf", "0.005", "1.0")."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class RoleMetrics:
    """What one version answered in one role (primary, canary)."""

    __slots__ = ("client_error", "latency", "ok", "outputs", "server_error")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.ok = Cell()
        self.client_error = Cell()
        self.server_error = Cell()
        self.latency = Hist(bounds)
        self.outputs: dict[str, int] = {}

    def count_outputs(self, counts: dict[str, int]) -> None:
        outputs = self.outputs
        for output, n in counts.items():
            if output in outputs:
                outputs[output] += n
            elif len(outputs) < MAX_OUTPUT_LABELS:
                outputs[output] = n
            else:
                outputs["other"] = outputs.get("other", 0) + n


class ShadowMetrics:
    """What one shadow version did with the requests mirrored to it."""

    __slots__ = ("agree", "disagree", "dropped", "error", "latency", "ok")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.ok = Cell()
        self.error = Cell()
        self.dropped = Cell()
        self.agree = Cell()
        self.disagree = Cell()
        self.latency = Hist(bounds)


class VersionMetrics(Collector):
    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self._roles: dict[tuple[str, str], RoleMetrics] = {}
        self._shadows: dict[str, ShadowMetrics] = {}

    def role(self, version: str | None, role: str) -> RoleMetrics:
        key = (version or "", role)
        found = self._roles.get(key)
        if found is None:
            found = self._roles[key] = RoleMetrics(self._bounds)
        return found

    def shadow(self, version: str | None) -> ShadowMetrics:
        key = version or ""
        found = self._shadows.get(key)
        if found is None:
            found = self._shadows[key] = ShadowMetrics(self._bounds)
        return found

    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing to check for clashes at registration: names are fixed

    def collect(self) -> Iterator[Metric]:
        yield from self._collect_roles()
        yield from self._collect_shadows()

    def _collect_roles(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "aliasflow_server_prediction_requests",
            "Prediction requests answered (all protocols), by version, role and outcome.",
            labels=["version", "role", "outcome"],
        )
        latency = HistogramMetricFamily(
            "aliasflow_server_prediction_latency_seconds",
            "Time to answer a prediction request, by version and role.",
            labels=["version", "role"],
        )
        outputs = CounterMetricFamily(
            "aliasflow_server_prediction_outputs",
            "Outputs: predicted class, or regression bin b00..b19, by version and role.",
            labels=["version", "role", "output"],
        )
        for (version, role), stats in list(self._roles.items()):
            cells = (stats.ok, stats.client_error, stats.server_error)
            for outcome, cell in zip(OUTCOMES, cells, strict=True):
                requests.add_metric([version, role, outcome], cell.value)
            latency.add_metric([version, role], stats.latency.buckets(), stats.latency.sum)
            for output, count in list(stats.outputs.items()):
                outputs.add_metric([version, role, output], count)
        return iter((requests, latency, outputs))

    def _collect_shadows(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "aliasflow_server_shadow_requests",
            "Requests mirrored to the shadow version, by outcome (ok, error, dropped).",
            labels=["version", "outcome"],
        )
        agreement = CounterMetricFamily(
            "aliasflow_server_shadow_agreement",
            "Shadow answers equal (agree=true) or not to the primary's.",
            labels=["version", "agree"],
        )
        latency = HistogramMetricFamily(
            "aliasflow_server_shadow_latency_seconds",
            "The shadow version's own time per mirrored request.",
            labels=["version"],
        )
        for version, stats in list(self._shadows.items()):
            requests.add_metric([version, "ok"], stats.ok.value)
            requests.add_metric([version, "error"], stats.error.value)
            requests.add_metric([version, "dropped"], stats.dropped.value)
            agreement.add_metric([version, "true"], stats.agree.value)
            agreement.add_metric([version, "false"], stats.disagree.value)
            latency.add_metric([version], stats.latency.buckets(), stats.latency.sum)
        return iter((requests, agreement, latency))
