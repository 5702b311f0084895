"""The `aci` runtime: model servers as Azure Container Instances container groups.

It executes the planner's actions through `azure-mgmt-containerinstance` and nothing
more; deciding between hot swap and recreate is the planner's job, readiness is the
reconciler's health gate. ACI facts that shape it (see docs/operations.md):

- A PUT of an identical spec still restarts the containers. The planner diffs by the
  `aliasflow-spec-hash` tag before anything is written, so an unchanged deployment costs
  zero writes; a hot swap changes only tags, with PATCH, which does not restart.
- One `list_by_resource_group` per resource group per pass: the cheap full pass over a
  thousand deployments must not GET each group, and must not probe each endpoint.
- ARM throttles with 429 + `Retry-After` and fails over with 5xx; the SDK's retry policy
  honours both (configured here), and what survives it is wrapped into our error tree.
- Creates and deletes are quota-limited (100 per 5 minutes): `QuotaLimiter` counts ours.
- `provisioningState: Failed` does not mean the group stopped: the container states in
  the instance view decide.

Only container groups tagged `aliasflow-managed=true` are observed, updated or deleted,
and only in the resource groups the controller is configured with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance.models import ContainerGroup, Resource
from azure.mgmt.core.exceptions import ARMErrorFormat

from controller.core.errors import (
    HealthTimeoutError,
    InvalidSpecError,
    RuntimeUnavailableError,
)
from controller.core.types import ActualState, DesiredState
from controller.runtimes.aci.errors import arm_error_text, wrap_azure_error
from controller.runtimes.aci.quota import QuotaLimiter
from controller.runtimes.aci.spec import (
    EndpointResolver,
    RegistryCredential,
    actual_from_group,
    build_container_group,
    default_endpoint,
    group_health,
    is_owned,
    light_group,
    owned_tags,
    placement_of,
)
from controller.runtimes.hotswap import request_hot_swap
from controller.runtimes.probe import ServerProbe, probe_server

log = logging.getLogger(__name__)

ARM_URL = "https://management.azure.com"
# The API version azure-mgmt-containerinstance 10.1 speaks (its default).
API_VERSION = "2023-05-01"
# Answers from the model server that mean "not now" rather than "never".
# azure-core retries PATCH only on 500/503/504; a tags-only update is idempotent, so it
# may also be retried on 429/408 like the PUT and DELETE the SDK already retries.
_RETRY_METHODS = frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"})

GroupKey = tuple[str, str]  # (subscription id, resource group)


@dataclass(frozen=True)
class RetryOptions:
    """The SDK retry policy: ARM's 429 `Retry-After` is honoured on top of these.

    azure-core caps retries on error statuses separately (`retry_status`, default 3,
    below `retry_total`): a throttling storm of four 429s would fail at its default, so
    both are set from `total`.
    """

    total: int = 10
    backoff_factor: float = 0.8
    backoff_max: float = 60.0


@dataclass
class _Listing:
    at: float
    groups: dict[str, ContainerGroup]  # every group in the resource group, owned or not


class AciRuntime:
    kind = "aci"

    def __init__(
        self,
        credential: TokenCredential,
        resource_groups: Iterable[GroupKey],
        admin_token: str,
        *,
        tracking_uri: str | None = None,
        base_url: str | None = None,
        connection_verify: str | bool | None = None,
        registry_credentials: tuple[RegistryCredential, ...] = (),
        endpoint_resolver: EndpointResolver = default_endpoint,
        quota: QuotaLimiter | None = None,
        retry: RetryOptions = RetryOptions(),
        polling_interval: float = 2.0,
        delete_timeout: float = 300.0,
        listing_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[str], ServerProbe] = probe_server,
    ) -> None:
        self.resource_groups: tuple[GroupKey, ...] = tuple(dict.fromkeys(resource_groups))
        if not self.resource_groups:
            raise ValueError("the aci runtime needs at least one resource group")
        self._credential = credential
        self._admin_token = admin_token
        self._tracking_uri = tracking_uri
        self._base_url = base_url or ARM_URL
        self._connection_verify = connection_verify
        self._registry_credentials = registry_credentials
        #: Maps a group's FQDN and port to the URL the controller calls (tests map it to
        #: the loopback server that backs an emulated group).
        self.endpoint_resolver = endpoint_resolver
        self.quota = quota or QuotaLimiter()
        self._retry = retry
        self.polling_interval = polling_interval
        self.delete_timeout = delete_timeout
        self._listing_ttl = listing_ttl
        self._clock = clock
        self._probe = probe
        self._clients: dict[str, ContainerInstanceManagementClient] = {}
        self._listings: dict[GroupKey, _Listing] = {}
        self._where: dict[str, GroupKey] = {}
        self._lock = threading.RLock()

    # -- Runtime protocol ---------------------------------------------------------------

    def list_owned(self) -> list[ActualState]:
        """One list per resource group; no endpoint probes (the cheap full pass)."""
        owned: list[ActualState] = []
        for key in self.resource_groups:
            for group in self._list(key).values():
                if not is_owned(group.tags):
                    continue
                health = group_health(group)
                if health.needs_instance_view:
                    # Rare (a Failed group): one GET tells whether its containers run.
                    fresh = self._get(key, str(group.name))
                    if fresh is None:
                        continue
                    group, health = fresh, group_health(fresh)
                owned.append(actual_from_group(group, self.endpoint_resolver, health))
        return sorted(owned, key=lambda state: state.name)

    def observe(self, name: str) -> ActualState | None:
        """A fresh GET of the one group, and the server's own word on what it serves."""
        key = self._locate(name)
        if key is None:
            return None
        group = self._get(key, name)
        if group is None or not is_owned(group.tags):
            return None
        health = group_health(group)
        actual = actual_from_group(group, self.endpoint_resolver, health)
        if not health.running or actual.endpoint is None:
            return replace(actual, ready=False)
        probe = self._probe(actual.endpoint)
        detail = probe.detail(health.detail or "container group runs but /readyz is not ready")
        detail = detail or health.detail
        return replace(
            actual, ready=probe.ready, served_version=probe.served_version, detail=detail
        )

    def deploy(self, desired: DesiredState) -> ActualState:
        """Create or update are one PUT: ACI replaces the group's spec and restarts it."""
        return self._put(desired)

    def hotswap(self, desired: DesiredState, current: ActualState | None = None) -> ActualState:
        return self._hotswap(desired, current)

    def delete(self, name: str) -> None:
        """Delete an owned group (a no-op when it is gone); refuse anything not ours."""
        key = self._locate(name)
        if key is None:
            return
        what = f"delete {key[1]}/{name}"
        group = self._get(key, name)
        if group is None:
            self._forget(name)
            return
        if not is_owned(group.tags):
            raise InvalidSpecError(f"{what}: not tagged aliasflow-managed=true; left alone")
        self.quota.acquire(what)
        try:
            poller = self._client(key[0]).container_groups.begin_delete(
                key[1], name, polling_interval=self.polling_interval
            )
            poller.wait(self.delete_timeout)
            if not poller.done():
                raise RuntimeUnavailableError(
                    f"{what}: still deleting after {self.delete_timeout:.0f}s; ARM carries on "
                    "and the next pass sees the result"
                )
            poller.result()
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise wrap_azure_error(exc, what) from exc
        self._forget(name)
        log.info("deleted container group %s/%s", key[1], name)

    # -- writes -------------------------------------------------------------------------

    def _put(self, desired: DesiredState) -> ActualState:
        where = placement_of(desired)
        key = self._checked_key(desired.name, where.subscription_id, where.resource_group)
        what = f"put {where.resource_group}/{desired.name}"
        existing = self._get(key, desired.name)
        if existing is not None and not is_owned(existing.tags):
            raise InvalidSpecError(
                f"{what}: a container group of that name exists and is not tagged "
                "aliasflow-managed=true; refusing to overwrite it"
            )
        group = build_container_group(
            desired,
            self._admin_token,
            tracking_uri=self._tracking_uri,
            registry_credentials=self._registry_credentials,
        )
        if existing is None:
            self.quota.acquire(f"create {desired.name}")  # updates are not quota-limited
        timeout = float(desired.health_timeout_seconds)
        client = self._client(key[0])
        try:
            poller = client.container_groups.begin_create_or_update(
                key[1], desired.name, group, polling_interval=self.polling_interval
            )
        except AzureError as exc:
            raise wrap_azure_error(exc, what) from exc
        with self._lock:
            self._where[desired.name] = key
        try:
            # `wait` re-raises the operation's failure (provisioningState Failed).
            poller.wait(timeout)
            if not poller.done():
                raise HealthTimeoutError(
                    f"{what}: ACI did not finish provisioning within {timeout:.0f}s "
                    "(healthTimeoutSeconds); ARM carries on and the next pass observes the "
                    "result"
                )
            result = poller.result()
        except HttpResponseError as exc:
            raise self._provisioning_failed(key, desired.name, what, exc) from exc
        except AzureError as exc:
            raise wrap_azure_error(exc, what) from exc
        self._remember(key, result)
        log.info(
            "container group %s/%s provisioned with %s",
            key[1],
            desired.name,
            desired.model_uri,
            extra={"deployment": desired.name, "model_version": desired.model_version},
        )
        return actual_from_group(result, self.endpoint_resolver)

    def _provisioning_failed(
        self, key: GroupKey, name: str, what: str, exc: HttpResponseError
    ) -> RuntimeUnavailableError:
        """ACI's `Failed` is not "stopped": say what the containers are doing."""
        try:
            group = self._get(key, name)
        except RuntimeUnavailableError:
            group = None
        state = "unknown"
        if group is not None:
            health = group_health(group)
            state = ("still running: " if health.running else "not running: ") + (
                health.detail or "containers Running"
            )
        return RuntimeUnavailableError(
            f"{what}: provisioning failed ({arm_error_text(exc)}); container group {state}"
        )

    def _hotswap(self, desired: DesiredState, actual: ActualState | None) -> ActualState:
        """The running server loads the version; then a tags-only PATCH records it."""
        where = placement_of(desired)
        key = self._checked_key(desired.name, where.subscription_id, where.resource_group)
        endpoint = actual.endpoint if actual is not None else None
        if endpoint is None:
            current = self.observe(desired.name)
            endpoint = current.endpoint if current is not None and current.running else None
        if endpoint is None:
            raise RuntimeUnavailableError(
                f"{desired.name}: no running container group to hot swap; it needs a recreate"
            )
        serving = actual.model_version if actual is not None else None
        request_hot_swap(endpoint, self._admin_token, desired, serving)
        what = f"tag {where.resource_group}/{desired.name}"
        try:
            # Tags replace the group's tags as a whole; keep any that are not ours.
            existing = self._get(key, desired.name)
            tags = dict((existing.tags if existing is not None else None) or {})
            tags.update(owned_tags(desired))
            updated = self._client(key[0]).container_groups.update(
                key[1],
                desired.name,
                Resource(tags=tags),
                retry_on_methods=_RETRY_METHODS,
            )
        except AzureError as exc:
            # The server already serves the new version; the next pass re-records it.
            raise wrap_azure_error(exc, what) from exc
        self._remember(key, updated)
        swapped = actual_from_group(updated, self.endpoint_resolver)
        return replace(swapped, endpoint=endpoint)

    # -- reads ----------------------------------------------------------------------------

    def _list(self, key: GroupKey) -> dict[str, ContainerGroup]:
        """`list_by_resource_group`, following `nextLink`, read without the model layer.

        The request runs through the client's own pipeline (credential, retry policy,
        TLS), exactly as `container_groups.list_by_resource_group` would send it; only the
        response is read as JSON (see `light_group`) to keep 1,000 groups cheap.
        """
        sub, rg = key
        client = self._client(sub)
        url: str | None = (
            f"/subscriptions/{quote(sub)}/resourceGroups/{quote(rg)}/providers/"
            f"Microsoft.ContainerInstance/containerGroups?api-version={API_VERSION}"
        )
        groups: dict[str, ContainerGroup] = {}
        try:
            while url:
                response = client._send_request(HttpRequest("GET", url))
                if response.status_code == 404:
                    raise ResourceNotFoundError(response=response)
                if response.status_code != 200:
                    raise HttpResponseError(response=response, error_format=ARMErrorFormat)
                body = response.json()
                for item in body.get("value") or []:
                    group = light_group(item)
                    groups[str(group.name)] = group
                url = body.get("nextLink")
        except ResourceNotFoundError:
            groups = {}  # the resource group does not exist (yet): nothing of ours in it
        except AzureError as exc:
            raise wrap_azure_error(exc, f"list container groups in {rg}") from exc
        with self._lock:
            self._listings[key] = _Listing(self._clock(), groups)
            for name, group in groups.items():
                if is_owned(group.tags):
                    self._where[name] = key
        return groups

    def _get(self, key: GroupKey, name: str) -> ContainerGroup | None:
        try:
            group = self._client(key[0]).container_groups.get(key[1], name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise wrap_azure_error(exc, f"get {key[1]}/{name}") from exc
        self._remember(key, group)
        return group

    def _locate(self, name: str) -> GroupKey | None:
        """Which resource group holds `name`: known from a listing, a PUT, or a fresh list."""
        with self._lock:
            key = self._where.get(name)
            if key is not None:
                return key
            now = self._clock()
            stale = [
                k
                for k in self.resource_groups
                if k not in self._listings or now - self._listings[k].at > self._listing_ttl
            ]
        for k in stale:
            self._list(k)
        with self._lock:
            return self._where.get(name)

    def _remember(self, key: GroupKey, group: ContainerGroup) -> None:
        if not is_owned(group.tags):
            return
        with self._lock:
            self._where[str(group.name)] = key
            listing = self._listings.get(key)
            if listing is not None:
                listing.groups[str(group.name)] = group

    def _forget(self, name: str) -> None:
        with self._lock:
            key = self._where.pop(name, None)
            listing = self._listings.get(key) if key else None
            if listing is not None:
                listing.groups.pop(name, None)

    def _checked_key(self, name: str, subscription_id: str, resource_group: str) -> GroupKey:
        key = (subscription_id, resource_group)
        if key not in self.resource_groups:
            raise InvalidSpecError(
                f"{name}: resource group {resource_group} (subscription {subscription_id}) is "
                "not one the controller manages; add it to ALIASFLOW_ACI_RESOURCE_GROUPS so "
                "its groups are listed, observed and pruned"
            )
        return key

    def _client(self, subscription_id: str) -> ContainerInstanceManagementClient:
        with self._lock:
            client = self._clients.get(subscription_id)
            if client is None:
                kwargs: dict[str, Any] = {
                    "retry_total": self._retry.total,
                    "retry_status": self._retry.total,
                    "retry_backoff_factor": self._retry.backoff_factor,
                    "retry_backoff_max": self._retry.backoff_max,
                    "polling_interval": self.polling_interval,
                }
                if self._connection_verify is not None:
                    kwargs["connection_verify"] = self._connection_verify
                client = ContainerInstanceManagementClient(
                    self._credential, subscription_id, base_url=self._base_url, **kwargs
                )
                self._clients[subscription_id] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
