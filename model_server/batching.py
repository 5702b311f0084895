"""Adaptive micro-batching: concurrent requests of every protocol share one model call.

A scikit-learn `predict` on one row spends ~all its time in per-call input checks, so
ten queued one-row requests cost about what one does when stacked into one matrix.
Only answers that stacking cannot change are stacked (`Predictor.stackable`: a native
classifier's labels); float outputs and pyfunc models get one call per request, as
under MLflow, so every answer is the one MLflow gives for that request.
The batcher never waits for company when idle (`max_wait` defaults to 0): it takes what
is queued right now. While one batch runs, new requests queue up and form the next
batch, so the batch size follows the load by itself.

Where a batch runs: a native scikit-learn call on a small batch takes tens of
microseconds, less than handing it to a thread and back (two wake-ups through the
loop's self-pipe), so it runs on the event loop itself; the server is one process on
one core, and a thread would only take turns with the loop for the GIL. Anything else
(pyfunc models, large batches, a native model seen to take more than `INLINE_BUDGET_S`)
runs in the predict thread so `/livez` and the other requests keep answering.

Requests are only stacked with others validated against the same model object and
asking for the same outputs, and each request is answered by the model it was checked
against: a hot swap in the middle of a burst never mixes versions inside a batch or
changes a request's contract mid-flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from model_server.errors import PredictionError
from model_server.inputs import Batch
from model_server.loading import LoadedModel
from model_server.predictors import Output, OutputError, check_output_length

log = logging.getLogger("model_server")

PREDICTIONS = "predictions"
# Inline (on the loop) only while a call stays this cheap on average (an exponentially
# weighted mean of its CPU time, so a busy machine does not move a model for good).
# Rows above INLINE_MAX_ROWS always go to the thread.
INLINE_BUDGET_S = 0.002
INLINE_MAX_ROWS = 512
_EWMA_WEIGHT = 0.1

# name -> output: "predictions" (MLflow's answer) plus any extra outputs asked for.
Prediction = dict[str, Output]


@dataclass(slots=True)
class _Job:
    model: LoadedModel
    batch: Batch
    extras: frozenset[str]
    future: asyncio.Future[Prediction] = field(repr=False)


class MicroBatcher:
    """Owns the predict thread and the queue in front of it; start/stop in the lifespan."""

    def __init__(
        self,
        max_rows: int,
        max_wait_s: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch  # metrics hook: called with the number of rows per call
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._held: _Job | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        # id() of a predictor -> mean seconds per call (weighted towards recent ones)
        self._cost: dict[int, float] = {}

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def predict(
        self, model: LoadedModel, batch: Batch, extras: frozenset[str] = frozenset()
    ) -> Prediction:
        """MLflow's predictions for `batch` (plus `extras`), computed by `model`."""
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(model, batch, extras, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._held or await self._queue.get()
            self._held = None
            jobs = [first]
            if (
                first.batch.matrix is not None
                and first.model.predictor.stackable
                and not first.extras
            ):
                await self._gather(first, jobs)
            rows = sum(j.batch.n_rows for j in jobs)
            predictor = first.model.predictor
            key = id(predictor)
            inline = (
                predictor.runs_inline(first.extras)
                and rows <= INLINE_MAX_ROWS
                and self._cost.get(key, 0.0) <= INLINE_BUDGET_S
            )
            if inline:
                took = self._timed(jobs, _set_now)
            else:
                try:
                    took = await loop.run_in_executor(self._executor, self._timed, jobs, _set_soon)
                except Exception as exc:  # the executor itself failed; answer, don't die
                    for job in jobs:
                        _set_soon(job.future, PredictionError(f"prediction failed: {exc}"))
                    continue
            if rows <= INLINE_MAX_ROWS:  # a big batch says nothing about a small one
                cost = self._cost.get(key, took)
                self._cost[key] = cost + _EWMA_WEIGHT * (took - cost)

    def _timed(self, jobs: list[_Job], settle: Settle) -> float:
        # CPU time of this thread, not wall time: on a shared core a call that was merely
        # preempted must not count as an expensive one.
        started = time.thread_time()
        self._execute(jobs, settle)
        return time.thread_time() - started

    async def _gather(self, first: _Job, jobs: list[_Job]) -> None:
        rows = first.batch.n_rows
        deadline = time.monotonic() + self._max_wait_s
        while rows < self._max_rows:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                if self._max_wait_s <= 0:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    return
            if (
                job.model is not first.model
                or job.extras
                or job.batch.matrix is None
                or rows + job.batch.n_rows > self._max_rows
            ):
                self._held = job  # next round starts with it
                return
            jobs.append(job)
            rows += job.batch.n_rows

    def _execute(self, jobs: list[_Job], settle: Settle) -> None:
        """Runs on the loop or in the predict thread; `settle` answers each future."""
        live = [j for j in jobs if not j.future.done()]  # drop clients that went away
        if not live:
            return
        if len(live) > 1:
            stacked = np.vstack([j.batch.matrix for j in live])  # type: ignore[misc]
            merged = Batch(stacked.shape[0], matrix=stacked, columns=live[0].batch.columns)
            try:
                output = self._call(live[0].model, merged, live[0].extras)
            except Exception:
                # One request's rows may have upset the model; answer each on its own.
                for job in live:
                    self._execute([job], settle)
                return
            offset = 0
            for job in live:
                n = job.batch.n_rows
                settle(job.future, {k: v[offset : offset + n] for k, v in output.items()})
                offset += n
            return
        job = live[0]
        try:
            settle(job.future, self._call(job.model, job.batch, job.extras))
        except Exception as exc:
            settle(job.future, exc if isinstance(exc, PredictionError) else _as_error(exc))

    def _call(self, model: LoadedModel, batch: Batch, extras: frozenset[str]) -> Prediction:
        output = model.predictor.predict(batch)
        try:
            check_output_length(output, batch.n_rows)
        except OutputError as exc:
            raise PredictionError(f"prediction failed: {exc}") from exc
        result: Prediction = {PREDICTIONS: output}
        if extras:
            result.update(model.predictor.predict_extras(batch, extras))
        if self._on_batch is not None:
            self._on_batch(batch.n_rows)
        return result


Settle = Callable[["asyncio.Future[Prediction]", "Prediction | Exception"], None]


def _as_error(exc: Exception) -> PredictionError:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return PredictionError(f"the model failed on this input: {type(exc).__name__}: {first}")


def _set_now(future: asyncio.Future[Prediction], value: Prediction | Exception) -> None:
    if future.done():
        return
    if isinstance(value, Exception):
        future.set_exception(value)
    else:
        future.set_result(value)


def _set_soon(future: asyncio.Future[Prediction], value: Prediction | Exception) -> None:
    future.get_loop().call_soon_threadsafe(_set_now, future, value)
