"""ARM as the containerapp runtime speaks it, through `azure-mgmt-appcontainers`.

Every call goes through the SDK's own pipeline (credential, retry policy honouring
`Retry-After`, TLS) and every `AzureError` leaves here wrapped into our error tree,
with what was being done and on which app. Bodies are ARM's JSON (the spec's shapes):
the SDK accepts a mapping for a PUT or PATCH body, and its results are read back as
JSON (`as_dict()`), so one reader (`spec.app_view`) serves GETs and listings alike. A
body is handed to the SDK as `ContainerApp(body)`, its model over that very JSON (what
the SDK sends is the body, byte for byte).

The listing is read without the model layer: deserialising a `ContainerApp` costs
~0.7 ms, most of a second per 1,000 apps (measured here), for the few fields a full
pass reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.mgmt.appcontainers import ContainerAppsAPIClient
from azure.mgmt.appcontainers.models import ContainerApp
from azure.mgmt.core.exceptions import ARMErrorFormat

from controller.core.errors import ControllerError, HealthTimeoutError
from controller.runtimes.azurearm import (
    RETRY_IDEMPOTENT_POST,
    RETRY_PATCH,
    ArmClients,
    ErrorVocabulary,
    arm_error_text,
)
from controller.runtimes.azurearm import wrap_azure_error as wrap_arm_error
from controller.runtimes.containerapp.spec import (
    Json,
    ReplicaView,
    RevisionView,
    replica_view,
    revision_view,
)

# The api-version azure-mgmt-appcontainers 5.1 speaks (its default).
API_VERSION = "2026-07-01"
Key = tuple[str, str]  # (subscription id, resource group)

# What Container Apps' refusals ask the manifest to change. The codes are those ARM
# answers with; where the spec names none, the emulator's (tests/containerapps_emulator)
# say "Assumption" beside them.
CONTAINERAPP_ERRORS = ErrorVocabulary(
    "Container Apps",
    "container app",
    advice={
        "ContainerAppInvalidScaleSettings": (
            "set spec.target.containerapp.replicas within 0-1000 (min) and 1-1000 (max)"
        ),
        "ContainerAppOperationInProgress": (
            "an earlier operation on the app is still running; the next pass retries"
        ),
        "ManagedEnvironmentNotFound": (
            "set spec.target.containerapp.environment to an existing environment's name "
            "(in the app's resource group) or resource id"
        ),
    },
    spec_codes=frozenset({"ManagedEnvironmentNotFound"}),
)


def wrap(exc: AzureError, what: str) -> ControllerError:
    return wrap_arm_error(exc, what, CONTAINERAPP_ERRORS)


class OperationFailedError(Exception):
    """ARM took the request and its long-running operation ended Failed or Canceled
    (azure-core raises that as an HttpResponseError carrying the 2xx status answer)."""


class ContainerAppsArm:
    """The ARM operations the runtime uses, each wrapped; one SDK client per subscription."""

    def __init__(
        self,
        clients: ArmClients[ContainerAppsAPIClient],
        polling_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self.polling_interval = polling_interval
        self._clock = clock

    def list_apps(self, key: Key) -> list[Json]:
        """Every container app in the resource group, following `nextLink` (spec:
        `x-ms-pageable` on ContainerApps_ListByResourceGroup); none for a resource group
        that does not exist (yet)."""
        url: str | None = (
            f"/subscriptions/{quote(key[0])}/resourceGroups/{quote(key[1])}/providers/"
            f"Microsoft.App/containerApps?api-version={API_VERSION}"
        )
        apps: list[Json] = []
        client = self._clients(key[0])
        try:
            while url:
                response = client.send_request(HttpRequest("GET", url))
                if response.status_code == 404:
                    return []
                if response.status_code != 200:
                    raise HttpResponseError(response=response, error_format=ARMErrorFormat)
                # orjson: ~4x the standard library's speed on a page of 100 apps.
                body = orjson.loads(response.content)
                apps.extend(body.get("value") or [])
                url = body.get("nextLink")
        except AzureError as exc:
            raise wrap(exc, f"list container apps in {key[1]}") from exc
        return apps

    def get_app(self, key: Key, name: str) -> Json | None:
        try:
            app = self._clients(key[0]).container_apps.get(key[1], name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise wrap(exc, f"get {key[1]}/{name}") from exc
        return _json(app)

    def put_app(self, key: Key, name: str, body: Json, timeout: float) -> Json:
        """Create or replace the app and wait for ARM's operation, at most `timeout` s.

        The SDK re-sends a PUT after a 5xx: harmless here, as the same template names
        the same revision (see spec.py), so a PUT ARM already took makes nothing new.
        """
        what = f"put {key[1]}/{name}"
        try:
            poller = self._clients(key[0]).container_apps.begin_create_or_update(
                key[1], name, ContainerApp(body), polling_interval=self.polling_interval
            )
        except AzureError as exc:
            raise wrap(exc, what) from exc
        return self._outcome(poller, timeout, what)

    def patch_app(self, key: Key, name: str, patch: Json, timeout: float) -> Json:
        """A JSON merge patch (spec: ContainerApps_Update); retried like a read, since
        setting the same values twice changes nothing."""
        what = f"patch {key[1]}/{name}"
        try:
            poller = self._clients(key[0]).container_apps.begin_update(
                key[1],
                name,
                ContainerApp(patch),
                polling_interval=self.polling_interval,
                retry_on_methods=RETRY_PATCH,
            )
        except AzureError as exc:
            raise wrap(exc, what) from exc
        return self._outcome(poller, timeout, what)

    def delete_app(self, key: Key, name: str, timeout: float) -> None:
        what = f"delete {key[1]}/{name}"
        try:
            poller = self._clients(key[0]).container_apps.begin_delete(
                key[1], name, polling_interval=self.polling_interval
            )
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise wrap(exc, what) from exc
        self._outcome(poller, timeout, what)

    def revisions(self, key: Key, name: str) -> list[RevisionView]:
        try:
            listed = self._clients(key[0]).container_apps_revisions.list_revisions(key[1], name)
            return [revision_view(_json(item)) for item in listed]
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise wrap(exc, f"list revisions of {key[1]}/{name}") from exc

    def revision(self, key: Key, name: str, revision: str) -> RevisionView | None:
        try:
            found = self._clients(key[0]).container_apps_revisions.get_revision(
                key[1], name, revision
            )
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise wrap(exc, f"get revision {revision}") from exc
        return revision_view(_json(found))

    def replicas(self, key: Key, name: str, revision: str) -> list[ReplicaView]:
        try:
            listed = self._clients(key[0]).container_apps_revision_replicas.list_replicas(
                key[1], name, revision
            )
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise wrap(exc, f"list replicas of {revision}") from exc
        return [replica_view(_json(item), revision) for item in listed.value or []]

    def set_active(self, key: Key, name: str, revision: str, active: bool) -> None:
        operations = self._clients(key[0]).container_apps_revisions
        call = operations.activate_revision if active else operations.deactivate_revision
        try:
            call(key[1], name, revision, retry_on_methods=RETRY_IDEMPOTENT_POST)
        except AzureError as exc:
            verb = "activate" if active else "deactivate"
            raise wrap(exc, f"{verb} revision {revision}") from exc

    def environment_id(self, key: Key, environment: str) -> str | None:
        """The resource id of a managed environment named in the app's resource group."""
        try:
            env = self._clients(key[0]).managed_environments.get(key[1], environment)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise wrap(exc, f"get managed environment {key[1]}/{environment}") from exc
        return str(env.id)

    def _outcome(self, poller: LROPoller[Any], timeout: float, what: str) -> Json:
        """The operation's result once ARM ends it, waiting at most `timeout` s."""
        try:
            poller.wait(max(timeout, 0.0))
            if not poller.done():
                raise HealthTimeoutError(
                    f"{what}: ARM's operation did not end within {timeout:.0f}s; ARM "
                    "carries on and the next pass observes the result"
                )
            return _json(poller.result())
        except HttpResponseError as exc:
            if exc.status_code is not None and 200 <= exc.status_code < 300:
                raise OperationFailedError(f"{what}: {arm_error_text(exc)}") from exc
            raise wrap(exc, what) from exc
        except AzureError as exc:
            raise wrap(exc, what) from exc

    def close(self) -> None:
        self._clients.close()


def _json(model: Any) -> Json:
    """ARM's JSON of an SDK model (rest names, as the wire has them)."""
    if isinstance(model, Mapping):
        as_dict = getattr(model, "as_dict", None)
        data: Json = as_dict() if callable(as_dict) else dict(model)
        return data
    return {}
