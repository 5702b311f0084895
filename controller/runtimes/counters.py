"""Prediction counters that linked replicas report, and their sum over a deployment.

A Container Apps request reaches one replica of many, so no single server's `/metrics`
says what a version did; each replica sends its own cumulative counters with its report
(docs/server-contract.md, "The server asks the controller"), filtered to the families
the analysis reads (`controller/reconcile/analysis.py`). Their sum is the deployment's.

The analysis judges a window as the difference of two readings, so the sum must only
grow, as one server's counters do. Replicas come and go and restart, so each replica's
series are kept monotone the way Prometheus' `increase()` treats a counter reset: a
series that falls (a restart) or vanishes adds what it had reached to an offset. A
replica that stops reporting keeps its last counts in the sum (what it answered was
answered). Only a restarted controller starts the sums again, lower: the analysis sees
that as a server restart and starts its window again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from controller.core.servermetrics import (
    LATENCY,
    OUTPUTS,
    REQUESTS,
    SHADOW_AGREEMENT,
    SHADOW_LATENCY,
    SHADOW_REQUESTS,
)

# The samples a report may carry; others (a newer server's, `_created` timestamps) are
# not summed: a timestamp is not a count.
SAMPLES = frozenset(
    {
        f"{REQUESTS}_total",
        f"{LATENCY}_bucket",
        f"{LATENCY}_count",
        f"{LATENCY}_sum",
        f"{OUTPUTS}_total",
        f"{SHADOW_REQUESTS}_total",
        f"{SHADOW_LATENCY}_bucket",
        f"{SHADOW_LATENCY}_count",
        f"{SHADOW_LATENCY}_sum",
        f"{SHADOW_AGREEMENT}_total",
    }
)
LABELS = frozenset({"version", "role", "outcome", "output", "le", "agree"})
# A few versions in four roles, ~20 latency buckets and a class or bin per output: a few
# hundred series. Far more is not a model server's report.
MAX_SERIES = 2000
MAX_LABEL_CHARS = 128

# (sample name, sorted (label, value) pairs)
Series = tuple[str, tuple[tuple[str, str], ...]]
Counters = dict[Series, float]


class CountersError(ValueError):
    """Reported counters that are not what a model server sends."""


def parse_counters(text: str) -> Counters:
    """The known prediction series of a replica's report; raises `CountersError` saying
    what is wrong with text that is not Prometheus text of non-negative counts.

    The text exposition format's sample lines (`name{label="value",...} value`), read by
    a strict parser of our own: prometheus_client's costs ~7 ms for a report of a few
    versions, and a controller takes a report per replica and poll."""
    found: Counters = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise CountersError(f"line {number}: not Prometheus text exposition: {line[:80]!r}")
        name = match["name"]
        if name not in SAMPLES:
            continue
        labels = _labels(match["labels"] or "", number)
        series = (name, tuple(sorted(labels.items())))
        found[series] = _count(match["value"], name, number)
        if len(found) > MAX_SERIES:
            raise CountersError(f"more than {MAX_SERIES} series")
    return found


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?"
    r"[ \t]+(?P<value>\S+)(?:[ \t]+-?\d+)?[ \t]*$"
)
_LABEL = re.compile(r'\s*(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _labels(raw: str, number: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    at = 0
    while at < len(raw.rstrip()):
        match = _LABEL.match(raw, at)
        if match is None:
            raise CountersError(
                f"line {number}: not Prometheus text exposition: labels {raw[:80]!r}"
            )
        key = match["key"]
        if key not in LABELS:
            raise CountersError(f"line {number}: unexpected label {key!r}")
        value = _unescape(match["value"])
        if len(value) > MAX_LABEL_CHARS:
            raise CountersError(
                f"line {number}: label {key} longer than {MAX_LABEL_CHARS} characters"
            )
        labels[key] = value
        at = match.end()
    return labels


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def _count(raw: str, name: str, number: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise CountersError(f"line {number}: {name}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise CountersError(f"line {number}: {name}: {value} is not a count")
    return value


def render(counters: Mapping[Series, float]) -> str:
    """Prometheus text (untyped samples), which `analysis.parse_server_metrics` reads."""
    lines = []
    for (name, labels), value in sorted(counters.items()):
        inner = ",".join(f'{key}="{_escape(text)}"' for key, text in labels)
        lines.append(f"{name}{{{inner}}} {value!r}" if inner else f"{name} {value!r}")
    return "\n".join(lines) + "\n" if lines else ""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def add(total: Counters, more: Mapping[Series, float]) -> None:
    for series, value in more.items():
        total[series] = total.get(series, 0.0) + value


class ReplicaCounters:
    """One replica's series, made monotone across its restarts."""

    def __init__(self) -> None:
        self._last: Counters = {}
        self._offsets: Counters = {}
        self.seen_at = 0.0

    def update(self, reading: Counters, at: float) -> None:
        for series, before in self._last.items():
            now = reading.get(series)
            if now is None or now < before:
                # A restart (or a series the server dropped): what it had counted stays.
                self._offsets[series] = self._offsets.get(series, 0.0) + before
        self._last = dict(reading)
        self.seen_at = at

    def totals(self) -> Counters:
        total = dict(self._offsets)
        add(total, self._last)
        return total


def summed(replicas: Iterable[ReplicaCounters], folded: Mapping[Series, float]) -> Counters:
    total = dict(folded)
    for replica in replicas:
        add(total, replica.totals())
    return total
