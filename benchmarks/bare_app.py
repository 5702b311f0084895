"""The ceiling: a bare FastAPI app that reads the body and returns a constant, served by
uvicorn with exactly `aliasflow serve`'s settings (`model_server.cli.uvicorn_config`).

    python -m benchmarks.bare_app PORT
"""

from __future__ import annotations

import sys

from fastapi import FastAPI, Request
from fastapi.responses import Response

ANSWER = b'{"predictions":[1]}'


def create_bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        await request.body()  # every real handler reads its body
        return Response(ANSWER, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


def main() -> None:
    import uvicorn

    from model_server.cli import uvicorn_config

    uvicorn.Server(uvicorn_config(create_bare_app(), "127.0.0.1", int(sys.argv[1]))).run()


if __name__ == "__main__":
    main()
