"""The one served model, and the hot swap that replaces it.

Serving reads `slot.current` once per request: a swap is a single reference assignment,
so a request sees either the old model or the new one, never a half-loaded state. The
new version is loaded, warmed and checked beside the old before that assignment; when
anything fails, the assignment never happens. Swaps are serialised by a lock.

A swap may carry a deadline: the controller gives up on a rollout after its health
timeout, and a version that finishes loading after that must not appear behind the
controller's back (it would serve a version the controller recorded as failed). A load
thread cannot be interrupted, so past the deadline the swap answers at once, releases
the lock (the next swap must not wait for a model nobody wants) and the late model is
disposed of in the background whenever its load ends.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Literal

from model_server.errors import (
    IncompatibleSignatureError,
    ModelCheckError,
    ModelLoadError,
    SwapDeadlineError,
)
from model_server.loading import LoadedModel
from model_server.metrics import ServerMetrics
from model_server.ownership import check_own_model, own_model
from model_server.settings import ServerSettings
from model_server.signature import incompatibilities

log = logging.getLogger("model_server")

Loader = Callable[[str, ServerSettings], LoadedModel]
SwapStatus = Literal["swapped", "unchanged"]


class ModelSlot:
    def __init__(self, settings: ServerSettings, loader: Loader, metrics: ServerMetrics) -> None:
        self.current: LoadedModel | None = None
        self.boot_error: str | None = None
        self._settings = settings
        self._loader = loader
        # The registered model every swap must name (model_server/ownership.py).
        self.own_model = own_model(settings)
        self._metrics = metrics
        self._lock = asyncio.Lock()
        # Loads abandoned at their deadline, kept referenced until they end and are disposed.
        self._abandoned: set[asyncio.Task[LoadedModel]] = set()
        self._completing: set[asyncio.Task[None]] = set()

    async def boot(self, model_uri: str | None = None) -> LoadedModel:
        """Load `model_uri` (`MODEL_URI` by default; off the event loop) and serve it."""
        uri = model_uri or self._settings.model_uri
        log.info("loading model %s", uri)
        try:
            model = await asyncio.to_thread(self._loader, uri, self._settings)
        except (ModelLoadError, ModelCheckError) as exc:
            self.boot_error = str(exc)
            raise
        gc.collect()  # once, before serving: nothing is waiting on us yet
        self._install(model)
        log.info(
            "model ready: %s version %s (run %s, source %s)",
            model.name,
            model.version,
            model.run_id,
            model.source,
        )
        return model

    async def swap(
        self, model_uri: str, force: bool, deadline_seconds: float | None = None
    ) -> tuple[SwapStatus, LoadedModel, LoadedModel | None]:
        """Load `model_uri` beside the served model and switch to it if it passes in time.

        Asking for the URI already served is a no-op ("unchanged"): a controller that
        repeats a swap (retry, restart) must not pay a reload or a second warm-up.
        """
        async with self._lock:
            old = self.current
            if old is not None and _same_model(old.model_uri, model_uri):
                log.info("swap requested: %s is already served", model_uri)
                self._metrics.swaps.labels("unchanged").inc()
                return "unchanged", old, None
            log.info("swap requested: %s -> %s", _label(old), model_uri)
            try:
                new = await self._load(model_uri, deadline_seconds)
            except (ModelLoadError, ModelCheckError) as exc:
                self._metrics.swaps.labels("failed").inc()
                log.warning("swap to %s failed, still serving %s: %s", model_uri, _label(old), exc)
                raise
            problems = incompatibilities(old.spec if old else None, new.spec) if old else []
            if problems and not force:
                new.dispose()
                self._metrics.swaps.labels("refused").inc()
                reason = "; ".join(problems)
                log.warning("swap to %s refused: %s", model_uri, reason)
                raise IncompatibleSignatureError(
                    f"{model_uri} has an incompatible input signature: {reason} "
                    '(send {"force": true} to swap anyway)'
                )
            self._install(new)  # the atomic step: one reference assignment
            self._metrics.swaps.labels("swapped").inc()
            log.info("swapped %s -> %s", _label(old), _label(new))
            if old is not None:
                # Requests already holding `old` finish on it; its files are no longer read.
                old.dispose()
            return "swapped", new, old

    async def _load(self, model_uri: str, deadline_seconds: float | None) -> LoadedModel:
        """Load, warm and check off the event loop; give up at the deadline, if any.

        Every load after boot comes through here, so the own-model rule is checked
        here, first: a foreign URI is refused before anything is downloaded or imported.
        """
        check_own_model(self.own_model, model_uri)
        task = asyncio.create_task(
            asyncio.to_thread(self._loader, model_uri, self._settings), name=f"load {model_uri}"
        )
        started = time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(task), deadline_seconds)
        except TimeoutError:
            elapsed = time.monotonic() - started
            self._abandoned.add(task)
            task.add_done_callback(self._dispose_abandoned)
            raise SwapDeadlineError(
                f"{model_uri} was still loading after {elapsed:.1f} s, over the swap deadline "
                f"of {deadline_seconds:g} s; it was discarded and will not be swapped in"
            ) from None

    def _dispose_abandoned(self, task: asyncio.Task[LoadedModel]) -> None:
        self._abandoned.discard(task)
        if task.cancelled() or task.exception() is not None:
            return  # a late failure: nothing was loaded, nothing to free
        late = task.result()
        log.info("discarding %s: it finished loading after its swap deadline", late.model_uri)
        late.dispose()

    def _completed(self, task: asyncio.Task[None]) -> None:
        self._completing.discard(task)
        # MLflow's model brings its ~10^6 long-lived objects only now: freeze them too,
        # or full collections walk them and stall requests (seen: p99 200 ms at c=64).
        gc.freeze()

    def _install(self, model: LoadedModel) -> None:
        # MLflow, pandas and scikit-learn leave ~10^6 long-lived objects behind; a full
        # collection walking them all stalls every in-flight request for tens of ms (it
        # showed as p99 spikes under load). Freezing moves them out of the collector's
        # sight; requests' short-lived garbage is still collected as usual.
        gc.freeze()
        self.current = model
        self.boot_error = None
        self._metrics.set_model(model.name, model.version, model.run_id)
        if model.complete is not None:
            # A boot-file model serves already; MLflow's model object loads behind it.
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(model.complete), name=f"complete {model.model_uri}"
            )
            self._completing.add(task)
            task.add_done_callback(self._completed)


def _same_model(served_uri: str, requested_uri: str) -> bool:
    # An alias URI may point at another version by now: only a fixed URI is "the same".
    return served_uri == requested_uri and "@" not in requested_uri


def _label(model: LoadedModel | None) -> str:
    if model is None:
        return "nothing"
    return f"{model.name or model.model_uri} v{model.version}"
