"""ARM as the ACI runtime speaks it: the cheap listing, and a PUT sent once.

Clients, retries and the ARM audience are shared with every Azure runtime
(`runtimes/azurearm.py`). What is ACI's own: a PUT is different from other writes. ARM
can commit it and still answer 500/504 (or lose the connection), and a PUT of a container
group restarts its containers even when the spec is identical. So the SDK never re-sends
a PUT on 5xx or a broken connection here (429 with `Retry-After` is a refusal before
anything happened, and is retried). After such an answer, a GET says whether this very
PUT landed, by the `aliasflow-put-id` tag it carried; only a PUT that did not land is
sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ServiceResponseError
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance.models import ContainerGroup
from azure.mgmt.core.exceptions import ARMErrorFormat

from controller.runtimes.aci.spec import TAG_PUT_ID, light_group
from controller.runtimes.azurearm import (
    ARM_URL,
    NO_PUT_RETRY,
    RETRY_PATCH,
    ArmClients,
    RetryOptions,
)

__all__ = [
    "ARM_URL",
    "RETRY_PATCH",
    "ArmClients",
    "Poller",
    "RetryOptions",
    "aci_clients",
    "list_groups",
    "put_once",
]

# The API version azure-mgmt-containerinstance 10.1 speaks (its default).
API_VERSION = "2023-05-01"

AciClients = ArmClients[ContainerInstanceManagementClient]


def aci_clients(credential: TokenCredential, **options: Any) -> AciClients:
    """ACI's SDK clients (the client class is looked up here when a client is made, so a
    test can hand the SDK another transport)."""
    return ArmClients(
        lambda *args, **kwargs: ContainerInstanceManagementClient(*args, **kwargs),
        credential,
        **options,
    )


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
        # orjson: ~4x the standard library's speed on a page of 100 groups.
        body = orjson.loads(response.content)
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
