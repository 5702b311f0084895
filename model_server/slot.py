"""The served versions (primary, canary, shadow, previous), and the changes to them.

Roles: the primary answers requests; a canary answers `weight`% of them; a shadow is
run on `percent`% of the primary's requests without ever answering (shadow.py); the
previous version is kept loaded, serving nothing, so a rollback to it is instant. One
model object may hold several roles (a canary that is also the shadow); its files are
disposed of only once it holds none.

Serving reads `slot.routes` once per request: every change is a single reference
assignment of a new immutable `Routes` (routing.py), so a request sees either the old
split or the new one, never a half-loaded state. A new version is loaded, warmed and
checked beside the served ones before that assignment (through `_load`, the one way a
URI is loaded after boot); when anything fails, the assignment never happens. Changes
are serialised by a lock. A swap or a traffic change to a URI some role already holds
(a fixed `models:/name/N`, not an alias) reuses it: nothing is loaded.

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
    NotReadyError,
    SwapDeadlineError,
)
from model_server.loading import LoadedModel
from model_server.metrics import ServerMetrics
from model_server.ownership import check_own_model, own_model
from model_server.routing import Routes, build_routes
from model_server.settings import ServerSettings
from model_server.signature import incompatibilities

log = logging.getLogger("model_server")

Loader = Callable[[str, ServerSettings], LoadedModel]
SwapStatus = Literal["swapped", "unchanged"]
# A role's requested version and share (canary weight, shadow percent), or None: absent.
RoleRequest = tuple[str, int] | None


class ModelSlot:
    def __init__(self, settings: ServerSettings, loader: Loader, metrics: ServerMetrics) -> None:
        self.routes = Routes()
        self.boot_error: str | None = None
        self._settings = settings
        self._loader = loader
        # The registered model every swap must name (model_server/ownership.py).
        self.own_model = own_model(settings)
        self._metrics = metrics
        self._lock = asyncio.Lock()
        # The roles as the lock holder changes them; `routes` is what requests see.
        self._primary: LoadedModel | None = None
        self._canary: tuple[LoadedModel, int] | None = None
        self._shadow: tuple[LoadedModel, int] | None = None
        self._previous: LoadedModel | None = None
        # Loads abandoned at their deadline, kept referenced until they end and are disposed.
        self._abandoned: set[asyncio.Task[LoadedModel]] = set()
        self._completing: set[asyncio.Task[None]] = set()

    @property
    def current(self) -> LoadedModel | None:
        """The primary: the version answering requests (None before boot)."""
        primary = self.routes.primary
        return None if primary is None else primary.model

    async def boot(self, model_uri: str | None = None) -> LoadedModel:
        """Load `model_uri` (`MODEL_URI` by default; off the event loop) and serve it."""
        uri = model_uri or self._settings.model_uri
        log.info("loading model %s", uri)
        try:
            model = await asyncio.to_thread(self._load_now, uri)
        except (ModelLoadError, ModelCheckError) as exc:
            self.boot_error = str(exc)
            raise
        gc.collect()  # once, before serving: nothing is waiting on us yet
        self._primary = model
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
        self,
        model_uri: str,
        force: bool,
        deadline_seconds: float | None = None,
        keep_previous: bool = False,
    ) -> tuple[SwapStatus, LoadedModel, LoadedModel | None]:
        """Load `model_uri` beside the served model and switch to it if it passes in time.

        Asking for the URI already served is a no-op ("unchanged"): a controller that
        repeats a swap (retry, restart) must not pay a reload or a second warm-up. The
        URI of the previous version or of the canary is swapped to at once (a rollback,
        a promotion); a promoted canary leaves the canary role. With `keep_previous` the
        replaced version stays loaded as the previous one; without it, no version is kept.
        """
        async with self._lock:
            old = self._primary
            if old is not None and _same_model(old.model_uri, model_uri):
                log.info("swap requested: %s is already served", model_uri)
                self._metrics.swaps.labels("unchanged").inc()
                return "unchanged", old, None
            log.info("swap requested: %s -> %s", _label(old), model_uri)
            held = self._held(model_uri)
            try:
                new = held or await self._load(model_uri, deadline_seconds)
            except (ModelLoadError, ModelCheckError) as exc:
                self._metrics.swaps.labels("failed").inc()
                log.warning("swap to %s failed, still serving %s: %s", model_uri, _label(old), exc)
                raise
            problems = incompatibilities(old.spec if old else None, new.spec) if old else []
            if problems and not force:
                if held is None:
                    new.dispose()
                self._metrics.swaps.labels("refused").inc()
                reason = "; ".join(problems)
                log.warning("swap to %s refused: %s", model_uri, reason)
                raise IncompatibleSignatureError(
                    f"{model_uri} has an incompatible input signature: {reason} "
                    '(send {"force": true} to swap anyway)'
                )
            released = self._move_roles(old, new, keep_previous)
            self._primary = new
            self._install(new)  # the atomic step: one reference assignment
            self._metrics.swaps.labels("swapped").inc()
            log.info("swapped %s -> %s%s", _label(old), _label(new), " (instant)" if held else "")
            # Requests already holding a released model finish on it; its files go.
            self._release(*released)
            return "swapped", new, old

    def _move_roles(
        self, old: LoadedModel | None, new: LoadedModel, keep_previous: bool
    ) -> list[LoadedModel]:
        """The roles around a swap from `old` to `new`; returns the models they let go."""
        released: list[LoadedModel] = []
        if self._canary is not None and self._canary[0] is new:
            self._canary = None  # promoted: it answers everything now
        if self._previous is new:
            self._previous = None  # rolled back to
        if self._previous is not None:
            released.append(self._previous)
            self._previous = None
        if old is not None:
            if keep_previous:
                self._previous = old
            else:
                released.append(old)
        return released

    async def set_traffic(
        self, canary: RoleRequest, shadow: RoleRequest, deadline_seconds: float | None = None
    ) -> Routes:
        """Serve `canary` (URI, weight %) and mirror to `shadow` (URI, percent %) beside the
        primary, loading either if no role holds it yet; None removes the role. Both
        loads happen before anything changes: a failure leaves the split as it was."""
        async with self._lock:
            primary = self._primary
            if primary is None:
                raise NotReadyError("no model is served yet: traffic can be split once it is")
            fresh: list[LoadedModel] = []
            started = time.monotonic()
            try:
                new_canary = await self._obtain(canary, deadline_seconds, fresh)
                left = (
                    None
                    if deadline_seconds is None
                    else deadline_seconds - (time.monotonic() - started)
                )
                new_shadow = await self._obtain(shadow, left, fresh)
                if new_canary is not None:
                    _check_canary(primary, new_canary[0])
            except BaseException:
                for model in fresh:
                    model.dispose()
                raise
            before = [role[0] for role in (self._canary, self._shadow) if role is not None]
            self._canary, self._shadow = new_canary, new_shadow
            if fresh:
                gc.freeze()  # as in `_install`: the new model's objects out of the GC's walk
            self._publish()
            log.info("traffic: %s", self.routes.traffic())
            self._release(*before)
            return self.routes

    async def drop_previous(self) -> LoadedModel | None:
        """Stop keeping the previous version (idempotent); returns what was dropped."""
        async with self._lock:
            dropped, self._previous = self._previous, None
            if dropped is not None:
                self._publish()
                self._release(dropped)
                log.info("dropped the previous version %s", _label(dropped))
            return dropped

    async def _obtain(
        self, request: RoleRequest, deadline_seconds: float | None, fresh: list[LoadedModel]
    ) -> tuple[LoadedModel, int] | None:
        """The model for a role request: one already held (by any role, or loaded by this
        same request), else a new load."""
        if request is None:
            return None
        uri, share = request
        held = self._held(uri, include_primary=True)
        held = held or next((m for m in fresh if _same_model(m.model_uri, uri)), None)
        if held is not None:
            return held, share
        if deadline_seconds is not None and deadline_seconds <= 0:
            raise SwapDeadlineError(f"no time was left within the deadline to load {uri}")
        model = await self._load(uri, deadline_seconds)
        fresh.append(model)
        return model, share

    def _held(self, model_uri: str, include_primary: bool = False) -> LoadedModel | None:
        """A loaded model some role holds for this fixed URI (never for an alias)."""
        for model in self._roles(include_primary):
            if _same_model(model.model_uri, model_uri):
                return model
        return None

    def _roles(self, include_primary: bool = True) -> list[LoadedModel]:
        held = [self._primary] if include_primary and self._primary is not None else []
        held += [role[0] for role in (self._canary, self._shadow) if role is not None]
        return held + ([self._previous] if self._previous is not None else [])

    def _release(self, *models: LoadedModel) -> None:
        """Dispose of the models no role holds any more."""
        holding = self._roles()
        for model in models:
            if not any(model is held for held in holding):
                log.info("unloading %s", _label(model))
                model.dispose()

    def _publish(self) -> None:
        self.routes = build_routes(
            self._metrics, self._primary, self._canary, self._shadow, self._previous
        )

    async def _load(self, model_uri: str, deadline_seconds: float | None) -> LoadedModel:
        """Load, warm and check off the event loop; give up at the deadline, if any.

        Every load after boot comes through here, so the own-model rule is checked
        here, first: a foreign URI is refused before anything is downloaded or imported.
        """
        check_own_model(self.own_model, model_uri)
        task = asyncio.create_task(
            asyncio.to_thread(self._load_now, model_uri), name=f"load {model_uri}"
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

    def _load_now(self, model_uri: str) -> LoadedModel:
        """In a thread: the loader, then the regression bins if none are fixed yet."""
        model = self._loader(model_uri, self._settings)
        if self._metrics.labeler.edges is None and model.predictor.classes is None:
            try:
                output = model.predictor.predict(model.example)
            except Exception:  # it passed its checks on this example; bins can wait
                return model
            self._metrics.labeler.calibrate(output, None)
        return model

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
        self._publish()
        self.boot_error = None
        self._metrics.set_model(model.name, model.version, model.run_id)
        if model.complete is not None:
            # A boot-file model serves already; MLflow's model object loads behind it.
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(model.complete), name=f"complete {model.model_uri}"
            )
            self._completing.add(task)
            task.add_done_callback(self._completed)


def _check_canary(primary: LoadedModel, canary: LoadedModel) -> None:
    """A canary answers the primary's clients: it must read their requests the same way."""
    problems = incompatibilities(primary.spec, canary.spec)
    if problems:
        raise IncompatibleSignatureError(
            f"{canary.model_uri} cannot be a canary of {_label(primary)}: its input signature "
            f"differs ({'; '.join(problems)})"
        )


def _same_model(served_uri: str, requested_uri: str) -> bool:
    # An alias URI may point at another version by now: only a fixed URI is "the same".
    return served_uri == requested_uri and "@" not in requested_uri


def _label(model: LoadedModel | None) -> str:
    if model is None:
        return "nothing"
    return f"{model.name or model.model_uri} v{model.version}"
