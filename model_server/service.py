"""What every protocol's routes share: the served model, the body, the one predict path.

A prediction route of any protocol does four things: pick the version answering it
(`choose`: the primary, or the canary by weight, or the role pinned by the
`X-Aliasflow-Role` header), and inside `answer` (which counts the request for that version
and role and names the version in the `X-Aliasflow-Model-Version` header) turn its body
into a payload, hand it to `parse` (the one validator), then `infer` (the one batcher,
which also counts the outputs and mirrors to the shadow). Protocols differ only in how
bodies and answers are spelled.

Model lookup goes through the slot's routes, never around them (routing.py).
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from model_server.batching import PREDICTIONS, MicroBatcher, Prediction
from model_server.errors import (
    BodyTooLargeError,
    InputError,
    ModelNotFoundError,
    NotReadyError,
    PredictionError,
    ServerError,
    status_for,
)
from model_server.inputs import Batch, parse_payload
from model_server.loading import LoadedModel
from model_server.metrics import ServerMetrics
from model_server.predictors import EXTRA_OUTPUTS
from model_server.routing import VERSION_HEADER, Choice
from model_server.settings import ServerSettings
from model_server.shadow import ShadowMirror
from model_server.slot import ModelSlot


class InferenceService:
    def __init__(
        self,
        settings: ServerSettings,
        slot: ModelSlot,
        batcher: MicroBatcher,
        metrics: ServerMetrics,
        mirror: ShadowMirror,
    ) -> None:
        self.settings = settings
        self.slot = slot
        self.batcher = batcher
        self.metrics = metrics
        self.mirror = mirror
        self._labeler = metrics.labeler

    def served(self) -> LoadedModel:
        """The model answering now; 503 while none is (still loading, or failed)."""
        model = self.slot.current
        if model is None:
            if self.slot.boot_error:
                raise NotReadyError(f"model failed to load: {self.slot.boot_error}")
            raise NotReadyError(f"model {self.settings.model_uri} is still loading")
        return model

    def choose(self, pin: str | None = None) -> Choice:
        """The version and role answering a prediction request (routing.py)."""
        if self.slot.current is None:
            self.served()  # the reason it is not ready
        return self.slot.routes.choose(pin)

    def choose_for(self, name: str, version: str | None, pin: str | None) -> Choice:
        """V2: the role serving `name` (and `version`, when the path names one); 404 else.

        A path naming the canary's version is answered by the canary, pinned by its path.
        """
        choice = self.choose(pin)
        if version is not None and version != (choice.model.version or "") and pin is None:
            routes = self.slot.routes
            for role in (routes.primary, routes.canary):
                if role is not None and role.model.version == version:
                    choice = role
        if name != model_name(choice.model):
            raise ModelNotFoundError(f"model {name!r} is not served here")
        if version is not None and version != (choice.model.version or ""):
            raise ModelNotFoundError(f"model {name!r} version {version!r} is not served here")
        return choice

    async def answer(self, choice: Choice, work: Coroutine[Any, Any, Reply]) -> Reply:
        """Run a prediction request's `work` on `choice`, counting it for its version and
        role; the answer (error answers too) names the version."""
        metrics = choice.metrics
        started = time.perf_counter()
        try:
            reply = await work
        except ServerError as exc:
            # A model raising on input that passed our checks is the version's failure,
            # though the client hears a 4xx: count it against the version.
            failed = isinstance(exc, PredictionError) or status_for(exc) >= 500
            (metrics.server_error if failed else metrics.client_error).inc()
            metrics.latency.observe(time.perf_counter() - started)
            exc.model_version = choice.model.version
            raise
        except Exception:
            metrics.server_error.inc()
            metrics.latency.observe(time.perf_counter() - started)
            raise
        status = reply.status
        if status < 400:
            metrics.ok.inc()
        else:
            (metrics.client_error if status < 500 else metrics.server_error).inc()
        metrics.latency.observe(time.perf_counter() - started)
        extra = choice.version_headers
        # The usual answers carry the header already (made once per role, not per request).
        if extra is None or (reply.headers is not None and VERSION_HEADER in reply.headers):
            return reply
        headers = extra if reply.headers is None else {**reply.headers, **extra}
        return Reply(reply.content, status, reply.media_type, headers)

    def model_for(self, name: str, version: str | None) -> LoadedModel:
        """The served model if it is `name` (and `version`, when given); else 404."""
        model = self.served()
        if name != model_name(model):
            raise ModelNotFoundError(f"model {name!r} is not served here")
        if version is not None and version != (model.version or ""):
            raise ModelNotFoundError(f"model {name!r} version {version!r} is not served here")
        return model

    async def read_body(self, request: Request) -> bytes:
        """The raw body, refusing (413) as soon as it is known to exceed the limit."""
        return await read_limited(
            request.receive, request.headers.get("content-length"), self.settings.max_body_bytes
        )

    def parse(self, payload: Any, model: LoadedModel, *, exact: bool = False) -> Batch:
        return parse_payload(payload, model.spec, self.settings.max_batch_rows, exact=exact)

    async def infer(
        self, choice: Choice, batch: Batch, extras: frozenset[str] = frozenset()
    ) -> Prediction:
        model = choice.model
        missing = extras - model.predictor.extras
        if missing:
            raise InputError(
                f"this model cannot give {', '.join(sorted(missing))}: only scikit-learn "
                "classifiers served natively have probabilities and labels"
            )
        prediction = await self.batcher.predict(model, batch, extras)
        output = prediction[PREDICTIONS]
        classes = model.predictor.classes
        choice.metrics.count_outputs(self._labeler.tally(output, classes))
        shadow = choice.mirrors()
        if shadow is not None:
            self.mirror.offer(shadow, batch, output)
        return prediction


@dataclass(frozen=True, slots=True)
class Reply:
    """A protocol handler's answer, independent of how it travels (route or fast lane)."""

    content: bytes
    status: int = 200
    media_type: str = "application/json"
    headers: Mapping[str, str] | None = None

    def response(self) -> Response:
        return Response(self.content, self.status, self.headers, self.media_type)

    @property
    def content_type(self) -> str:
        """As Starlette's `Response` spells it (text types get "; charset=utf-8")."""
        if self.media_type.startswith("text/") and "charset=" not in self.media_type:
            return f"{self.media_type}; charset=utf-8"
        return self.media_type


async def read_limited(receive: Receive, declared: str | None, limit: int) -> bytes:
    """Read an ASGI request body, refusing (413) as soon as it is known to exceed `limit`."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def model_name(model: LoadedModel) -> str:
    """The name clients address the model by (V2 paths): registered name, else the URI."""
    return model.name or model.model_uri


def extras_option(value: Any) -> frozenset[str]:
    """`/predict`'s "outputs" option: which extra outputs to add to the predictions."""
    if value is None:
        return frozenset()
    if type(value) is not list or any(v not in EXTRA_OUTPUTS for v in value):
        raise InputError(f"'outputs' must be a list of {', '.join(repr(v) for v in EXTRA_OUTPUTS)}")
    return frozenset(value)
