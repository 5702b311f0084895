"""One process standing in for a fleet of model servers, for the probe benchmark.

`GET /s/{name}/readyz` answers as model_server's `/readyz` does for a server `name`:
version 2, or version 1 for the names in `FLEET_RESTARTED` (comma-separated) — servers
that restarted on their boot version after a hot swap to 2.
Run: `python -m uvicorn benchmarks.fleet_server:app --port P`.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

RESTARTED = frozenset(filter(None, os.environ.get("FLEET_RESTARTED", "").split(",")))


async def readyz(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    version = "1" if name in RESTARTED else "2"
    return JSONResponse({"status": "ready", "model": {"name": name, "version": version}})


app = Starlette(routes=[Route("/s/{name}/readyz", readyz)])
