"""Judging a version while it takes traffic: pure functions over the server's metrics.

The model server counts, per version and role (primary, canary), the prediction requests
it answered (`outcome`: ok, client_error, server_error), their latency (a histogram) and
its outputs (`output`: the predicted class, or a bin of a regression output, with the
same bins for every version of one server). These counters only grow, so what a version
did during a window is the difference of two readings.

A verdict compares the new version's window with the manifest's thresholds and with the
version it replaced (its figures before the switch): error rate, p99 latency and
prediction shift — the total variation distance between the two distributions of
outputs (0: identical, 1: disjoint). Fewer than `minRequests` is "not enough data yet",
never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from controller.core.manifest import Analysis
from controller.core.servermetrics import (
    LATENCY,
    OUTPUTS,
    REQUESTS,
    SHADOW_AGREEMENT,
    SHADOW_LATENCY,
    SHADOW_REQUESTS,
)

# The shadow's counters are read into the role "shadow": its requests (ok, error;
# dropped ones are not requests it answered), latency, and agreement as two "outputs".
SHADOW = "shadow"


@dataclass(frozen=True)
class VersionStats:
    """What one version (in one role) answered: cumulative, or a window of it."""

    ok: float = 0.0
    client_errors: float = 0.0
    server_errors: float = 0.0
    # Cumulative histogram buckets: upper bound (seconds) -> requests at or under it.
    latency: Mapping[float, float] = field(default_factory=dict)
    outputs: Mapping[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> float:
        return self.ok + self.client_errors + self.server_errors

    @property
    def error_rate(self) -> float:
        """Failures that are the server's (5xx) per request; a client's bad input is not."""
        return self.server_errors / self.requests if self.requests else 0.0

    def p99_ms(self) -> float | None:
        """The 99th percentile from the histogram, by linear interpolation within the
        bucket it falls in (as Prometheus' histogram_quantile); None without requests."""
        total = self.latency.get(math.inf, 0.0)
        if total <= 0:
            return None
        rank = 0.99 * total
        lower_bound, lower_count = 0.0, 0.0
        for bound in sorted(self.latency):
            count = self.latency[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound * 1000  # beyond the last finite bucket
                share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1
                return (lower_bound + (bound - lower_bound) * share) * 1000
            lower_bound, lower_count = bound, count
        return None

    def minus(self, before: VersionStats) -> VersionStats:
        """This reading less an earlier one: what happened in between."""
        return VersionStats(
            ok=self.ok - before.ok,
            client_errors=self.client_errors - before.client_errors,
            server_errors=self.server_errors - before.server_errors,
            latency={b: c - before.latency.get(b, 0.0) for b, c in self.latency.items()},
            outputs={k: v - before.outputs.get(k, 0.0) for k, v in self.outputs.items()},
        )

    @property
    def agreement(self) -> float | None:
        """A shadow's share of answers equal to the primary's (None without answers)."""
        agree, disagree = self.outputs.get("agree", 0.0), self.outputs.get("disagree", 0.0)
        return agree / (agree + disagree) if agree + disagree > 0 else None

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "client_errors": self.client_errors,
            "server_errors": self.server_errors,
            "latency": {("+Inf" if math.isinf(b) else repr(b)): c for b, c in self.latency.items()},
            "outputs": dict(self.outputs),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> VersionStats:
        return cls(
            ok=float(raw.get("ok") or 0),
            client_errors=float(raw.get("client_errors") or 0),
            server_errors=float(raw.get("server_errors") or 0),
            latency={float(b): float(c) for b, c in (raw.get("latency") or {}).items()},
            outputs={str(k): float(v) for k, v in (raw.get("outputs") or {}).items()},
        )


def parse_server_metrics(text: str) -> dict[tuple[str, str], VersionStats]:
    """(version, role) -> cumulative stats, from the server's Prometheus text."""
    ok: dict[tuple[str, str], dict[str, float]] = {}
    latency: dict[tuple[str, str], dict[float, float]] = {}
    outputs: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            key = (labels.get("version", ""), labels.get("role", "primary"))
            if sample.name == f"{REQUESTS}_total":
                ok.setdefault(key, {})[labels.get("outcome", "ok")] = float(sample.value)
            elif sample.name == f"{LATENCY}_bucket":
                latency.setdefault(key, {})[float(labels["le"])] = float(sample.value)
            elif sample.name == f"{OUTPUTS}_total":
                outputs.setdefault(key, {})[labels.get("output", "")] = float(sample.value)
            elif sample.name == f"{SHADOW_REQUESTS}_total":
                outcome = {"error": "server_error"}.get(labels.get("outcome", ""), "ok")
                if labels.get("outcome") != "dropped":
                    shadow = (key[0], SHADOW)
                    counts = ok.setdefault(shadow, {})
                    counts[outcome] = counts.get(outcome, 0.0) + float(sample.value)
            elif sample.name == f"{SHADOW_LATENCY}_bucket":
                latency.setdefault((key[0], SHADOW), {})[float(labels["le"])] = float(sample.value)
            elif sample.name == f"{SHADOW_AGREEMENT}_total":
                agreed = "agree" if labels.get("agree") == "true" else "disagree"
                outputs.setdefault((key[0], SHADOW), {})[agreed] = float(sample.value)
    return {
        key: VersionStats(
            ok=ok.get(key, {}).get("ok", 0.0),
            client_errors=ok.get(key, {}).get("client_error", 0.0),
            server_errors=ok.get(key, {}).get("server_error", 0.0),
            latency=latency.get(key, {}),
            outputs=outputs.get(key, {}),
        )
        for key in ok.keys() | latency.keys() | outputs.keys()
        if key[0]
    }


def combined(stats: Mapping[tuple[str, str], VersionStats], version: str) -> VersionStats:
    """One version's stats over the roles that answer clients (primary and canary); a
    shadow's answers are never returned, so they are not the version's."""
    total = VersionStats()
    for (found, role), item in stats.items():
        if found == version and role != SHADOW:
            total = VersionStats(
                ok=total.ok + item.ok,
                client_errors=total.client_errors + item.client_errors,
                server_errors=total.server_errors + item.server_errors,
                latency=_add(total.latency, item.latency),
                outputs=_add(total.outputs, item.outputs),
            )
    return total


Key = TypeVar("Key", str, float)


def _add(left: Mapping[Key, float], right: Mapping[Key, float]) -> dict[Key, float]:
    return {key: left.get(key, 0.0) + right.get(key, 0.0) for key in left.keys() | right.keys()}


def prediction_shift(new: Mapping[str, float], old: Mapping[str, float]) -> float | None:
    """Total variation distance between two output distributions; None if one is empty."""
    new_total, old_total = sum(new.values()), sum(old.values())
    if new_total <= 0 or old_total <= 0:
        return None
    keys = new.keys() | old.keys()
    return 0.5 * sum(abs(new.get(k, 0) / new_total - old.get(k, 0) / old_total) for k in keys)


# How sure a prediction-shift breach must be: chance alone exceeds the noise allowance
# below at most once in a hundred judgements.
SHIFT_CONFIDENCE = 0.99


def shift_noise(new: Mapping[str, float], old: Mapping[str, float]) -> float:
    """How far apart (total variation) two samples of one same distribution can be by
    chance: the Bretagnolle-Huber-Carol bound, P(TV(sample, truth) >= e) <= 2^k e^(-2ne^2)
    for k outcomes and n draws, solved for e at each sample and added (the truth lies
    between them). 25 iris answers allow 0.37; 400 allow 0.09."""
    outcomes = max(len(new.keys() | old.keys()), 2)
    return sum(
        math.sqrt((outcomes * math.log(2) + math.log(2 / (1 - SHIFT_CONFIDENCE))) / (2 * n))
        for n in (sum(new.values()), sum(old.values()))
        if n > 0
    )


class VerdictState(StrEnum):
    PASSING = "Passing"
    FAILING = "Failing"
    NOT_ENOUGH_DATA = "NotEnoughData"


@dataclass(frozen=True)
class Verdict:
    state: VerdictState
    requests: float
    error_rate: float | None = None
    p99_ms: float | None = None
    prediction_shift: float | None = None
    failures: tuple[str, ...] = ()
    # The replaced version's figures before the switch, for the reader's comparison.
    baseline_error_rate: float | None = None
    baseline_p99_ms: float | None = None

    def __str__(self) -> str:
        if self.state is VerdictState.NOT_ENOUGH_DATA:
            return f"not enough data yet ({self.requests:.0f} requests)"
        numbers = [f"{self.requests:.0f} requests", f"error rate {self.error_rate:.2%}"]
        if self.p99_ms is not None:
            numbers.append(f"p99 {self.p99_ms:.0f} ms")
        if self.prediction_shift is not None:
            numbers.append(f"prediction shift {self.prediction_shift:.2f}")
        text = ", ".join(numbers)
        if self.baseline_error_rate is not None:
            text += f"; before the switch: error rate {self.baseline_error_rate:.2%}"
            if self.baseline_p99_ms is not None:
                text += f", p99 {self.baseline_p99_ms:.0f} ms"
        return f"{'; '.join(self.failures)} ({text})" if self.failures else text

    def as_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "requests": self.requests,
            "error_rate": self.error_rate,
            "p99_ms": self.p99_ms,
            "prediction_shift": self.prediction_shift,
            "failures": list(self.failures),
            "baseline_error_rate": self.baseline_error_rate,
            "baseline_p99_ms": self.baseline_p99_ms,
            "text": str(self),
        }


def judge(analysis: Analysis, new: VersionStats, baseline: VersionStats | None) -> Verdict:
    """The new version's window against the thresholds and the replaced version's figures."""
    if new.requests < analysis.min_requests:
        return Verdict(VerdictState.NOT_ENOUGH_DATA, new.requests)
    failures = []
    error_rate, p99 = new.error_rate, new.p99_ms()
    limit = analysis.max_error_rate
    if limit is not None and error_rate > limit:
        failures.append(f"error rate {error_rate:.2%} > {limit:.2%}")
    limit = analysis.max_latency_p99_ms
    if limit is not None and p99 is not None and p99 > limit:
        failures.append(f"p99 {p99:.0f} ms > {limit:g} ms")
    shift = prediction_shift(new.outputs, baseline.outputs) if baseline is not None else None
    limit = analysis.max_prediction_shift
    if limit is not None and shift is not None and baseline is not None:
        # Two samples of one distribution differ by chance, the more so the smaller they
        # are: only a shift beyond the limit by more than chance allows is a breach.
        noise = shift_noise(new.outputs, baseline.outputs)
        if shift - noise > limit:
            failures.append(
                f"prediction shift {shift:.2f} > {limit:g} (by more than the {noise:.2f} "
                "that chance allows at this sample size)"
            )
    return Verdict(
        VerdictState.FAILING if failures else VerdictState.PASSING,
        new.requests,
        error_rate,
        p99,
        shift,
        tuple(failures),
        baseline.error_rate if baseline is not None and baseline.requests else None,
        baseline.p99_ms() if baseline is not None else None,
    )
