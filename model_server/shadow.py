"""Mirroring requests to the shadow version, off the client's path.

The primary answers first and alone; only then is the request's checked input (the
batch the primary predicted on) and the primary's predictions put on a bounded queue.
One worker runs the shadow on them in a thread of its own (never the batcher's, so a
slow shadow cannot hold the primary's predict thread) and records the outcome, its
latency and whether its predictions equal the primary's for the request. When the queue
is full the mirror is dropped and counted: the shadow falls behind, never the clients.

The shadow predicts on the primary's parsed input: a shadow whose input signature
differs from the primary's may err on it, which counts as the shadow's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from model_server.inputs import Batch
from model_server.predictors import Output, check_output_length
from model_server.routing import ShadowTarget

log = logging.getLogger("model_server")


@dataclass(frozen=True, slots=True)
class _Mirror:
    target: ShadowTarget
    batch: Batch
    expected: Output


class ShadowMirror:
    """Start and stop in the lifespan; `offer` never waits."""

    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[_Mirror] = asyncio.Queue(maxsize=capacity)
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shadow-mirror")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def offer(self, target: ShadowTarget, batch: Batch, expected: Output) -> None:
        try:
            self._queue.put_nowait(_Mirror(target, batch, expected))
        except asyncio.QueueFull:
            target.metrics.dropped.inc()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            mirror = await self._queue.get()
            metrics = mirror.target.metrics
            started = time.perf_counter()
            try:
                output = await loop.run_in_executor(self._executor, _predict, mirror)
            except Exception as exc:
                metrics.latency.observe(time.perf_counter() - started)
                metrics.error.inc()
                log.debug("shadow %s failed: %s", mirror.target.model.version, exc)
                continue
            metrics.latency.observe(time.perf_counter() - started)
            metrics.ok.inc()
            (metrics.agree if _equal(output, mirror.expected) else metrics.disagree).inc()


def _predict(mirror: _Mirror) -> Output:
    output = mirror.target.model.predictor.predict(mirror.batch)
    check_output_length(output, mirror.batch.n_rows)
    return output


def _equal(shadow: Output, primary: Output) -> bool:
    """The same predictions for the whole request (same shape, equal values)."""
    left, right = np.asarray(shadow), np.asarray(primary)
    if left.shape != right.shape:
        return False
    try:
        return bool(np.array_equal(left, right))
    except (TypeError, ValueError):
        same: bool = left.tolist() == right.tolist()
        return same
