"""From a `DesiredState` to an ACI container group, and from a container group back.

Pure functions over the SDK's model classes: no client, no I/O, so the shape of what we
PUT and how we read ownership and health back are tested without a network.

ACI facts that shape this module:
- `secureValue` environment variables are never returned by GET, so drift cannot be
  seen by comparing specs; the `aliasflow-spec-hash` tag (a digest of the whole spec,
  secret values included) is the only drift signal.
- Tags are the ownership record: only groups tagged `aliasflow-managed=true` are ever
  observed, updated or deleted.
- `provisioningState: Failed` means not running: the official example
  (ContainerGroupsGet_Failed.json, Microsoft.ContainerInstance 2021-10-01 examples) is a
  Failed group whose container is `Waiting` and whose group state is `Pending`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.mgmt.containerinstance.models import (
    Container,
    ContainerGroup,
    ContainerGroupPropertiesInstanceView,
    ContainerHttpGet,
    ContainerPort,
    ContainerProbe,
    ContainerPropertiesInstanceView,
    ContainerState,
    EnvironmentVariable,
    ImageRegistryCredential,
    IpAddress,
    Port,
    ResourceRequests,
    ResourceRequirements,
)

from controller.core.errors import InvalidSpecError
from controller.core.types import ActualState, DesiredState
from controller.runtimes.common import workload_env

TAG_MANAGED = "aliasflow-managed"
TAG_DEPLOYMENT = "aliasflow-deployment"
TAG_SPEC_HASH = "aliasflow-spec-hash"
TAG_MODEL_VERSION = "aliasflow-model-version"
OWNED_TAGS = (TAG_MANAGED, TAG_DEPLOYMENT, TAG_SPEC_HASH, TAG_MODEL_VERSION)
CONTAINER_NAME = "model-server"
# provisioningState values during which the group exists and is on its way up.
_IN_PROGRESS = frozenset({"Pending", "Creating", "Updating", "Accepted", "Repairing"})
# Container states (instance view) that mean a process is, or is about to be, running.
_ALIVE_CONTAINER = frozenset({"Running", "Waiting"})

EndpointResolver = Callable[[str, int], str]


def default_endpoint(fqdn: str, port: int) -> str:
    """ACI's public FQDN (`<label>.<region>.azurecontainer.io`) and the manifest's port."""
    return f"http://{fqdn}:{port}"


@dataclass(frozen=True)
class RegistryCredential:
    """Pull credentials ACI needs for a private registry (e.g. ACR admin or a token)."""

    server: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Placement:
    """Where a deployment's container group lives in Azure."""

    subscription_id: str
    resource_group: str
    location: str
    dns_name_label: str


def placement_of(desired: DesiredState) -> Placement:
    target = dict(desired.target_settings)
    missing = [k for k in ("subscriptionId", "resourceGroup", "location") if not target.get(k)]
    if missing:
        raise InvalidSpecError(f"{desired.name}: target.aci needs {', '.join(missing)}")
    return Placement(
        subscription_id=target["subscriptionId"],
        resource_group=target["resourceGroup"],
        location=target["location"],
        dns_name_label=target.get("dnsNameLabel") or desired.name,
    )


def owned_tags(desired: DesiredState, version: str | None = None) -> dict[str, str]:
    return {
        TAG_MANAGED: "true",
        TAG_DEPLOYMENT: desired.name,
        TAG_SPEC_HASH: desired.spec_hash,
        TAG_MODEL_VERSION: version or desired.model_version,
    }


def is_owned(tags: Mapping[str, str] | None) -> bool:
    return bool(tags) and (tags or {}).get(TAG_MANAGED) == "true"


def build_container_group(
    desired: DesiredState,
    admin_token: str,
    *,
    tracking_uri: str | None = None,
    registry_credentials: tuple[RegistryCredential, ...] = (),
) -> ContainerGroup:
    """The full container group a PUT sends for `desired`.

    Secrets (the manifest's secretEnv and the admin token) go in `secure_value`, which ACI
    stores but never returns. `MODEL_URI` pins the version the container boots with, so a
    restarted container comes back on a known version and the controller swaps again.
    """
    where = placement_of(desired)
    workload = workload_env(desired, tracking_uri=tracking_uri, admin_token=admin_token)
    env = [EnvironmentVariable(name=k, value=v) for k, v in workload.plain.items()]
    env += [EnvironmentVariable(name=k, secure_value=v) for k, v in workload.secret.items()]
    host = desired.image.split("/", 1)[0] if "/" in desired.image else ""
    credentials = [
        ImageRegistryCredential(server=c.server, username=c.username, password=c.password)
        for c in registry_credentials
        if c.server == host
    ]
    container = Container(
        name=CONTAINER_NAME,
        image=desired.image,
        resources=ResourceRequirements(
            requests=ResourceRequests(memory_in_gb=desired.memory_gb, cpu=desired.cpu)
        ),
        ports=[ContainerPort(port=desired.port, protocol="TCP")],
        environment_variables=env,
        readiness_probe=_probe("/readyz", desired.port, initial_delay=5, failures=3),
        # Generous: a model load can take a while, and a liveness failure restarts.
        liveness_probe=_probe("/livez", desired.port, initial_delay=60, failures=5),
    )
    return ContainerGroup(
        location=where.location,
        tags=owned_tags(desired),
        containers=[container],
        os_type="Linux",
        restart_policy="Always",
        ip_address=IpAddress(
            type="Public",
            ports=[Port(port=desired.port, protocol="TCP")],
            dns_name_label=where.dns_name_label,
        ),
        image_registry_credentials=credentials or None,
    )


def _probe(path: str, port: int, *, initial_delay: int, failures: int) -> ContainerProbe:
    return ContainerProbe(
        http_get=ContainerHttpGet(path=path, port=port, scheme="http"),
        initial_delay_seconds=initial_delay,
        period_seconds=10,
        failure_threshold=failures,
        timeout_seconds=5,
    )


@dataclass(frozen=True)
class GroupHealth:
    running: bool
    detail: str
    # True when only a GET (with container instance views) can tell whether it runs.
    needs_instance_view: bool = False


def group_health(group: ContainerGroup) -> GroupHealth:
    """Running or not, from the group's provisioning state and instance views.

    `Failed` is not running whatever the containers say: in ACI's own example of a
    Failed group (ContainerGroupsGet_Failed.json) the container is `Waiting`, which
    elsewhere means "about to run". Nothing documents a Failed group that still serves.
    """
    provisioning = group.provisioning_state or "Unknown"
    states = [
        c.instance_view.current_state.state
        for c in group.containers or []
        if c.instance_view is not None
        and c.instance_view.current_state is not None
        and c.instance_view.current_state.state
    ]
    group_state = group.instance_view.state if group.instance_view is not None else None
    if provisioning == "Deleting":
        return GroupHealth(False, "container group is being deleted")
    if provisioning == "Failed":
        return GroupHealth(False, _describe(provisioning, states or [group_state or "unknown"]))
    if states:
        alive = any(state in _ALIVE_CONTAINER for state in states)
        detail = "" if alive and provisioning == "Succeeded" else _describe(provisioning, states)
        return GroupHealth(alive, detail)
    if group_state is not None and group_state != "Pending":
        alive = group_state == "Running"
        return GroupHealth(alive, "" if alive else f"container group is {group_state}")
    if provisioning == "Succeeded":
        return GroupHealth(True, "")
    if provisioning in _IN_PROGRESS:
        return GroupHealth(True, f"provisioning: {provisioning}")
    return GroupHealth(False, f"provisioningState {provisioning}")


def _describe(provisioning: str, states: list[str]) -> str:
    return f"provisioningState {provisioning}; containers: {', '.join(states)}"


def group_endpoint(group: ContainerGroup, resolver: EndpointResolver) -> str | None:
    ip = group.ip_address
    if ip is None:
        return None
    host = ip.fqdn or ip.ip
    ports = ip.ports or []
    if not host or not ports:
        return None
    return resolver(host, int(ports[0].port))


def actual_from_group(
    group: ContainerGroup, resolver: EndpointResolver, health: GroupHealth | None = None
) -> ActualState:
    """What the tags and provisioning state say, without asking the server.

    `served_version` stays None (not observed): the cheap full pass must not probe a
    thousand endpoints; `observe()` fills it from the server's /metadata.
    """
    tags = group.tags or {}
    health = health or group_health(group)
    return ActualState(
        name=tags.get(TAG_DEPLOYMENT) or str(group.name),
        spec_hash=tags.get(TAG_SPEC_HASH, ""),
        model_version=tags.get(TAG_MODEL_VERSION),
        running=health.running,
        endpoint=group_endpoint(group, resolver),
        served_version=None,
        ready=health.running and not health.detail,
        detail=health.detail,
    )


def light_group(item: Mapping[str, Any]) -> ContainerGroup:
    """A list item as a `ContainerGroup` holding only what ownership and health read.

    The SDK's model deserializer costs ~1 ms per group (a thousand groups: a second, half
    the budget of the full pass); the few fields we read are picked from the JSON here.
    """
    props = item.get("properties") or {}
    containers = []
    for entry in props.get("containers") or []:
        cprops = entry.get("properties") or {}
        container = Container(
            name=entry.get("name", ""), image=cprops.get("image", ""), resources=None
        )  # type: ignore[arg-type]
        state = ((cprops.get("instanceView") or {}).get("currentState") or {}).get("state")
        if state:
            view = ContainerPropertiesInstanceView()
            view.__dict__["current_state"] = ContainerState()
            view.current_state.__dict__["state"] = state  # read-only in the model
            container.__dict__["instance_view"] = view
        containers.append(container)
    ip_json = props.get("ipAddress") or {}
    ip = None
    if ip_json:
        ip = IpAddress(
            type=ip_json.get("type", "Public"),
            ports=[Port(port=int(p["port"])) for p in ip_json.get("ports") or []],
            dns_name_label=ip_json.get("dnsNameLabel"),
        )
        ip.__dict__["fqdn"] = ip_json.get("fqdn")
        ip.ip = ip_json.get("ip")
    group = ContainerGroup(
        location=item.get("location"),
        tags=dict(item.get("tags") or {}),
        containers=containers,
        os_type=props.get("osType", "Linux"),
        ip_address=ip,
    )
    # Read-only fields of the model: set as the deserializer would.
    group.__dict__["name"] = item.get("name")
    group.__dict__["provisioning_state"] = props.get("provisioningState")
    view_json = props.get("instanceView")
    if view_json:
        view = ContainerGroupPropertiesInstanceView()
        view.__dict__["state"] = view_json.get("state")
        group.__dict__["instance_view"] = view
    return group
