"""What every protocol's routes share: the served model, the body, the one predict path.

A route of any protocol does three things: find the model (`served` / `model_for`),
turn its body into a payload and hand it to `parse` (the one validator), then `infer`
(the one batcher). Protocols differ only in how bodies and answers are spelled.

Model lookup goes through the slot, never around it: when the server holds more than
one version (canary, shadow), this is where a request is routed to one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from model_server.batching import MicroBatcher, Prediction
from model_server.errors import BodyTooLargeError, InputError, ModelNotFoundError, NotReadyError
from model_server.inputs import Batch, parse_payload
from model_server.loading import LoadedModel
from model_server.metrics import ServerMetrics
from model_server.predictors import EXTRA_OUTPUTS
from model_server.settings import ServerSettings
from model_server.slot import ModelSlot


class InferenceService:
    def __init__(
        self,
        settings: ServerSettings,
        slot: ModelSlot,
        batcher: MicroBatcher,
        metrics: ServerMetrics,
    ) -> None:
        self.settings = settings
        self.slot = slot
        self.batcher = batcher
        self.metrics = metrics

    def served(self) -> LoadedModel:
        """The model answering now; 503 while none is (still loading, or failed)."""
        model = self.slot.current
        if model is None:
            if self.slot.boot_error:
                raise NotReadyError(f"model failed to load: {self.slot.boot_error}")
            raise NotReadyError(f"model {self.settings.model_uri} is still loading")
        return model

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
        self, model: LoadedModel, batch: Batch, extras: frozenset[str] = frozenset()
    ) -> Prediction:
        missing = extras - model.predictor.extras
        if missing:
            raise InputError(
                f"this model cannot give {', '.join(sorted(missing))}: only scikit-learn "
                "classifiers served natively have probabilities and labels"
            )
        return await self.batcher.predict(model, batch, extras)


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
