"""Live traffic per deployment and version, from the model servers' own counters.

The dashboard and the API ask for it while someone looks; each ask reads the server's
/metrics once (at most once a second per deployment) and keeps the last minute of
readings, so rates are differences of two readings and a sparkline is a short list of
them. Nothing polls a thousand servers in the background for a page nobody opened.
Where no one server's counters are the deployment's (Container Apps), its runtime's sum
over the replicas' reports is read instead (`reconcile/readings.py`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise

from controller.core.ports import Runtime
from controller.reconcile.analysis import VersionStats, parse_server_metrics
from controller.reconcile.readings import counters_of
from controller.runtimes.probe import read_metrics

WINDOW_SECONDS = 60.0
MIN_SPACING_SECONDS = 1.0

Reading = tuple[float, dict[tuple[str, str], VersionStats]]


@dataclass(frozen=True)
class VersionTraffic:
    version: str
    role: str
    requests_per_second: float
    error_rate: float | None
    p99_ms: float | None
    # Requests per second between consecutive readings, oldest first (a sparkline).
    history: tuple[float, ...]
    # The shadow's share of answers equal to the primary's, over the window.
    agreement: float | None = None


class TrafficSampler:
    def __init__(
        self,
        read: Callable[[str], str | None] = read_metrics,
        clock: Callable[[], float] = time.monotonic,
        runtimes: Mapping[str, Runtime] | None = None,
    ) -> None:
        self._read = read
        self._clock = clock
        self._runtimes: Mapping[str, Runtime] = runtimes or {}
        self._readings: dict[str, deque[Reading]] = {}
        self._lock = threading.Lock()

    def traffic(
        self, name: str, endpoint: str | None, kind: str | None = None
    ) -> list[VersionTraffic]:
        self._sample(name, endpoint, kind)
        with self._lock:
            readings = list(self._readings.get(name, ()))
        if len(readings) < 2:
            return []
        return _traffic(readings)

    def _sample(self, name: str, endpoint: str | None, kind: str | None) -> None:
        now = self._clock()
        with self._lock:
            readings = self._readings.setdefault(name, deque())
            if readings and now - readings[-1][0] < MIN_SPACING_SECONDS:
                return
        text = counters_of(self._runtimes, self._read, name, kind, endpoint)
        if text is None:
            return
        stats = parse_server_metrics(text)
        with self._lock:
            readings.append((now, stats))
            while readings and now - readings[0][0] > WINDOW_SECONDS:
                readings.popleft()


def _traffic(readings: list[Reading]) -> list[VersionTraffic]:
    (first_at, first), (last_at, last) = readings[0], readings[-1]
    found = []
    for key, now in sorted(last.items()):
        window = now.minus(first.get(key, VersionStats()))
        if window.requests < 0:  # the server restarted inside the window
            window = now
        found.append(
            VersionTraffic(
                version=key[0],
                role=key[1],
                requests_per_second=window.requests / max(last_at - first_at, 1e-9),
                error_rate=window.error_rate if window.requests else None,
                p99_ms=window.p99_ms(),
                history=tuple(_rate(key, a, b) for a, b in pairwise(readings)),
                agreement=window.agreement,
            )
        )
    return found


def _rate(key: tuple[str, str], earlier: Reading, later: Reading) -> float:
    before = earlier[1].get(key, VersionStats()).requests
    after = later[1].get(key, VersionStats()).requests
    return max(0.0, after - before) / max(later[0] - earlier[0], 1e-9)
