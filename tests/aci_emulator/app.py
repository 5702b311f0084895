"""The emulator's HTTP surface: ARM container groups, AAD tokens and ACR, on one host.

Only what the runtime's SDK calls are routed; an unknown route is a loud 404 so a new
SDK call shows up as a failing test rather than a silent pass. Every ARM body sent is
checked against the spec's schema (`schema.py`); a violation fails the test at
`AciEmulator.stop()`.

Sources of the ARM rules below, besides the ACI spec (see state.py):
- ARM answers a missing bearer token with 401 `AuthenticationFailed` and an unknown one
  with 401 `InvalidAuthenticationToken`, a missing api-version with 400
  `MissingApiVersionParameter` and one the provider does not register with 400
  `NoRegisteredProviderFound` ("Troubleshoot common Azure deployment errors",
  learn.microsoft.com/azure/azure-resource-manager/troubleshooting/common-deployment-errors).
- Long-running PUT/DELETE answer with `Azure-AsyncOperation` and `Retry-After` (ARM
  resource provider contract, "Asynchronous operations", azure-resource-manager-rpc
  async-api-reference.md).
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

from tests.aci_emulator.schema import violations
from tests.aci_emulator.state import (
    API_VERSION,
    TRANSITIONING,
    EmulatorState,
    Group,
    finish_put,
    fqdn_for,
    public_view,
    region_of,
)

ARM = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance"
# ACI does not document its page size; ARM's list APIs page with `nextLink`
# (spec: ContainerGroups_ListByResourceGroup is x-ms-pageable). 100 is a common ARM page.
DEFAULT_PAGE_SIZE = 100

# Backing hooks: (group, operation id) -> None; they end the operation themselves.
Hook = Callable[[Group, str], None]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body).encode(), status, headers=headers, media_type="application/json"
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"code": code, "message": message}}, status, headers)


def _requests(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        ((c.get("properties") or {}).get("resources") or {}).get("requests") or {}
        for c in (body.get("properties") or {}).get("containers") or []
    ]


def _immutable(body: dict[str, Any]) -> dict[str, Any]:
    """What ACI cannot change on an existing group.

    "Changes to these properties require container group deletion prior to
    redeployment: OS type; CPU, memory, or GPU resources; Restart policy; Network
    profile" (MicrosoftDocs/azure-docs articles/container-instances/
    container-instances-update.md, "Properties that require container delete"); zones:
    "ACI requires you to delete your existing deployment and recreate it with zonal
    support" (learn.microsoft.com/azure/reliability/migrate-container-instances). In
    2023-05-01 the network profile is `subnetIds`.
    """
    props = body.get("properties") or {}
    return {
        "osType": props.get("osType"),
        "restartPolicy": props.get("restartPolicy") or "Always",
        "resources": [
            (r.get("cpu"), r.get("memoryInGB"), json.dumps(r.get("gpu"), sort_keys=True))
            for r in _requests(body)
        ],
        "subnetIds": json.dumps(props.get("subnetIds"), sort_keys=True),
        "zones": sorted(body.get("zones") or []),
    }


def create_app(
    state: EmulatorState,
    base_url: Callable[[], str],
    on_put: Hook | None = None,
    on_delete: Hook | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    tenant: str = "",
    check_schema: bool = True,
) -> Starlette:
    def record(response: Response, definition: str | None) -> Response:
        body = bytes(response.body)
        state.sent.append(body)
        if check_schema and definition is not None and body:
            found = violations(definition, json.loads(body))
            if found:
                state.violations.extend(found)
        return response

    def error(status: int, code: str, message: str, **headers: str) -> Response:
        return record(_error(status, code, message, headers or None), "CloudError")

    def arm_guard(request: Request, route: str) -> Response | None:
        state.calls[(request.method, route)] += 1
        auth = request.headers.get("authorization", "")
        challenge = {
            "WWW-Authenticate": 'Bearer authorization_uri="'
            f'{base_url()}/{tenant}", error="invalid_token"'
        }
        if not auth.startswith("Bearer "):
            return error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                **challenge,
            )
        if auth.removeprefix("Bearer ") not in state.tokens:
            return error(
                401, "InvalidAuthenticationToken", "The access token is invalid.", **challenge
            )
        version = request.query_params.get("api-version")
        if version is None:
            return error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if version != API_VERSION:
            return error(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for API version '{version}' and "
                f"type 'containerGroups'. The supported api-versions are '{API_VERSION}'.",
            )
        fault = state.fault_for(request.method, route)
        if fault is None:
            return None
        status, retry_after = fault
        if status == 429:
            return error(
                429,
                "TooManyRequests",
                "emulated ARM throttling",
                **{"Retry-After": f"{retry_after:g}"},
            )
        return error(500, "InternalServerError", "emulated ARM failure")

    def operation_url(location: str, op_id: str, sub: str) -> str:
        return (
            f"{base_url()}/subscriptions/{sub}/providers/Microsoft.ContainerInstance/"
            f"locations/{region_of(location)}/operations/{op_id}?api-version={API_VERSION}"
        )

    def lro_headers(group: Group, op_id: str) -> dict[str, str]:
        return {
            "Azure-AsyncOperation": operation_url(group.location, op_id, group.subscription),
            "Retry-After": state.lro_retry_after,
        }

    async def list_groups(request: Request) -> Response:
        if (denied := arm_guard(request, "list")) is not None:
            return denied
        state.settle()
        sub, rg = request.path_params["sub"], request.path_params["rg"]
        groups = state.in_resource_group(sub, rg)
        skip = int(request.query_params.get("$skipToken", "0"))
        page = [public_view(g, False) for g in groups[skip : skip + page_size]]
        body: dict[str, Any] = {"value": page}
        if skip + page_size < len(groups):
            body["nextLink"] = (
                f"{base_url()}{request.url.path}?api-version={API_VERSION}"
                f"&$skipToken={skip + page_size}"
            )
        return record(_json(body), "ContainerGroupListResult")

    async def group(request: Request) -> Response:
        if (denied := arm_guard(request, "group")) is not None:
            return denied
        state.settle()
        sub, rg, name = (request.path_params[k] for k in ("sub", "rg", "name"))
        existing = state.group(sub, rg, name)
        if request.method == "GET":
            if existing is None:
                return error(404, "ResourceNotFound", f"container group {name} not found")
            return record(_json(public_view(existing, True)), "ContainerGroup")
        if request.method == "PUT":
            return await put(request, sub, rg, name, existing)
        if request.method == "PATCH":
            if existing is None:
                return error(404, "ResourceNotFound", f"container group {name} not found")
            body = await request.json()
            if bad := violations("Resource", body):
                return error(400, "InvalidRequestContent", bad[0])
            # "Updates container group tags with specified values" (spec,
            # ContainerGroups_Update): tags only, the containers are not touched.
            with state.lock:
                existing.body["tags"] = dict(body.get("tags") or {})
            return record(_json(public_view(existing, True)), "ContainerGroup")
        return delete(existing, name)

    async def put(
        request: Request, sub: str, rg: str, name: str, existing: Group | None
    ) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "InvalidRequestContent", "the request body is not JSON")
        if bad := violations("ContainerGroup", body):
            return error(400, "InvalidRequestContent", bad[0])
        if not body.get("location"):
            return error(400, "LocationRequired", "The location property is required.")
        if existing is not None and existing.provisioning in TRANSITIONING:
            return error(
                409,
                "ContainerGroupTransitioning",
                f"The container group '{name}' is still transitioning, please retry later.",
            )
        cpu = sum(float(r.get("cpu", 0)) for r in _requests(body))
        memory = sum(float(r.get("memoryInGB", 0)) for r in _requests(body))
        if cpu > state.region_max_cpu or memory > state.region_max_memory_gb:
            # ARM's answer quoted in MicrosoftDocs/azure-docs#24776 and
            # virtual-kubelet/virtual-kubelet#592 (HTTP 409, "ServiceUnavailable").
            return error(
                409,
                "ServiceUnavailable",
                f"The requested resource is not available in the location "
                f"'{region_of(body['location'])}' at this moment. Please retry with a "
                f"different resource request or in another location. Resource requested: "
                f"'{cpu:g}' CPU '{memory:g}' GB memory "
                f"'{body['properties'].get('osType', 'Linux')}' OS",
            )
        if existing is not None and _immutable(existing.body) != _immutable(body):
            # The message ARM gives, as quoted in MicrosoftDocs/azure-docs#37604.
            return error(
                400,
                "InvalidContainerGroupUpdate",
                f"The updates on container group '{name}' are invalid. If you are going to "
                "update the os type, restart policy, network profile, CPU, memory or GPU "
                "resources for a container group, you must delete it first and then create "
                "a new one.",
            )
        fresh = Group(sub, rg, name, body)
        ip = body["properties"].get("ipAddress") or {}
        label = str(ip.get("dnsNameLabel") or "").lower()
        scope = ip.get("autoGeneratedDomainNameLabelScope") or "Unsecure"
        owner = "/".join(fresh.key)

        def taken() -> Response:
            return error(
                400,
                "DnsNameLabelAlreadyTaken",
                f"The DNS name label '{label}' in container group '{name}' is not "
                "available. Try using a different label.",
            )

        with state.lock:
            held = state.dns_labels.get((region_of(fresh.location), label))
            if label and scope == "Unsecure" and held not in (None, owner):
                # A label is unique per region across all customers; ACI's answer, as
                # the Azure CLI prints it: "(DnsNameLabelAlreadyTaken) The DNS name label
                # 'aci-demo' in container group 'file-share-demo' is not available. Try
                # using a different label."
                return taken()
            if existing is not None:
                old_ip = existing.body["properties"].get("ipAddress") or {}
                same_name = (
                    old_ip.get("dnsNameLabel"),
                    old_ip.get("autoGeneratedDomainNameLabelScope"),
                )
                if same_name == (
                    ip.get("dnsNameLabel"),
                    ip.get("autoGeneratedDomainNameLabelScope"),
                ):
                    fresh.fqdn = existing.fqdn
            fresh.fqdn = fresh.fqdn or fqdn_for(fresh, tenant)
            if fresh.fqdn and any(
                g.fqdn == fresh.fqdn and g.key != fresh.key for g in state.groups.values()
            ):
                # A reuse scope hashes the tenant (and more) with the resource name: "The
                # resource name cannot be reused within the same region and tenant"
                # (TenantReuse, "AutoGeneratedDomainNameLabelScope"), e.g. a group of the
                # same name and label in another resource group of the tenant.
                return taken()
            if existing is not None:
                fresh.restart_count = existing.restart_count
                fresh.starts = existing.starts
                state.remove_group(fresh.key)
            if label and scope == "Unsecure":
                state.dns_labels[(region_of(fresh.location), label)] = owner
            # An update restarts the containers in place ("Update containers in Azure
            # Container Instances"), an identical PUT too ("If you set all properties to
            # the values you previously provided ... the container will restart").
            fresh.starts += 1
            fresh.provisioning = "Creating" if existing is None else "Updating"
            fresh.fail = name in state.faults.fail_provisioning
            state.faults.fail_provisioning.discard(name)
            state.groups[fresh.key] = fresh
            operation = state.new_operation("put", fresh.key)
            after_commit = state.faults.after_commit.pop(0) if state.faults.after_commit else None
        if on_put is None:
            operation.done_at = state.clock() + state.faults.provisioning_delay
            state.settle()
        else:
            on_put(fresh, operation.id)
        if after_commit is not None:
            # ARM committed the PUT (the group exists and is restarting), then the
            # answer is lost; azure-core's default retry policy would send the same PUT
            # again (and ACI restart the containers again).
            code = "GatewayTimeout" if after_commit == 504 else "InternalServerError"
            return error(after_commit, code, "emulated failure after the PUT was committed")
        # 201 on create, 200 on update (spec: ContainerGroups_CreateOrUpdate responses).
        return record(
            _json(
                public_view(fresh, False),
                201 if existing is None else 200,
                lro_headers(fresh, operation.id),
            ),
            "ContainerGroup",
        )

    def delete(existing: Group | None, name: str) -> Response:
        # Spec (ContainerGroups_Delete): 200 with the group, 202 "Delete started",
        # 204 "No Content - the specified container group was not found".
        if existing is None:
            return Response(status_code=204)
        if existing.provisioning in TRANSITIONING:
            return error(
                409,
                "ContainerGroupTransitioning",
                f"The container group '{name}' is still transitioning, please retry later.",
            )
        with state.lock:
            if state.delete_answers_200:
                state.remove_group(existing.key)
                return record(_json(public_view(existing, False)), "ContainerGroup")
            existing.provisioning = "Deleting"
            operation = state.new_operation("delete", existing.key)
        if on_delete is None:
            operation.done_at = state.clock()
            state.settle()
        else:
            on_delete(existing, operation.id)
        return Response(status_code=202, headers=lro_headers(existing, operation.id))

    async def restart(request: Request) -> Response:
        if (denied := arm_guard(request, "restart")) is not None:
            return denied
        existing = state.group(*(request.path_params[k] for k in ("sub", "rg", "name")))
        if existing is None:
            return error(404, "ResourceNotFound", "container group not found")
        with state.lock:
            existing.starts += 1
            operation = state.new_operation("put", existing.key)
            finish_put(existing, operation)
        # Spec (ContainerGroups_Restart): 204 NoContent, long-running.
        return Response(status_code=204, headers=lro_headers(existing, operation.id))

    async def operation_status(request: Request) -> Response:
        if (denied := arm_guard(request, "operation")) is not None:
            return denied
        state.settle()
        operation = state.operations.get(request.path_params["op"])
        if operation is None:
            return error(404, "OperationNotFound", "unknown operation")
        body: dict[str, Any] = {"id": operation.id, "status": operation.status}
        if operation.error is not None:
            body["error"] = operation.error
        return record(_json(body, headers={"Retry-After": state.lro_retry_after}), None)

    # -- AAD (the slice ClientSecretCredential/MSAL uses) --------------------------------

    async def openid_configuration(request: Request) -> Response:
        tenant_id = request.path_params["tenant"]
        base = f"{base_url()}/{tenant_id}"
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
        state.token_scopes.extend(" ".join(form.get("scope") or []).split())
        token = f"arm-{uuid.uuid4().hex}"
        state.tokens.add(token)
        return _json({"token_type": "Bearer", "expires_in": 3600, "access_token": token})

    # -- ACR (tag → digest through the registry's token exchange) ---------------------------
    # Shapes as the data-plane examples (containerregistry/data-plane/
    # Azure.ContainerRegistry/stable/2021-07-01/examples: GetTagAttributes,
    # GetManifestAttributes, PostRefreshToken, PostAccessToken).

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

    def acr_now() -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def changeable() -> dict[str, bool]:
        return {
            "deleteEnabled": True,
            "writeEnabled": True,
            "readEnabled": True,
            "listEnabled": True,
        }

    async def acr_tag(request: Request) -> Response:
        repository, tag = request.path_params["repo"], request.path_params["tag"]
        state.calls[("GET", "acr_tag")] += 1
        if not acr_authorized(request):
            return acr_challenge(request, repository)
        digest = state.images.get(repository, {}).get(tag)
        if digest is None:
            return _json({"errors": [{"code": "TAG_UNKNOWN", "message": "tag not found"}]}, 404)
        now = acr_now()
        tag_body = {"name": tag, "digest": digest, "createdTime": now, "lastUpdateTime": now}
        return _json(
            {
                "registry": request.url.netloc,
                "imageName": repository,
                "tag": {**tag_body, "changeableAttributes": changeable()},
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
        now = acr_now()
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
                    "changeableAttributes": changeable(),
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
        # azure-containerregistry reads the refresh token's `exp` claim: a JWT shape.
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
