"""A sliding-window limiter for ACI's create/delete quota (100 per 5 minutes).

ARM answers an exceeded quota with errors after the fact, and a controller that creates
a thousand groups in one pass would hit it at once; counting our own creates and deletes
keeps us under it. Clock and sleep are injected so the benchmark can run a simulated
hour in milliseconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from controller.core.errors import RuntimeUnavailableError


class QuotaLimiter:
    """At most `limit` operations in any `window` seconds.

    `acquire()` waits for a free slot when the wait is at most `max_wait` seconds, and
    otherwise raises `RuntimeUnavailableError` (temporary), so a worker thread is never
    parked for minutes while hot swaps of other deployments wait behind it.
    """

    def __init__(
        self,
        limit: int = 100,
        window: float = 300.0,
        *,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("quota limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        #: Total seconds spent waiting for a slot (for the benchmark and metrics).
        self.waited = 0.0

    def acquire(self, what: str = "operation") -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._stamps and self._stamps[0] <= now - self.window:
                    self._stamps.popleft()
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    return
                wait = self._stamps[0] + self.window - now
            if wait > self.max_wait:
                raise RuntimeUnavailableError(
                    f"ACI create/delete quota ({self.limit} per {self.window:.0f}s) reached; "
                    f"{what} retried when a slot frees in {math.ceil(wait)}s"
                )
            self.waited += wait
            self._sleep(wait)

    def in_window(self) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for stamp in self._stamps if stamp > now - self.window)
