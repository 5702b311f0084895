"""The coalescing work queue: one reconcile per deployment at a time, floods merged."""

from __future__ import annotations

import threading
import time

from controller.core.records import Result
from controller.core.types import Operation
from controller.reconcile.queue import WorkQueue
from controller.reconcile.reconciler import Outcome


class SlowHandler:
    def __init__(self, seconds: float = 0.2, retry_first: int = 0) -> None:
        self.seconds = seconds
        self.calls: list[tuple[str, str, float | None]] = []
        self.concurrent: dict[str, int] = {}
        self.max_concurrent = 0
        self.retry_first = retry_first
        self._lock = threading.Lock()

    def __call__(self, name: str, trigger: str, noticed_at: float | None) -> Outcome:
        with self._lock:
            self.calls.append((name, trigger, noticed_at))
            self.concurrent[name] = self.concurrent.get(name, 0) + 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent[name])
            retry = len(self.calls) <= self.retry_first
        time.sleep(self.seconds)
        with self._lock:
            self.concurrent[name] -= 1
        return Outcome(name, Operation.NOOP, Result.SUCCEEDED, "ok", retry=retry)


def test_a_flood_for_one_deployment_costs_at_most_two_reconciles() -> None:
    handler = SlowHandler()
    queue = WorkQueue(handler, workers=4)
    for index in range(1000):
        queue.enqueue("iris", "webhook", noticed_at=float(index))
    assert queue.wait_idle(timeout=5)
    queue.close()
    assert 1 <= len(handler.calls) <= 2
    assert handler.max_concurrent == 1
    assert handler.calls[0][2] == 0.0  # latency is measured from the first notice


def test_an_event_during_a_reconcile_causes_exactly_one_more_pass() -> None:
    handler = SlowHandler(seconds=0.3)
    queue = WorkQueue(handler, workers=2)
    queue.enqueue("iris", "poll")
    time.sleep(0.1)
    for _ in range(5):
        queue.enqueue("iris", "webhook")
    assert queue.wait_idle(timeout=5)
    queue.close()
    assert [c[1] for c in handler.calls] == ["poll", "webhook"]


def test_deployments_run_in_parallel() -> None:
    handler = SlowHandler(seconds=0.3)
    queue = WorkQueue(handler, workers=4)
    started = time.monotonic()
    for name in ("a", "b", "c", "d"):
        queue.enqueue(name, "poll")
    assert queue.wait_idle(timeout=5)
    queue.close()
    assert time.monotonic() - started < 0.9
    assert sorted(c[0] for c in handler.calls) == ["a", "b", "c", "d"]


def test_temporary_failures_are_retried_with_backoff() -> None:
    handler = SlowHandler(seconds=0.01, retry_first=2)
    queue = WorkQueue(handler, workers=1, retry_delays=(0.05, 0.1))
    queue.enqueue("iris", "webhook")
    deadline = time.monotonic() + 5
    while len(handler.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    queue.close()
    assert len(handler.calls) == 3
    assert all(c[1] == "webhook" for c in handler.calls)


def test_a_crashing_handler_does_not_kill_the_queue() -> None:
    calls: list[str] = []

    def handler(name: str, trigger: str, noticed_at: float | None) -> Outcome:
        calls.append(name)
        if name == "bad":
            raise RuntimeError("boom")
        return Outcome(name, Operation.NOOP, Result.SUCCEEDED, "ok")

    queue = WorkQueue(handler, workers=1, retry_delays=(60.0,))
    queue.enqueue("bad", "poll")
    queue.enqueue("good", "poll")
    assert queue.wait_idle(timeout=5)
    queue.close()
    assert calls == ["bad", "good"]
