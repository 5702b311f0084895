"""Adaptive micro-batching: concurrent `/predict` requests share one `predict` call.

A scikit-learn `predict` on one row spends ~all its time in per-call input checks, so
ten queued one-row requests cost about what one does when stacked into one matrix.
The batcher never waits for company when idle (`max_wait` defaults to 0): it takes what
is queued right now. While one batch runs in the worker thread, new requests queue up
and form the next batch, so the batch size follows the load by itself.

Requests are only stacked with others validated against the same model object, and each
request is answered by the model it was checked against: a hot swap in the middle of a
burst never mixes versions inside a batch or changes a request's contract mid-flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_server.errors import PredictionError
from model_server.inputs import Batch
from model_server.loading import LoadedModel
from model_server.predictors import OutputError, check_output_length, normalize_output

log = logging.getLogger("model_server")


@dataclass(slots=True)
class _Job:
    model: LoadedModel
    batch: Batch
    future: asyncio.Future[list[Any]] = field(repr=False)


class MicroBatcher:
    """Owns the predict thread and the queue in front of it; start/stop in the lifespan."""

    def __init__(
        self,
        max_rows: int,
        max_wait_s: float = 0.0,
        on_batch: Any = None,
    ) -> None:
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch  # metrics hook: called with the number of rows per call
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._held: _Job | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None

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

    async def predict(self, model: LoadedModel, batch: Batch) -> list[Any]:
        """Predictions for `batch` as plain JSON-able values, computed by `model`."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(model, batch, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._held or await self._queue.get()
            self._held = None
            jobs = [first]
            if first.batch.matrix is not None:
                await self._gather(first, jobs)
            try:
                await loop.run_in_executor(self._executor, self._execute, jobs)
            except Exception as exc:  # the executor itself failed; answer, don't die
                for job in jobs:
                    _fail(job, PredictionError(f"prediction failed: {exc}"))

    async def _gather(self, first: _Job, jobs: list[_Job]) -> None:
        rows = first.batch.n_rows
        deadline = time.monotonic() + self._max_wait_s
        while rows < self._max_rows:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    return
            if (
                job.model is not first.model
                or job.batch.matrix is None
                or rows + job.batch.n_rows > self._max_rows
            ):
                self._held = job  # next round starts with it
                return
            jobs.append(job)
            rows += job.batch.n_rows

    def _execute(self, jobs: list[_Job]) -> None:
        """Runs in the predict thread; results go back through the loop."""
        live = [j for j in jobs if not j.future.done()]  # drop clients that went away
        if not live:
            return
        if len(live) > 1:
            stacked = np.vstack([j.batch.matrix for j in live])  # type: ignore[misc]
            merged = Batch(stacked.shape[0], matrix=stacked, columns=live[0].batch.columns)
            try:
                output = self._call(live[0].model, merged)
            except Exception:
                # One request's rows may have upset the model; answer each on its own.
                for job in live:
                    self._execute([job])
                return
            offset = 0
            for job in live:
                n = job.batch.n_rows
                _resolve(job, output[offset : offset + n])
                offset += n
            return
        job = live[0]
        try:
            _resolve(job, self._call(job.model, job.batch))
        except Exception as exc:
            _fail(job, exc if isinstance(exc, PredictionError) else _as_prediction_error(exc))

    def _call(self, model: LoadedModel, batch: Batch) -> list[Any]:
        raw = model.predictor.predict(batch)
        output = normalize_output(raw)
        try:
            check_output_length(output, batch.n_rows)
        except OutputError as exc:
            raise PredictionError(f"prediction failed: {exc}") from exc
        if self._on_batch is not None:
            self._on_batch(batch.n_rows)
        if isinstance(output, np.ndarray):
            return output.tolist()  # type: ignore[no-any-return]
        return output


def _as_prediction_error(exc: Exception) -> PredictionError:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return PredictionError(f"the model failed on this input: {type(exc).__name__}: {first}")


def _resolve(job: _Job, value: list[Any]) -> None:
    loop = job.future.get_loop()
    loop.call_soon_threadsafe(_set_result, job.future, value)


def _fail(job: _Job, exc: Exception) -> None:
    loop = job.future.get_loop()
    loop.call_soon_threadsafe(_set_exception, job.future, exc)


def _set_result(future: asyncio.Future[list[Any]], value: list[Any]) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[list[Any]], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
