"""A work queue that coalesces by deployment.

At most one reconcile of a deployment runs at a time; any number of events that arrive
while it runs cause exactly one more pass, and events for a deployment that is already
queued are merged into that queued pass. A flood of 1,000 webhook deliveries for one
alias therefore costs at most two reconciles. A request that says when its change was
committed (`committed_before`, a webhook's arrival time) is dropped when the pass running
now started later: that pass read the registry after the change and already covers it.
Temporary failures are retried with backoff; permanent ones wait for the next event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from controller.core.types import Outcome

log = logging.getLogger("aliasflow.queue")

Handler = Callable[[str, str, float | None], Outcome]
RETRY_DELAYS_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class _Request:
    trigger: str
    noticed_at: float | None

    def merge(self, trigger: str, noticed_at: float | None) -> None:
        # The earliest notice is what the alias-to-serving latency is measured from.
        if noticed_at is not None and (self.noticed_at is None or noticed_at < self.noticed_at):
            self.noticed_at = noticed_at
        if trigger == "manual":
            self.trigger = trigger


class WorkQueue:
    def __init__(
        self,
        handler: Handler,
        workers: int = 4,
        retry_delays: tuple[float, ...] = RETRY_DELAYS_SECONDS,
    ) -> None:
        self._handler = handler
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self._retry_delays = retry_delays
        self._lock = threading.Condition()
        self._queued: dict[str, _Request] = {}
        self._running: set[str] = set()
        self._started: dict[str, float] = {}
        self._pending: dict[str, _Request] = {}
        self._attempts: dict[str, int] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._closed = False
        self.runs: dict[str, int] = {}

    def enqueue(
        self,
        name: str,
        trigger: str,
        noticed_at: float | None = None,
        committed_before: float | None = None,
    ) -> None:
        with self._lock:
            if self._closed:
                return
            if name in self._running:
                started = self._started.get(name, 0.0)
                if committed_before is not None and started > committed_before:
                    return  # the running pass began after the change: it sees it
                if name in self._pending:
                    self._pending[name].merge(trigger, noticed_at)
                else:
                    self._pending[name] = _Request(trigger, noticed_at)
                return
            if name in self._queued:
                self._queued[name].merge(trigger, noticed_at)
                return
            self._queued[name] = _Request(trigger, noticed_at)
            timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()  # a fresh event supersedes a scheduled retry
        self._executor.submit(self._run, name)

    def _run(self, name: str) -> None:
        with self._lock:
            request = self._queued.pop(name)
            self._running.add(name)
            self._started[name] = time.time()
            self.runs[name] = self.runs.get(name, 0) + 1
        outcome: Outcome | None = None
        try:
            outcome = self._handler(name, request.trigger, request.noticed_at)
        except Exception:
            log.exception("reconcile of %s crashed", name)
        finally:
            self._after_run(name, request, outcome)

    def _after_run(self, name: str, request: _Request, outcome: Outcome | None) -> None:
        with self._lock:
            self._running.discard(name)
            follow_up = self._pending.pop(name, None)
            retry = outcome is None or outcome.retry
            if follow_up is None and retry and not self._closed:
                attempt = self._attempts.get(name, 0)
                self._attempts[name] = attempt + 1
                delay = self._retry_delays[min(attempt, len(self._retry_delays) - 1)]
                timer = threading.Timer(delay, self.enqueue, (name, request.trigger))
                timer.daemon = True
                self._timers[name] = timer
                timer.start()
            elif not retry:
                self._attempts.pop(name, None)
            if follow_up is not None and not self._closed:
                # Queued before the lock is released, so `wait_idle` never sees a gap.
                self._queued[name] = follow_up
            else:
                follow_up = None
            self._lock.notify_all()
        if follow_up is not None:
            self._executor.submit(self._run, name)

    def busy(self, name: str) -> bool:
        with self._lock:
            return name in self._queued or name in self._running or name in self._pending

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (retries scheduled later don't count)."""
        with self._lock:
            return self._lock.wait_for(
                lambda: not self._queued and not self._running and not self._pending, timeout
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:
            timer.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)
