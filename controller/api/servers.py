"""The link endpoints model servers call (docs/server-contract.md): thin, signed routes.

The signature covers the raw body and the request target (path, and `?query` when there
is one), so both are read as sent before anything parses them.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from controller.api.bodies import read_limited
from controller.api.deps import ControllerDep
from controller.service.servers import METRICS_MAX_CHARS, traffic_json

router = APIRouter(prefix="/api/servers", tags=["servers"])
# A report is a few hundred bytes plus its counters; anything much larger is not one.
REPORT_MAX_BYTES = METRICS_MAX_CHARS + 16_384


class ServerModelOut(BaseModel):
    model_uri: str
    version: str
    # {"canary": {"model_uri", "version", "weight"} | null,
    #  "shadow": {"model_uri", "version", "percent"} | null}; null: keep the split applied
    traffic: dict[str, dict[str, object] | None] | None


def _target(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


@router.get("/{deployment}/model", response_model=ServerModelOut)
async def server_model(
    deployment: str,
    request: Request,
    controller: ControllerDep,
    revision: str | None = Query(None, max_length=253),
) -> ServerModelOut:
    """The version the deployment's servers should serve now (signed by the server)."""
    body = await read_limited(request, REPORT_MAX_BYTES)
    servers = controller.servers
    servers.authenticate(deployment, request.headers, "GET", _target(request), body)
    desired, traffic = await run_in_threadpool(servers.model, deployment, revision)
    return ServerModelOut(
        model_uri=desired.model_uri, version=desired.version, traffic=traffic_json(traffic)
    )


@router.post(
    "/{deployment}/report", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def server_report(deployment: str, request: Request, controller: ControllerDep) -> Response:
    """What one replica serves, the split it applies and its prediction counters:
    `{"replica", "served_version", "ready", "traffic", "metrics"}` (signed)."""
    body = await read_limited(request, REPORT_MAX_BYTES)
    servers = controller.servers
    servers.authenticate(deployment, request.headers, "POST", _target(request), body)
    # Off the event loop: parsing the counters and the links' lock are not free.
    await run_in_threadpool(servers.report, deployment, body)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
