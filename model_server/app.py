"""The FastAPI app of the model server, built by `create_app(settings)`.

Routes stay thin: they read the served model once from the slot, hand the work to the
parser, the batcher or the slot, and raise domain errors that `errors.py` maps to HTTP.
Three protocols share the port and one predict path (`service.py`): our `/predict`,
MLflow's `/invocations` and the Open Inference Protocol's `/v2/...` (`protocols/`).
Nothing happens at import; the model loads in the lifespan, in the background, so
`/livez` answers at once and `/readyz` turns 200 only after warm-up and output checks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ValidationError

from model_server.apikeys import ApiKeyGate, ApiKeys, InvalidApiKeysError, parse_keys
from model_server.batching import MicroBatcher
from model_server.errors import (
    AdminDisabledError,
    InputError,
    NotReadyError,
    ServerError,
    install_error_handlers,
)
from model_server.fastlane import FastLane
from model_server.inputs import decode_json
from model_server.link import ControllerLink, SlotSplit
from model_server.loading import LoadedModel, load_model
from model_server.metrics import CONTENT_TYPE, MetricsMiddleware, ServerMetrics
from model_server.protocols import mlflow_scoring, native, v2
from model_server.responses import JSONBytesResponse
from model_server.schemas import (
    ApiKeysRequest,
    ApiKeysResponse,
    ErrorResponse,
    HealthResponse,
    MetadataResponse,
    ReadyResponse,
    SwapRequest,
    SwapResponse,
    TrafficRequest,
    TrafficResponse,
)
from model_server.service import InferenceService, read_limited
from model_server.settings import ServerSettings
from model_server.shadow import ShadowMirror
from model_server.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, AdminVerifier
from model_server.slot import Loader, ModelSlot

log = logging.getLogger("model_server")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 409, 413, 415, 422, 429, 503)
}


def create_app(
    settings: ServerSettings,
    *,
    loader: Loader = load_model,
    on_boot_failure: Callable[[str], None] | None = None,
    link: ControllerLink | None = None,
) -> FastAPI:
    """Build the server for `settings`; `on_boot_failure` lets `run_serve` exit non-zero;
    `link` makes it ask the controller what to serve (model_server/link.py)."""
    metrics = ServerMetrics()
    slot = ModelSlot(settings, loader, metrics)
    if link is not None:
        # It applies the controller's split through the slot, as PUT /admin/traffic does,
        # and its reports carry this server's prediction counters.
        link.attach(SlotSplit(slot), metrics.render)
    batcher = MicroBatcher(
        max_rows=settings.batch_max_rows,
        max_wait_s=settings.batch_max_wait_ms / 1000.0,
        on_batch=metrics.batch_rows.observe,
    )
    mirror = ShadowMirror(settings.shadow_queue_size)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        mirror.start()
        boot = asyncio.create_task(_boot(slot, on_boot_failure, link), name="model-boot")
        try:
            yield
        finally:
            boot.cancel()
            await mirror.stop()
            await batcher.stop()

    app = FastAPI(
        title="aliasflow model server",
        summary="Serves one MLflow model version and can hot-swap it.",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.settings = settings
    app.state.slot = slot
    app.state.metrics = metrics
    app.state.admin_verifier = (
        AdminVerifier(settings.admin_token.get_secret_value()) if settings.admin_token else None
    )
    install_error_handlers(app)
    service = InferenceService(settings, slot, batcher, metrics, mirror)
    api_keys = ApiKeys(
        parse_keys(settings.api_keys.get_secret_value() if settings.api_keys else None)
    )
    app.state.api_keys = api_keys
    if settings.fast_lane:
        app.add_middleware(FastLane, service=service)
    # Outside the fast lane and the routes: one check for every prediction route.
    app.add_middleware(ApiKeyGate, keys=api_keys)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts the lane too

    served = service.served
    app.include_router(native.router(service))
    app.include_router(mlflow_scoring.router(service))
    app.include_router(v2.router(service))

    @app.get("/livez", tags=["probes"])
    async def livez() -> dict[str, str]:
        """The process is alive (always 200 while it runs)."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["probes"], response_model=ReadyResponse)
    async def readyz() -> JSONBytesResponse:
        """200 once the model is loaded, warmed up and checked; 503 before. "traffic" says
        which canary and shadow are served beside it, and the version kept for a rollback."""
        model = served()
        if link is not None and not link.settled:
            # Linked, it is ready once it applies what the controller said at boot, split
            # included: a replica starting mid-canary takes no request without the canary.
            raise NotReadyError("applying the traffic split the controller asked for")
        return JSONBytesResponse(
            {
                "status": "ready",
                "model": model.summary(),
                "traffic": slot.routes.traffic(),
                "api_keys": api_keys.fingerprint(),
            }
        )

    @app.get("/health", tags=["probes"], response_model=HealthResponse)
    async def health() -> JSONBytesResponse:
        model = served()
        return JSONBytesResponse({"status": "ok", "model": model.summary()})

    @app.get("/metadata", tags=["model"], response_model=MetadataResponse)
    async def metadata() -> JSONBytesResponse:
        return JSONBytesResponse(_metadata(served()))

    @app.get(
        "/metrics",
        tags=["probes"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        """Prometheus text exposition format (not JSON)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post(
        "/admin/model",
        tags=["admin"],
        response_model=SwapResponse,
        # The body is parsed by hand (after the signature check); document it all the same.
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SwapRequest.model_json_schema()}},
            }
        },
    )
    async def admin_model(request: Request) -> JSONBytesResponse:
        """Hot swap (signed request): `{"model_uri": "models:/name/N", "force": false,
        "deadline_seconds": 30, "keep_previous": false}`; the URI already served answers
        "unchanged" at once, the previous version's or the canary's URI swaps instantly.
        Only versions of the server's own registered model load (403 otherwise)."""
        swap = _parse(SwapRequest, await _authorize(request, settings))
        outcome, new, old = await slot.swap(
            swap.model_uri, swap.force, swap.deadline_seconds, swap.keep_previous
        )
        return JSONBytesResponse(
            {
                "status": outcome,
                "model": _metadata(new),
                "previous": old.summary() if old else None,
            }
        )

    _admin_traffic_routes(app, service)

    @app.put(
        "/admin/api-keys",
        tags=["admin"],
        response_model=ApiKeysResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ApiKeysRequest.model_json_schema()}},
            }
        },
    )
    async def admin_api_keys(request: Request) -> JSONBytesResponse:
        """Replace the client API keys (signed request), without a restart: `{"keys":
        ["k1", "k2"]}`; `[]` lifts the requirement. The answer never echoes a key."""
        wanted = _parse(ApiKeysRequest, await _authorize(request, settings))
        try:
            api_keys.replace(wanted.keys)
        except InvalidApiKeysError as exc:
            raise InputError(str(exc)) from None
        log.info("client API keys replaced: %d key(s) now required", len(api_keys))
        return JSONBytesResponse(
            {
                "required": api_keys.required,
                "count": len(api_keys),
                "api_keys": api_keys.fingerprint(),
            }
        )

    return app


def _admin_traffic_routes(app: FastAPI, service: InferenceService) -> None:
    """`PUT/GET /admin/traffic` and `DELETE /admin/model/previous` (server-contract.md)."""
    settings, slot = service.settings, service.slot

    @app.put(
        "/admin/traffic",
        tags=["admin"],
        response_model=TrafficResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": TrafficRequest.model_json_schema()}},
            }
        },
    )
    async def put_traffic(request: Request) -> JSONBytesResponse:
        """The split: `{"canary": {"model_uri", "weight"} | null, "shadow": {"model_uri",
        "percent"} | null, "deadline_seconds": 30}`; loads what no role holds yet."""
        split = _parse(TrafficRequest, await _authorize(request, settings))
        canary = (split.canary.model_uri, split.canary.weight) if split.canary else None
        shadow = (split.shadow.model_uri, split.shadow.percent) if split.shadow else None
        routes = await slot.set_traffic(canary, shadow, split.deadline_seconds)
        return JSONBytesResponse(routes.versions())

    @app.get("/admin/traffic", tags=["admin"], response_model=TrafficResponse)
    async def get_traffic(request: Request) -> JSONBytesResponse:
        """The version in each role, unchanged."""
        await _authorize(request, settings)
        return JSONBytesResponse(slot.routes.versions())

    @app.delete("/admin/model/previous", tags=["admin"], response_model=TrafficResponse)
    async def drop_previous(request: Request) -> JSONBytesResponse:
        """Stop keeping the version kept for a rollback (idempotent: 200 when none is)."""
        await _authorize(request, settings)
        await slot.drop_previous()
        return JSONBytesResponse(slot.routes.versions())


Body = TypeVar("Body", bound=BaseModel)


def _parse(schema: type[Body], body: bytes) -> Body:
    """An admin body, checked by its schema; what is wrong is a 422 naming the field."""
    try:
        return schema.model_validate(decode_json(body))
    except ValidationError as exc:
        raise InputError(_describe(exc)) from None


async def _boot(
    slot: ModelSlot, on_failure: Callable[[str], None] | None, link: ControllerLink | None
) -> None:
    try:
        await (slot.boot() if link is None else link.boot(slot))
    except ServerError as exc:
        log.error("boot failed: %s", exc)
        if on_failure is not None:
            on_failure(str(exc))
        return
    except Exception as exc:  # a bug of ours; still a clear line, not a hung unready server
        log.exception("boot failed unexpectedly")
        slot.boot_error = f"{type(exc).__name__}: {exc}"
        if on_failure is not None:
            on_failure(slot.boot_error)
        return
    if link is not None:
        await link.follow(slot)


async def _authorize(request: Request, settings: ServerSettings) -> bytes:
    """The one check every `/admin/*` route makes first; returns the raw body it verified.

    The signature covers the raw body, so this reads it (within `ALIASFLOW_MAX_BODY_BYTES`)
    and the route parses what is returned, never a second read.
    """
    verifier: AdminVerifier | None = request.app.state.admin_verifier
    if settings.admin_token is None or verifier is None:
        raise AdminDisabledError(
            "admin endpoint disabled: ALIASFLOW_ADMIN_TOKEN is not set on this server"
        )
    body = await read_limited(
        request.receive, request.headers.get("content-length"), settings.max_body_bytes
    )
    # The target as sent (still percent-encoded), which is what the sender signed.
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    verifier.verify(
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        request.method,
        target,
        body,
    )
    return body


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error.get("loc", ())) or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def _metadata(model: LoadedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "run_id": model.run_id,
        "model_uri": model.model_uri,
        "source": model.source,
        "flavor": model.predictor.flavor,
        "predict_fn": model.predict_fn,
        "fallback_reason": model.fallback_reason,
        "kernel": model.predictor.kernel_name,
        "outputs": sorted(model.predictor.extras),
        "signature": model.signature,
        "input_columns": model.spec.to_json() if model.spec else None,
        "metrics": model.metrics,
        "git_sha": model.git_sha,
        "loaded_at": model.loaded_at.isoformat(),
    }
