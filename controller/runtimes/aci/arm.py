"""ARM as the ACI runtime speaks it: SDK clients, the cheap listing, and a PUT sent once.

Facts that shape it:

- The token is asked for the ARM audience of the cloud the controller talks to
  (`credential_scopes=[f"{audience}/.default"]`; the SDK's default is the public
  cloud's, which another cloud's Entra ID does not issue), as "Multicloud: connect to
  all regions with the Azure libraries for Python" (learn.microsoft.com/azure/developer/
  python/sdk/azure-sdk-sovereign-domain) does.
- ARM throttles with 429 + `Retry-After` and fails over with 5xx; azure-core's retry
  policy honours both for reads, DELETE and the tags PATCH.
- A PUT is different: ARM can commit it and still answer 500/504 (or lose the
  connection), and a PUT of a container group restarts its containers even when the
  spec is identical. So the SDK never re-sends a PUT on 5xx or a broken connection here
  (429 with `Retry-After` is a refusal before anything happened, and is retried). After
  such an answer, a GET says whether this very PUT landed, by the `aliasflow-put-id`
  tag it carried; only a PUT that did not land is sent again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ServiceResponseError
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance.models import ContainerGroup
from azure.mgmt.core.exceptions import ARMErrorFormat

from controller.runtimes.aci.spec import TAG_PUT_ID, light_group

ARM_URL = "https://management.azure.com"
# The API version azure-mgmt-containerinstance 10.1 speaks (its default).
API_VERSION = "2023-05-01"
# azure-core retries PATCH only on 500/503/504; a tags-only update is idempotent, so it
# may also be retried on 429/408 like reads and DELETE.
RETRY_PATCH = frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"})
# azure-core's default methods without PUT: a PUT is not re-sent on 5xx (module docstring).
NO_PUT_RETRY = frozenset({"HEAD", "GET", "DELETE", "OPTIONS", "TRACE"})


@dataclass(frozen=True)
class RetryOptions:
    """The SDK retry policy: ARM's 429 `Retry-After` is honoured on top of these.

    azure-core caps retries on error statuses separately (`retry_status`, default 3,
    below `retry_total`): a throttling storm of four 429s would fail at its default, so
    both are set from `total`. The same budget bounds our own re-sent PUTs.
    """

    total: int = 10
    backoff_factor: float = 0.8
    backoff_max: float = 60.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_factor * 2**attempt))


class ArmClients:
    """One SDK client per subscription, all with the same credential, audience and policy."""

    def __init__(
        self,
        credential: TokenCredential,
        *,
        base_url: str,
        audience: str,
        retry: RetryOptions,
        polling_interval: float,
        connection_verify: str | bool | None = None,
    ) -> None:
        self._credential = credential
        self._base_url = base_url
        self._kwargs: dict[str, Any] = {
            "credential_scopes": [f"{audience.rstrip('/')}/.default"],
            "retry_total": retry.total,
            "retry_status": retry.total,
            "retry_backoff_factor": retry.backoff_factor,
            "retry_backoff_max": retry.backoff_max,
            "polling_interval": polling_interval,
        }
        if connection_verify is not None:
            self._kwargs["connection_verify"] = connection_verify
        self._clients: dict[str, ContainerInstanceManagementClient] = {}
        self._lock = threading.Lock()

    def __call__(self, subscription_id: str) -> ContainerInstanceManagementClient:
        with self._lock:
            client = self._clients.get(subscription_id)
            if client is None:
                client = ContainerInstanceManagementClient(
                    self._credential, subscription_id, base_url=self._base_url, **self._kwargs
                )
                self._clients[subscription_id] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def list_groups(
    client: ContainerInstanceManagementClient, subscription_id: str, resource_group: str
) -> dict[str, ContainerGroup]:
    """`list_by_resource_group`, following `nextLink`, read without the model layer.

    The request runs through the client's own pipeline (credential, retry policy, TLS),
    exactly as `container_groups.list_by_resource_group` would send it; only the response
    is read as JSON (see `light_group`) to keep 1,000 groups cheap. A resource group that
    does not exist (yet) holds nothing. Raises `AzureError`.
    """
    url: str | None = (
        f"/subscriptions/{quote(subscription_id)}/resourceGroups/{quote(resource_group)}/"
        f"providers/Microsoft.ContainerInstance/containerGroups?api-version={API_VERSION}"
    )
    groups: dict[str, ContainerGroup] = {}
    while url:
        response = client._send_request(HttpRequest("GET", url))
        if response.status_code == 404:
            return {}
        if response.status_code != 200:
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        body = response.json()
        for item in body.get("value") or []:
            group = light_group(item)
            groups[str(group.name)] = group
        url = body.get("nextLink")
    return groups


Poller = LROPoller[ContainerGroup]


def put_once(
    client: ContainerInstanceManagementClient,
    resource_group: str,
    group: ContainerGroup,
    name: str,
    *,
    polling_interval: float,
    retry: RetryOptions,
    get: Callable[[], ContainerGroup | None],
    sleep: Callable[[float], None] = time.sleep,
) -> Poller | None:
    """Send the PUT until ARM has it, never twice: a poller, or None when a PUT whose
    answer was lost turns out to have landed (then the caller follows it by GETs).

    `group` carries a fresh `aliasflow-put-id` tag; `get` reads the group back. Raises
    the last `AzureError` when the re-sends are used up.
    """
    put_id = (group.tags or {})[TAG_PUT_ID]
    for attempt in range(retry.total + 1):
        try:
            return client.container_groups.begin_create_or_update(
                resource_group,
                name,
                group,
                polling_interval=polling_interval,
                retry_on_methods=NO_PUT_RETRY,
            )
        except HttpResponseError as exc:
            if exc.status_code is None or exc.status_code < 500:
                raise
            lost: AzureError = exc
        except ServiceResponseError as exc:  # sent; the answer never came
            lost = exc
        current = get()
        if current is not None and (current.tags or {}).get(TAG_PUT_ID) == put_id:
            return None
        if attempt < retry.total:
            sleep(retry.backoff(attempt))
    raise lost
