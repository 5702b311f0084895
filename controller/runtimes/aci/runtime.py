"""The `aci` runtime: model servers as Azure Container Instances container groups.

It executes the planner's actions through `azure-mgmt-containerinstance` and nothing
more; deciding between hot swap, update and replace is the planner's job, readiness is
the reconciler's health gate. ACI facts that shape it (see docs/operations.md):

- A PUT of an identical spec still restarts the containers. The planner diffs by the
  `aliasflow-spec-hash` tag before anything is written, so an unchanged deployment costs
  zero writes; a hot swap changes only tags, with PATCH, which does not restart; a PUT
  is never sent twice (see arm.py), nor while the group is transitioning (ACI answers
  409 ContainerGroupTransitioning).
- One `list_by_resource_group` per resource group per pass: the cheap full pass over a
  thousand deployments must not GET each group (ARM's read budget, and a listing has no
  instance views, so no `restartCount`).
- A container that crashes is restarted by ACI from the group's environment (restart
  policy Always), i.e. on the version the group was created with, not the one a hot
  swap loaded. So every pass asks every running server what it serves (`GET /readyz`,
  bounded concurrency, short timeouts; see runtimes/probe.py): the planner sees
  served ≠ recorded and self-heal swaps again within one poll interval.
- Creates and deletes are quota-limited (100 per 5 minutes): `QuotaLimiter` counts ours.

Only container groups tagged `aliasflow-managed=true` are observed, updated or deleted,
and only in the resource groups the controller is configured with.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerinstance.models import ContainerGroup, Resource

from controller.core.errors import (
    HealthTimeoutError,
    InvalidSpecError,
    RuntimeUnavailableError,
)
from controller.core.types import ActualState, DesiredState, Traffic
from controller.runtimes.aci.arm import (
    ARM_URL,
    RETRY_PATCH,
    Poller,
    RetryOptions,
    aci_clients,
    list_groups,
    put_once,
)
from controller.runtimes.aci.errors import arm_error_text, wrap_azure_error
from controller.runtimes.aci.quota import QuotaLimiter
from controller.runtimes.aci.spec import (
    TERMINAL,
    TLS_IMAGE,
    TRANSITIONING,
    EndpointResolver,
    RegistryCredential,
    actual_from_group,
    build_container_group,
    default_endpoint,
    group_health,
    is_owned,
    owned_tags,
    placement_of,
)
from controller.runtimes.azurearm import Whereabouts
from controller.runtimes.common import server_key
from controller.runtimes.hotswap import request_api_keys, request_hot_swap, request_traffic
from controller.runtimes.probe import (
    PROBE_CONCURRENCY,
    Probe,
    ServerProbe,
    ServerProber,
    probe_all,
)

log = logging.getLogger(__name__)

GroupKey = tuple[str, str]  # (subscription id, resource group)
_NOT_READY = "container group runs but /readyz is not ready"


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
        audience: str = ARM_URL,
        connection_verify: str | bool | None = None,
        registry_credentials: tuple[RegistryCredential, ...] = (),
        endpoint_resolver: EndpointResolver = default_endpoint,
        quota: QuotaLimiter | None = None,
        retry: RetryOptions = RetryOptions(),
        polling_interval: float = 2.0,
        delete_timeout: float = 300.0,
        listing_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        probe: Probe | None = None,
        probe_concurrency: int = PROBE_CONCURRENCY,
        tls_image: str = TLS_IMAGE,
    ) -> None:
        self.resource_groups: tuple[GroupKey, ...] = tuple(dict.fromkeys(resource_groups))
        if not self.resource_groups:
            raise ValueError("the aci runtime needs at least one resource group")
        # The controller's secret: each container group gets its own key (`server_key`).
        self._admin_secret = admin_token
        self._tracking_uri = tracking_uri
        self._registry_credentials = registry_credentials
        #: Maps a group's FQDN and port to the URL the controller calls (tests map it to
        #: the loopback server that backs an emulated group).
        self.endpoint_resolver = endpoint_resolver
        self.quota = quota or QuotaLimiter()
        self._tls_image = tls_image
        self._retry = retry
        self.polling_interval = polling_interval
        self.delete_timeout = delete_timeout
        # The default asks over one shared HTTP client, closed with the runtime.
        self._prober: ServerProber | None = None
        if probe is None:
            probe = self._prober = ServerProber(probe_concurrency)
        self._probe = probe
        self._probe_concurrency = probe_concurrency
        self._client = aci_clients(
            credential,
            base_url=base_url or ARM_URL,
            audience=audience,
            retry=retry,
            polling_interval=polling_interval,
            connection_verify=connection_verify,
        )
        self._whereabouts = Whereabouts(self.resource_groups, listing_ttl, clock)

    # -- Runtime protocol ---------------------------------------------------------------

    def list_owned(self) -> list[ActualState]:
        """One list per resource group, then every running server asked what it serves."""
        owned = [
            actual_from_group(group, self.endpoint_resolver)
            for key in self.resource_groups
            for group in self._list(key).values()
            if is_owned(group.tags)
        ]
        probes = probe_all(
            self._probe,
            [state.endpoint for state in owned if state.running and state.endpoint],
            self._probe_concurrency,
        )
        served = [
            _served(state, probes[state.endpoint]) if state.endpoint in probes else state
            for state in owned
        ]
        return sorted(served, key=lambda state: state.name)

    def observe(self, name: str) -> ActualState | None:
        """A fresh GET of the one group, and the server's own word on what it serves."""
        key = self._locate(name)
        if key is None:
            return None
        group = self._get(key, name)
        if group is None or not is_owned(group.tags):
            return None
        actual = actual_from_group(group, self.endpoint_resolver)
        if not actual.running or actual.endpoint is None:
            return replace(actual, ready=False)
        return _served(actual, self._probe(actual.endpoint))

    def deploy(self, desired: DesiredState) -> ActualState:
        """Create or update are one PUT: ACI replaces the group's spec and restarts it."""
        return self._put(desired)

    def set_api_keys(
        self, desired: DesiredState, current: ActualState | None = None
    ) -> ActualState:
        """The keys live in the server (no ARM write): only its endpoint is needed."""
        return self._tell_server(
            desired,
            current,
            "give API keys to",
            lambda endpoint, key: request_api_keys(endpoint, key, desired),
        )

    def hotswap(self, desired: DesiredState, current: ActualState | None = None) -> ActualState:
        return self._hotswap(desired, current)

    def set_traffic(
        self, desired: DesiredState, traffic: Traffic, current: ActualState | None = None
    ) -> ActualState:
        """The split lives in the server (no ARM write): only its endpoint is needed."""
        return self._tell_server(
            desired,
            current,
            "split traffic on",
            lambda endpoint, key: request_traffic(endpoint, key, desired, traffic),
        )

    def _tell_server(
        self,
        desired: DesiredState,
        current: ActualState | None,
        purpose: str,
        send: Callable[[str, str], None],
    ) -> ActualState:
        """One signed admin request to the group's server (`send(endpoint, key)`), then
        what the group looks like after it."""
        seen = current if current is not None and current.endpoint else self.observe(desired.name)
        if seen is None or seen.endpoint is None or not seen.running:
            raise RuntimeUnavailableError(
                f"{desired.name}: no running container group to {purpose}"
            )
        send(seen.endpoint, self._key(desired.name))
        after = self.observe(desired.name)
        if after is None:
            raise RuntimeUnavailableError(f"{desired.name}: the container group vanished")
        return after

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
        if existing is not None and existing.provisioning_state in TRANSITIONING:
            raise RuntimeUnavailableError(
                f"{what}: the container group is still {existing.provisioning_state} (an "
                "earlier operation has not finished) and ACI refuses a PUT meanwhile (409 "
                "ContainerGroupTransitioning); none was sent, the next pass tries again"
            )
        group = build_container_group(
            desired,
            self._key(desired.name),
            tracking_uri=self._tracking_uri,
            registry_credentials=self._registry_credentials,
            put_id=uuid.uuid4().hex,
            tls_image=self._tls_image,
        )
        if existing is None:
            self.quota.acquire(f"create {desired.name}")  # updates are not quota-limited
        try:
            poller = put_once(
                self._client(key[0]),
                key[1],
                group,
                desired.name,
                polling_interval=self.polling_interval,
                retry=self._retry,
                get=lambda: self._get(key, desired.name),
            )
        except AzureError as exc:
            raise wrap_azure_error(exc, what) from exc
        self._whereabouts.remember(key, desired.name)
        result = self._provisioned(key, desired, poller, what)
        self._remember(key, result)
        log.info(
            "container group %s/%s provisioned with %s",
            key[1],
            desired.name,
            desired.model_uri,
            extra={"deployment": desired.name, "model_version": desired.model_version},
        )
        return actual_from_group(result, self.endpoint_resolver)

    def _provisioned(
        self, key: GroupKey, desired: DesiredState, poller: Poller | None, what: str
    ) -> ContainerGroup:
        """The group once ARM's operation ended, within the manifest's health timeout.

        Without a poller (a PUT that landed although its answer was lost) the group's
        own provisioning state is followed by GETs.
        """
        timeout = float(desired.health_timeout_seconds)
        deadline = time.monotonic() + timeout
        try:
            if poller is not None:
                # `wait` re-raises the operation's failure (provisioningState Failed).
                poller.wait(timeout)
                if poller.done():
                    return poller.result()
            else:
                while time.monotonic() < deadline:
                    current = self._get(key, desired.name)
                    if current is not None and current.provisioning_state in TERMINAL:
                        if current.provisioning_state != "Succeeded":
                            raise self._provisioning_failed(key, desired.name, what, None)
                        return current
                    time.sleep(self.polling_interval)
        except HttpResponseError as exc:
            raise self._provisioning_failed(key, desired.name, what, exc) from exc
        except AzureError as exc:
            raise wrap_azure_error(exc, what) from exc
        raise HealthTimeoutError(
            f"{what}: ACI did not finish provisioning within {timeout:.0f}s "
            "(healthTimeoutSeconds); ARM carries on and the next pass observes the result"
        )

    def _provisioning_failed(
        self, key: GroupKey, name: str, what: str, exc: HttpResponseError | None
    ) -> RuntimeUnavailableError:
        """Say what the containers are doing: a Failed group may still run (states doc)."""
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
        cause = arm_error_text(exc) if exc is not None else "provisioningState Failed"
        return RuntimeUnavailableError(
            f"{what}: provisioning failed ({cause}); container group {state}"
        )

    def _key(self, name: str) -> str:
        return server_key(self._admin_secret, name)

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
        request_hot_swap(endpoint, self._key(desired.name), desired, serving)
        what = f"tag {where.resource_group}/{desired.name}"
        try:
            # Tags replace the group's tags as a whole; keep any that are not ours.
            existing = self._get(key, desired.name)
            had = dict((existing.tags if existing is not None else None) or {})
            tags = {**had, **owned_tags(desired)}
            if existing is not None and tags == had:
                # A self-heal swap after a restart: the tags already say this version.
                updated = existing
            else:
                updated = self._client(key[0]).container_groups.update(
                    key[1], desired.name, Resource(tags=tags), retry_on_methods=RETRY_PATCH
                )
        except AzureError as exc:
            # The server already serves the new version; the next pass re-records it.
            raise wrap_azure_error(exc, what) from exc
        self._remember(key, updated)
        swapped = actual_from_group(updated, self.endpoint_resolver)
        return replace(swapped, endpoint=endpoint)

    # -- reads ----------------------------------------------------------------------------

    def _list(self, key: GroupKey) -> dict[str, ContainerGroup]:
        try:
            groups = list_groups(self._client(key[0]), *key)
        except AzureError as exc:
            raise wrap_azure_error(exc, f"list container groups in {key[1]}") from exc
        self._whereabouts.listed(key, [n for n, g in groups.items() if is_owned(g.tags)])
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
        return self._whereabouts.locate(name, self._list)

    def _remember(self, key: GroupKey, group: ContainerGroup) -> None:
        if is_owned(group.tags):
            self._whereabouts.remember(key, str(group.name))

    def _forget(self, name: str) -> None:
        self._whereabouts.forget(name)

    def _checked_key(self, name: str, subscription_id: str, resource_group: str) -> GroupKey:
        key = (subscription_id, resource_group)
        if key not in self.resource_groups:
            raise InvalidSpecError(
                f"{name}: resource group {resource_group} (subscription {subscription_id}) is "
                "not one the controller manages; add it to ALIASFLOW_ACI_RESOURCE_GROUPS so "
                "its groups are listed, observed and pruned"
            )
        return key

    def close(self) -> None:
        self._client.close()
        if self._prober is not None:
            self._prober.close()


def _served(actual: ActualState, probe: ServerProbe) -> ActualState:
    """What the tags say, completed by what the server says it serves."""
    detail = probe.detail(actual.detail or _NOT_READY) or actual.detail
    return replace(
        actual,
        ready=probe.ready,
        served_version=probe.served_version,
        detail=detail,
        **probe.traffic(),
    )
