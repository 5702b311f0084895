"""The one served model, and the hot swap that replaces it.

Serving reads `slot.current` once per request: a swap is a single reference assignment,
so a request sees either the old model or the new one, never a half-loaded state. The
new version is loaded, warmed and checked beside the old before that assignment; when
anything fails, the assignment never happens. Swaps are serialised by a lock.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

from model_server.errors import IncompatibleSignatureError, ModelCheckError, ModelLoadError
from model_server.loading import LoadedModel
from model_server.metrics import ServerMetrics
from model_server.settings import ServerSettings
from model_server.signature import incompatibilities

log = logging.getLogger("model_server")

Loader = Callable[[str, ServerSettings], LoadedModel]


class ModelSlot:
    def __init__(self, settings: ServerSettings, loader: Loader, metrics: ServerMetrics) -> None:
        self.current: LoadedModel | None = None
        self.boot_error: str | None = None
        self._settings = settings
        self._loader = loader
        self._metrics = metrics
        self._lock = asyncio.Lock()

    async def boot(self) -> LoadedModel:
        """Load `MODEL_URI` (off the event loop) and start serving it."""
        uri = self._settings.model_uri
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

    async def swap(self, model_uri: str, force: bool) -> tuple[LoadedModel, LoadedModel | None]:
        """Load `model_uri` beside the served model and switch to it if it passes."""
        async with self._lock:
            old = self.current
            log.info("swap requested: %s -> %s", _label(old), model_uri)
            try:
                new = await asyncio.to_thread(self._loader, model_uri, self._settings)
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
            return new, old

    def _install(self, model: LoadedModel) -> None:
        # MLflow, pandas and scikit-learn leave ~10^6 long-lived objects behind; a full
        # collection walking them all stalls every in-flight request for tens of ms (it
        # showed as p99 spikes under load). Freezing moves them out of the collector's
        # sight; requests' short-lived garbage is still collected as usual.
        gc.freeze()
        self.current = model
        self.boot_error = None
        self._metrics.set_model(model.name, model.version, model.run_id)


def _label(model: LoadedModel | None) -> str:
    if model is None:
        return "nothing"
    return f"{model.name or model.model_uri} v{model.version}"
