"""The emulator's HTTP surface: ARM routes for Container Apps and the AAD token endpoint.

Only what a runtime calls is routed; anything else is a loud 404 so a new SDK call
shows up as a failing test. Every body sent is checked against the spec's schema for
that operation; a mismatch is recorded in `state.violations` (the tests' fixture fails
on any), so the emulator cannot drift from the spec unnoticed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.containerapps_emulator import schema, views
from tests.containerapps_emulator.state import App, ArmError, EmulatorState, Operation

API_VERSION = schema.API_VERSION
ARM = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App"
OPS = "/subscriptions/{sub}/providers/Microsoft.App/locations/{loc}"
# spec: the container app operations answer errors as common-types ErrorResponse; the
# revision, replica and environment operations as DefaultErrorResponse.
APP_ERROR = "ErrorResponse"
DEFAULT_ERROR = "DefaultErrorResponse"


def create_app(
    state: EmulatorState,
    base_url: Callable[[], str],
    violations: list[str],
    page_size: int | None = None,
    lro_retry_after: str = "0",
    check_schema: bool = True,
) -> Starlette:
    def send(
        body: Any, definition: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        problems = schema.errors(definition, body) if check_schema else []
        if problems:
            violations.append(f"{definition}: {problems}")
        raw = json.dumps(body).encode()
        state.sent.append(raw)
        return Response(raw, status, headers=headers, media_type="application/json")

    def error(status: int, code: str, message: str, definition: str, **headers: str) -> Response:
        return send({"error": {"code": code, "message": message}}, definition, status, headers)

    def guard(request: Request, route: str, error_definition: str) -> Response | None:
        """ARM's checks before a provider sees the request: token, api-version, faults."""
        state.calls[(request.method, route)] += 1
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in state.tokens:
            # Assumption (ARM behaviour, not in the spec): 401 AuthenticationFailed.
            return error(
                401, "AuthenticationFailed", "missing or invalid bearer token", error_definition
            )
        version = request.query_params.get("api-version")
        if version is None:
            # Assumption: ARM's codes MissingApiVersionParameter / NoRegisteredProviderFound.
            return error(
                400, "MissingApiVersionParameter", "api-version is required", error_definition
            )
        if version != API_VERSION:
            return error(
                400,
                "NoRegisteredProviderFound",
                f"no registered resource provider for api-version {version!r};"
                f" this emulator speaks {API_VERSION}",
                error_definition,
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
                error_definition,
                **{"Retry-After": f"{retry_after:g}"},
            )
        return error(500, "InternalServerError", "emulated ARM failure", error_definition)

    def op_urls(app: App, operation: Operation) -> dict[str, str]:
        location = app.environment.location
        base = f"{base_url()}/subscriptions/{app.subscription}/providers/Microsoft.App"
        base += f"/locations/{location}"
        query = f"?api-version={API_VERSION}"
        # spec: ContainerApps_Patch example's azure-asyncoperation header names
        # .../locations/{loc}/containerappOperationResults/{id}; Location is in the spec's
        # 202 headers. Assumption: one status URL (Statuses) and one result URL (Results).
        return {
            "Azure-AsyncOperation": f"{base}/containerappOperationStatuses/{operation.id}{query}",
            "Location": f"{base}/containerappOperationResults/{operation.id}{query}",
            "Retry-After": lro_retry_after,  # spec: an int32; 0 lets the client's interval rule
        }

    def find(request: Request) -> App | None:
        params = request.path_params
        state.settle()
        return state.app(params["sub"], params["rg"], params["name"])

    def not_found(name: str, definition: str) -> Response:
        return error(404, "ResourceNotFound", f"container app {name} not found", definition)

    async def body_of(request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            return error(400, "InvalidRequestContent", f"body is not JSON: {exc}", APP_ERROR)
        if not isinstance(body, dict):
            return error(400, "InvalidRequestContent", "body must be a JSON object", APP_ERROR)
        return body

    # -- container apps ----------------------------------------------------------------------

    async def list_apps(request: Request) -> Response:
        if (denied := guard(request, "list", APP_ERROR)) is not None:
            return denied
        state.settle()
        apps = state.in_resource_group(request.path_params["sub"], request.path_params["rg"])
        body = page(request, apps)
        # Only the page answered is rendered (a scale run lists thousands of apps).
        body["value"] = [views.app_view(a) for a in body["value"]]
        return send(body, "ContainerAppCollection")

    def page(request: Request, items: list[Any]) -> dict[str, Any]:
        if page_size is None:
            return {"value": items}
        skip = int(request.query_params.get("$skiptoken", "0") or 0)
        body: dict[str, Any] = {"value": items[skip : skip + page_size]}
        if skip + page_size < len(items):
            body["nextLink"] = (
                f"{base_url()}{request.url.path}?api-version={API_VERSION}"
                f"&$skiptoken={skip + page_size}"
            )
        return body

    async def container_app(request: Request) -> Response:
        if (denied := guard(request, "app", APP_ERROR)) is not None:
            return denied
        params = request.path_params
        app = find(request)
        method = request.method
        if method == "GET":
            return (
                send(views.app_view(app), "ContainerApp")
                if app
                else not_found(params["name"], APP_ERROR)
            )
        try:
            if method == "DELETE":
                operation = state.delete(params["sub"], params["rg"], params["name"])
                if operation is None:
                    return Response(status_code=204)  # spec: 204 "Resource does not exist."
                state.settle()
                assert app is not None
                return Response(status_code=202, headers=op_urls(app, operation))
            body = await body_of(request)
            if isinstance(body, Response):
                return body
            problems = (
                schema.errors("ContainerApp", body) if method == "PUT" and check_schema else []
            )
            if problems:
                # Assumption (ARM code): a body that breaks the schema is InvalidRequestContent.
                return error(400, "InvalidRequestContent", "; ".join(problems), APP_ERROR)
            if method == "PUT":
                app, operation, created = state.put(
                    params["sub"], params["rg"], params["name"], body
                )
            else:
                app, operation, created = state.patch(
                    params["sub"], params["rg"], params["name"], body
                )
        except ArmError as exc:
            return error(exc.status, exc.code, exc.message, APP_ERROR)
        state.settle()
        headers = op_urls(app, operation)
        if method == "PATCH":
            # spec: ContainerApps_Update answers 202 with Location (and the example's
            # azure-asyncoperation) while the update runs.
            return Response(status_code=202, headers=headers)
        view = views.app_view(app)
        # spec: ContainerApps_CreateOrUpdate answers 201 on create with Azure-AsyncOperation;
        # 200 on update (the example's 200 body; InProgress until the operation ends).
        return send(
            view,
            "ContainerApp",
            201 if created else 200,
            {k: headers[k] for k in ("Azure-AsyncOperation", "Retry-After")},
        )

    async def list_secrets(request: Request) -> Response:
        if (denied := guard(request, "secrets", APP_ERROR)) is not None:
            return denied
        app = find(request)
        if app is None:
            return not_found(request.path_params["name"], APP_ERROR)
        # spec: SecretsCollection of ContainerAppSecret {name, value (x-ms-secret), ...}:
        # the one call that returns values.
        secrets = [dict(s) for s in app.configuration.get("secrets") or []]
        return send({"value": secrets}, "SecretsCollection")

    # -- revisions and replicas ----------------------------------------------------------------

    def revision_of(request: Request) -> tuple[App, Any] | Response:
        app = find(request)
        if app is None:
            return not_found(request.path_params["name"], DEFAULT_ERROR)
        revision = app.revisions.get(request.path_params["rev"])
        if revision is None:
            return error(
                404,
                "ResourceNotFound",
                f"revision {request.path_params['rev']} not found",
                DEFAULT_ERROR,
            )
        return app, revision

    async def list_revisions(request: Request) -> Response:
        if (denied := guard(request, "revisions", DEFAULT_ERROR)) is not None:
            return denied
        app = find(request)
        if app is None:
            return not_found(request.path_params["name"], DEFAULT_ERROR)
        items = [views.revision_view(app, r) for r in app.revisions.values()]
        return send(page(request, items), "RevisionCollection")

    async def get_revision(request: Request) -> Response:
        if (denied := guard(request, "revision", DEFAULT_ERROR)) is not None:
            return denied
        found = revision_of(request)
        if isinstance(found, Response):
            return found
        return send(views.revision_view(*found), "Revision")

    async def revision_action(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("activate", "deactivate", "restart"):
            return await unknown(request)
        if (denied := guard(request, action, DEFAULT_ERROR)) is not None:
            return denied
        found = revision_of(request)
        if isinstance(found, Response):
            return found
        app, revision = found
        if action == "restart":
            restart_revision(app, revision)
        else:
            state.set_active(app, revision, action == "activate")
        # spec: activate, deactivate and restart answer a bare 200.
        return Response(status_code=200)

    async def list_replicas(request: Request) -> Response:
        if (denied := guard(request, "replicas", DEFAULT_ERROR)) is not None:
            return denied
        found = revision_of(request)
        if isinstance(found, Response):
            return found
        app, revision = found
        items = [views.replica_view(app, revision, r) for r in revision.replicas]
        # spec: ReplicaCollection has no nextLink (the operation is not pageable).
        return send({"value": items}, "ReplicaCollection")

    # -- managed environments and operations --------------------------------------------------

    async def environment(request: Request) -> Response:
        if (denied := guard(request, "environment", DEFAULT_ERROR)) is not None:
            return denied
        params = request.path_params
        env = state.environments.get((params["sub"], params["rg"].lower(), params["env"]))
        if env is None:
            return error(
                404,
                "ResourceNotFound",
                f"managed environment {params['env']} not found",
                DEFAULT_ERROR,
            )
        return send(views.environment_view(env), "ManagedEnvironment")

    def operation_of(request: Request) -> Operation | Response:
        state.settle()
        operation = state.operations.get(request.path_params["op"])
        if operation is None:
            return error(404, "OperationNotFound", "unknown operation", APP_ERROR)
        return operation

    async def operation_status(request: Request) -> Response:
        if (denied := guard(request, "operation", APP_ERROR)) is not None:
            return denied
        operation = operation_of(request)
        if isinstance(operation, Response):
            return operation
        body: dict[str, Any] = {
            "id": request.url.path,
            "name": operation.id,
            "status": operation.status,
            "startTime": operation.started,
        }
        if operation.error is not None:
            body["error"] = operation.error
        return send(body, "OperationStatusResult", headers={"Retry-After": lro_retry_after})

    async def operation_result(request: Request) -> Response:
        if (denied := guard(request, "operation", APP_ERROR)) is not None:
            return denied
        operation = operation_of(request)
        if isinstance(operation, Response):
            return operation
        if operation.status == "InProgress":
            return Response(
                status_code=202,
                headers={"Location": str(request.url), "Retry-After": lro_retry_after},
            )
        if operation.status == "Failed":
            return error(
                400,
                operation.error["code"] if operation.error else "Failed",
                str(operation.error),
                APP_ERROR,
            )
        app = state.apps.get(operation.key)
        if operation.kind == "delete" or app is None:
            return Response(status_code=204)
        return send(views.app_view(app), "ContainerApp")

    # -- AAD: the slice ClientSecretCredential (MSAL) uses ----------------------------------------

    async def openid_configuration(request: Request) -> Response:
        base = f"{base_url()}/{request.path_params['tenant']}"
        return Response(
            json.dumps(
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "issuer": f"{base}/v2.0",
                    "tenant_region_scope": "WW",
                    "response_types_supported": ["code", "token"],
                }
            ),
            media_type="application/json",
        )

    async def aad_token(request: Request) -> Response:
        state.calls[("POST", "aad")] += 1
        form = parse_qs((await request.body()).decode())
        if form.get("grant_type") != ["client_credentials"] or not form.get("client_secret"):
            refused = {"error": "invalid_client", "error_description": "no client credentials"}
            return Response(json.dumps(refused), 400, media_type="application/json")
        token = f"arm-{uuid.uuid4().hex}"
        state.tokens.add(token)
        body = {"token_type": "Bearer", "expires_in": 3600, "access_token": token}
        return Response(json.dumps(body), media_type="application/json")

    async def unknown(request: Request) -> Response:
        state.calls[(request.method, "unknown")] += 1
        return error(
            404, "NoRoute", f"emulator has no route {request.method} {request.url.path}", APP_ERROR
        )

    def restart_revision(app: App, revision: Any) -> None:
        with state.lock:
            for replica in revision.replicas:
                replica.restarts += 1
        if state.on_restart is not None:
            state.on_restart(app, revision)

    app_path = ARM + "/containerApps/{name}"
    routes = [
        Route(ARM + "/containerApps", list_apps, methods=["GET"]),
        Route(app_path, container_app, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route(app_path + "/listSecrets", list_secrets, methods=["POST"]),
        Route(app_path + "/revisions", list_revisions, methods=["GET"]),
        Route(app_path + "/revisions/{rev}", get_revision, methods=["GET"]),
        Route(app_path + "/revisions/{rev}/replicas", list_replicas, methods=["GET"]),
        Route(app_path + "/revisions/{rev}/{action:str}", revision_action, methods=["POST"]),
        Route(ARM + "/managedEnvironments/{env}", environment, methods=["GET"]),
        Route(OPS + "/containerappOperationStatuses/{op}", operation_status, methods=["GET"]),
        Route(OPS + "/containerappOperationResults/{op}", operation_result, methods=["GET"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/oauth2/v2.0/token", aad_token, methods=["POST"]),
        Route("/{rest:path}", unknown, methods=["GET", "PUT", "POST", "PATCH", "DELETE"]),
    ]
    return Starlette(routes=routes)
