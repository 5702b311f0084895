"""The fast lane: the three inference POSTs go straight to their protocol handlers.

A request through FastAPI's stack (exception, body-limit and telemetry middlewares,
the router trying each route's pattern, included-router dispatch, dependency solving,
`Request` and `Response` objects) costs more CPU here than parsing, checking and
predicting one row together. For `POST /predict`, `POST /invocations` and
`POST /v2/models/{name}[/versions/{v}]/infer` this ASGI middleware calls the same
handlers the FastAPI routes call (`protocols/`), with the same body limit and the same
error mapping (`errors.py`); everything else — other methods on these paths included —
goes on to FastAPI, which also documents these routes in OpenAPI. With
`ALIASFLOW_FAST_LANE=false` FastAPI's routes serve them too (same handlers, same answers).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from model_server.errors import ServerError, error_response, protocol_of, render_error
from model_server.protocols.mlflow_scoring import handle_invocations
from model_server.protocols.native import handle_predict
from model_server.protocols.v2 import handle_infer
from model_server.protocols.v2_codec import HEADER_LENGTH
from model_server.routing import ROLE_HEADER
from model_server.service import InferenceService, Reply, read_limited

log = logging.getLogger("model_server")

_HEADER_LENGTH = HEADER_LENGTH.encode()
_ROLE_HEADER = ROLE_HEADER.encode()
Handler = Callable[[bytes, dict[bytes, bytes]], Awaitable[Reply]]


class FastLane:
    def __init__(self, app: ASGIApp, service: InferenceService) -> None:
        self.app = app
        self.service = service

    def _handler(self, path: str) -> Handler | None:
        service = self.service
        if path == "/predict":
            return lambda body, headers: handle_predict(service, body, _pin(headers))
        if path == "/invocations":

            def invocations(body: bytes, headers: dict[bytes, bytes]) -> Awaitable[Reply]:
                content_type = headers.get(b"content-type")
                return handle_invocations(
                    service,
                    body,
                    None if content_type is None else content_type.decode("latin-1"),
                    _pin(headers),
                )

            return invocations
        if path.startswith("/v2/models/") and path.endswith("/infer"):
            parts = path.split("/")  # "", "v2", "models", name, ["versions", v,] "infer"
            if len(parts) == 5 and parts[3]:
                name, version = parts[3], None
            elif len(parts) == 7 and parts[3] and parts[4] == "versions" and parts[5]:
                name, version = parts[3], parts[5]
            else:
                return None

            def infer(body: bytes, headers: dict[bytes, bytes]) -> Awaitable[Reply]:
                length = headers.get(_HEADER_LENGTH)
                return handle_infer(
                    service,
                    body,
                    None if length is None else length.decode(),
                    name,
                    version,
                    _pin(headers),
                )

            return infer
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            self._handler(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if handler is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        try:
            declared = headers.get(b"content-length")
            body = await read_limited(
                receive,
                None if declared is None else declared.decode(),
                self.service.settings.max_body_bytes,
            )
            reply = await handler(body, headers)
        except ClientDisconnect:
            return
        except ServerError as exc:
            await error_response(exc, protocol_of(scope["path"]))(scope, receive, send)
            return
        except Exception as exc:  # a bug of ours: logged with its traceback, answered without
            log.exception("unexpected error on POST %s", scope["path"])
            error = render_error(
                f"internal error: {type(exc).__name__}", 500, protocol_of(scope["path"])
            )
            await error(scope, receive, send)
            return
        raw = [
            (b"content-type", reply.content_type.encode()),
            (b"content-length", str(len(reply.content)).encode()),
        ]
        if reply.headers:
            raw += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": reply.content})


def _pin(headers: dict[bytes, bytes]) -> str | None:
    """The role a request is pinned to (`X-Aliasflow-Role`), if any."""
    role = headers.get(_ROLE_HEADER)
    return None if role is None else role.decode("latin-1")
