"""The emulator's HTTP surface: ARM container groups, AAD tokens and ACR, on one host.

Only what the runtime's SDK calls are routed; an unknown route is a loud 404 so a new
SDK call shows up as a failing test rather than a silent pass.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.aci_emulator.state import EmulatorState, Group, finish_put, public_view

ARM = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance"
FQDN_SUFFIX = "azurecontainer.io"

# Backing hooks: (group) -> None, run on a thread; they end the operation themselves.
Hook = Callable[[Group, str], None]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body).encode(), status, headers=headers, media_type="application/json"
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"code": code, "message": message}}, status, headers)


def create_app(
    state: EmulatorState,
    base_url: Callable[[], str],
    on_put: Hook | None = None,
    on_delete: Hook | None = None,
    page_size: int | None = None,
) -> Starlette:
    def record(response: Response) -> Response:
        state.sent.append(bytes(response.body))
        return response

    def arm_guard(request: Request, route: str) -> Response | None:
        state.calls[(request.method, route)] += 1
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in state.tokens:
            return _error(401, "AuthenticationFailed", "missing or unknown bearer token")
        fault = state.fault_for(request.method, route)
        if fault is None:
            return None
        status, retry_after = fault
        if status == 429:
            return _error(
                429,
                "TooManyRequests",
                "emulated ARM throttling",
                {"Retry-After": f"{retry_after:g}"},
            )
        return _error(500, "InternalServerError", "emulated ARM failure")

    def operation_url(location: str, op_id: str, sub: str) -> str:
        return (
            f"{base_url()}/subscriptions/{sub}/providers/Microsoft.ContainerInstance/"
            f"locations/{location}/operations/{op_id}?api-version=2023-05-01"
        )

    async def list_groups(request: Request) -> Response:
        if (denied := arm_guard(request, "list")) is not None:
            return denied
        state.settle()
        sub, rg = request.path_params["sub"], request.path_params["rg"]
        groups = [public_view(g, FQDN_SUFFIX, False) for g in state.in_resource_group(sub, rg)]
        skip = int(request.query_params.get("$skiptoken", "0"))
        if page_size is None:
            return record(_json({"value": groups}))
        page = groups[skip : skip + page_size]
        body: dict[str, Any] = {"value": page}
        if skip + page_size < len(groups):
            body["nextLink"] = (
                f"{base_url()}{request.url.path}?api-version=2023-05-01"
                f"&$skiptoken={skip + page_size}"
            )
        return record(_json(body))

    async def group(request: Request) -> Response:
        sub, rg, name = (request.path_params[k] for k in ("sub", "rg", "name"))
        method = request.method
        if (denied := arm_guard(request, "group")) is not None:
            return denied
        state.settle()
        key = (sub, rg, name)
        existing = state.group(sub, rg, name)
        if method == "GET":
            if existing is None:
                return _error(404, "ResourceNotFound", f"container group {name} not found")
            return record(_json(public_view(existing, FQDN_SUFFIX, True)))
        if method == "PUT":
            body = await request.json()
            if not body.get("location") or not body.get("properties", {}).get("containers"):
                return _error(400, "InvalidRequestContent", "location and containers required")
            for container in body["properties"]["containers"]:
                cpu = container["properties"]["resources"]["requests"]["cpu"]
                if cpu > 4:
                    return _error(
                        400,
                        "InvalidContainerResources",
                        f"cpu {cpu} exceeds the 4 cores a Linux container group may request",
                    )
            if existing is not None and existing.provisioning == "Deleting":
                return _error(409, "Conflict", f"container group {name} is being deleted")
            with state.lock:
                fresh = Group(sub, rg, name, body)
                if existing is not None:
                    fresh.restarts = existing.restarts
                fresh.fail = name in state.faults.fail_provisioning
                state.faults.fail_provisioning.discard(name)
                state.groups[key] = fresh
                operation = state.new_operation("put", key)
            if on_put is None:
                operation.done_at = state.clock() + state.faults.provisioning_delay
                state.settle()
            else:
                on_put(fresh, operation.id)
            view = public_view(fresh, FQDN_SUFFIX, False)
            view["properties"]["provisioningState"] = "Creating" if existing is None else "Updating"
            return record(
                _json(
                    view,
                    201 if existing is None else 200,
                    {
                        "Azure-AsyncOperation": operation_url(body["location"], operation.id, sub),
                        "Retry-After": state.lro_retry_after,
                    },
                )
            )
        if method == "PATCH":
            if existing is None:
                return _error(404, "ResourceNotFound", f"container group {name} not found")
            body = await request.json()
            extra = set(body) - {"tags"}
            if extra:
                return _error(400, "InvalidRequestContent", f"PATCH supports tags only: {extra}")
            with state.lock:
                existing.body["tags"] = dict(body.get("tags") or {})
            return record(_json(public_view(existing, FQDN_SUFFIX, True)))
        # DELETE
        if existing is None:
            return Response(status_code=204)
        with state.lock:
            existing.provisioning = "Deleting"
            operation = state.new_operation("delete", key)
        if on_delete is None:
            operation.done_at = state.clock()
            state.settle()
        else:
            on_delete(existing, operation.id)
        location = existing.body.get("location", "westeurope")
        return Response(
            status_code=202,
            headers={
                "Azure-AsyncOperation": operation_url(location, operation.id, sub),
                "Retry-After": state.lro_retry_after,
            },
        )

    async def restart(request: Request) -> Response:
        if (denied := arm_guard(request, "restart")) is not None:
            return denied
        existing = state.group(*(request.path_params[k] for k in ("sub", "rg", "name")))
        if existing is None:
            return _error(404, "ResourceNotFound", "container group not found")
        with state.lock:
            existing.restarts += 1
            operation = state.new_operation(
                "put", (existing.subscription, existing.resource_group, existing.name)
            )
            finish_put(existing, operation, True)
        return Response(
            status_code=204,
            headers={
                "Azure-AsyncOperation": operation_url(
                    existing.body.get("location", "westeurope"), operation.id, existing.subscription
                )
            },
        )

    async def operation_status(request: Request) -> Response:
        if (denied := arm_guard(request, "operation")) is not None:
            return denied
        state.settle()
        operation = state.operations.get(request.path_params["op"])
        if operation is None:
            return _error(404, "OperationNotFound", "unknown operation")
        body: dict[str, Any] = {"id": operation.id, "status": operation.status}
        if operation.error is not None:
            body["error"] = operation.error
        return record(_json(body, headers={"Retry-After": state.lro_retry_after}))

    # -- AAD (the slice ClientSecretCredential/MSAL uses) --------------------------------

    async def openid_configuration(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        base = f"{base_url()}/{tenant}"
        return _json(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0",
                "tenant_region_scope": "WW",
                "response_types_supported": ["code", "token"],
            }
        )

    async def aad_token(request: Request) -> Response:
        state.calls[("POST", "aad_token")] += 1
        form = parse_qs((await request.body()).decode())
        if form.get("grant_type") != ["client_credentials"] or not form.get("client_secret"):
            return _json({"error": "invalid_client", "error_description": "bad request"}, 400)
        token = f"arm-{uuid.uuid4().hex}"
        state.tokens.add(token)
        return _json({"token_type": "Bearer", "expires_in": 3600, "access_token": token})

    # -- ACR (tag → digest through the registry's token exchange) ---------------------------

    def acr_challenge(request: Request, repository: str) -> Response:
        host = request.url.netloc
        return _error(
            401,
            "UNAUTHORIZED",
            "authentication required",
            {
                "WWW-Authenticate": f'Bearer realm="{base_url()}/oauth2/token",'
                f'service="{host}",scope="repository:{repository}:metadata_read"'
            },
        )

    def acr_authorized(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth.removeprefix("Bearer ") in state.acr_tokens

    async def acr_tag(request: Request) -> Response:
        repository, tag = request.path_params["repo"], request.path_params["tag"]
        state.calls[("GET", "acr_tag")] += 1
        if not acr_authorized(request):
            return acr_challenge(request, repository)
        digest = state.images.get(repository, {}).get(tag)
        if digest is None:
            return _json({"errors": [{"code": "TAG_UNKNOWN", "message": "tag not found"}]}, 404)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return _json(
            {
                "registry": request.url.netloc,
                "imageName": repository,
                "tag": {
                    "name": tag,
                    "digest": digest,
                    "createdTime": now,
                    "lastUpdateTime": now,
                    "signed": False,
                    "changeableAttributes": {
                        "deleteEnabled": True,
                        "writeEnabled": True,
                        "readEnabled": True,
                        "listEnabled": True,
                    },
                },
            }
        )

    async def acr_manifest(request: Request) -> Response:
        repository, reference = request.path_params["repo"], request.path_params["ref"]
        state.calls[("GET", "acr_manifest")] += 1
        if not acr_authorized(request):
            return acr_challenge(request, repository)
        tags = state.images.get(repository, {})
        digest = reference if reference.startswith("sha256:") else tags.get(reference)
        if digest is None or digest not in tags.values():
            return _json({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "not found"}]}, 404)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return _json(
            {
                "registry": request.url.netloc,
                "imageName": repository,
                "manifest": {
                    "digest": digest,
                    "imageSize": 1024,
                    "createdTime": now,
                    "lastUpdateTime": now,
                    "architecture": "amd64",
                    "os": "linux",
                    "tags": sorted(t for t, d in tags.items() if d == digest),
                    "changeableAttributes": {
                        "deleteEnabled": True,
                        "writeEnabled": True,
                        "readEnabled": True,
                        "listEnabled": True,
                    },
                },
            }
        )

    async def v2_manifest(request: Request) -> Response:
        """What `docker pull` asks: the digest is in `Docker-Content-Digest`."""
        repository, reference = request.path_params["repo"], request.path_params["ref"]
        state.calls[(request.method, "v2_manifest")] += 1
        if not acr_authorized(request):
            return acr_challenge(request, repository)
        digest = state.images.get(repository, {}).get(reference)
        if digest is None:
            return Response(status_code=404)
        return Response(
            b"{}" if request.method == "GET" else b"",
            headers={"Docker-Content-Digest": digest},
            media_type="application/vnd.docker.distribution.manifest.v2+json",
        )

    async def acr_exchange(request: Request) -> Response:
        state.calls[("POST", "acr_exchange")] += 1
        form = parse_qs((await request.body()).decode())
        aad = (form.get("access_token") or [""])[0]
        if form.get("grant_type") != ["access_token"] or aad not in state.tokens:
            return _json({"errors": [{"code": "UNAUTHORIZED", "message": "bad AAD token"}]}, 401)
        claims = base64.urlsafe_b64encode(json.dumps({"exp": time.time() + 3600}).encode()).decode()
        refresh = f"e30.{claims.rstrip('=')}.{uuid.uuid4().hex}"
        state.acr_tokens.add(refresh)
        return _json({"refresh_token": refresh})

    async def acr_token(request: Request) -> Response:
        state.calls[("POST", "acr_token")] += 1
        form = parse_qs((await request.body()).decode())
        refresh = (form.get("refresh_token") or [""])[0]
        if refresh not in state.acr_tokens:
            return _json({"errors": [{"code": "UNAUTHORIZED", "message": "bad refresh"}]}, 401)
        token = f"acr-{uuid.uuid4().hex}"
        state.acr_tokens.add(token)
        return _json({"access_token": token})

    async def unknown(request: Request) -> Response:
        state.calls[(request.method, "unknown")] += 1
        return _error(404, "NoRoute", f"emulator has no route {request.method} {request.url.path}")

    routes = [
        Route(ARM + "/containerGroups", list_groups, methods=["GET"]),
        Route(
            ARM + "/containerGroups/{name}",
            group,
            methods=["GET", "PUT", "PATCH", "DELETE"],
        ),
        Route(ARM + "/containerGroups/{name}/restart", restart, methods=["POST"]),
        Route(
            "/subscriptions/{sub}/providers/Microsoft.ContainerInstance/locations/{loc}"
            "/operations/{op}",
            operation_status,
            methods=["GET"],
        ),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/oauth2/v2.0/token", aad_token, methods=["POST"]),
        Route("/acr/v1/{repo:path}/_tags/{tag}", acr_tag, methods=["GET"]),
        Route("/acr/v1/{repo:path}/_manifests/{ref}", acr_manifest, methods=["GET"]),
        Route("/v2/{repo:path}/manifests/{ref}", v2_manifest, methods=["GET", "HEAD"]),
        Route("/oauth2/exchange", acr_exchange, methods=["POST"]),
        Route("/oauth2/token", acr_token, methods=["POST"]),
        Route("/{rest:path}", unknown, methods=["GET", "PUT", "POST", "PATCH", "DELETE"]),
    ]
    return Starlette(routes=routes)
