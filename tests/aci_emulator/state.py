"""The emulator's model of Azure: container groups, operations, faults, call counters.

Kept apart from the HTTP layer so tests can steer it (inject faults, read counters,
look at the stored spec including secure values) without going through ARM. Every rule
cites where it comes from; the spec is azure-rest-api-specs
`specification/containerinstance/resource-manager/Microsoft.ContainerInstance/stable/
2023-05-01/containerInstance.json` (the api-version azure-mgmt-containerinstance 10.1
speaks) and its examples, copied under tests/data/azure/.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

API_VERSION = "2023-05-01"
# Public ACI FQDNs: `<label>.<region>.azurecontainer.io` ("Deploy a container instance",
# learn.microsoft.com/azure/container-instances/container-instances-quickstart).
FQDN_SUFFIX = "azurecontainer.io"
# The default maximum of a Linux container group (no GPU) in a region: 4 CPU, 16 GB
# ("Resource availability by region", learn.microsoft.com/azure/container-instances/
# container-instances-region-availability). Regions differ; the knob says which applies.
REGION_MAX_CPU = 4.0
REGION_MAX_MEMORY_GB = 16.0
# ACI answers a PUT while the group runs an operation with 409 ContainerGroupTransitioning
# (troubleshooting article "Container group remains in a transitioning state (StatusCode
# 409, ContainerGroupTransitioning)", learn.microsoft.com/troubleshoot/azure/
# azure-container-instances/...); these provisioning states are the transitions.
TRANSITIONING = frozenset({"Pending", "Creating", "Updating", "Deleting", "Repairing"})


@dataclass
class Throttle:
    """Answer 429 (`Retry-After`) to `count` requests, or to all until `until`."""

    count: int = 0
    until: float = 0.0
    retry_after: float = 1.0
    methods: frozenset[str] = frozenset({"GET", "PUT", "PATCH", "DELETE", "POST"})


@dataclass
class Faults:
    throttle: Throttle = field(default_factory=Throttle)
    #: Answer 500 to this many ARM requests (before doing anything), of these methods.
    errors_500: int = 0
    errors_500_methods: frozenset[str] = Throttle().methods
    #: Statuses (500, 504) answered to the next PUTs *after* ARM committed them: the
    #: group is created/updated and restarting, the caller only sees an error.
    after_commit: list[int] = field(default_factory=list)
    #: Seconds a PUT stays provisioning (counting mode; backed mode waits for the server).
    provisioning_delay: float = 0.0
    #: Group names whose next PUT ends in provisioningState Failed.
    fail_provisioning: set[str] = field(default_factory=set)


@dataclass
class Group:
    subscription: str
    resource_group: str
    name: str
    body: Json  # as PUT, secure values included (never returned)
    provisioning: str = "Creating"
    container_state: str = "Waiting"
    #: instanceView.restartCount: restarts of the container inside this deployment
    #: (a crash under restartPolicy Always), see `EmulatorState.restart_container`.
    restart_count: int = 0
    #: Times ARM (re)started the containers: the create, and every PUT of an existing
    #: group ("When you update a container group, all running containers in the group
    #: are restarted in-place", learn.microsoft.com/azure/container-instances/
    #: container-instances-update), and POST .../restart.
    starts: int = 0
    fail: bool = False
    fqdn: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subscription, self.resource_group, self.name)

    @property
    def location(self) -> str:
        return str(self.body.get("location", ""))


@dataclass
class Operation:
    id: str
    status: str = "InProgress"
    error: Json | None = None
    done_at: float | None = None
    group: tuple[str, str, str] | None = None
    kind: str = "put"


class EmulatorState:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.groups: dict[tuple[str, str, str], Group] = {}
        self.operations: dict[str, Operation] = {}
        self.faults = Faults()
        #: (method, route) → number of requests, e.g. ("GET", "list"), ("PUT", "group").
        self.calls: Counter[tuple[str, str]] = Counter()
        #: Requests answered 429 / 500 by fault injection, by (method, route).
        self.throttled: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[tuple[str, str]] = Counter()
        #: Every response body the emulator sent (for "no secret ever leaves" checks).
        self.sent: list[bytes] = []
        #: Bodies that broke the spec's schema: `AciEmulator.stop()` fails the test.
        self.violations: list[str] = []
        self.tokens: set[str] = set()
        #: The `scope` of every AAD token request, in order (which cloud was asked for).
        self.token_scopes: list[str] = []
        self.acr_tokens: set[str] = set()
        #: ACR repository → tag → digest.
        self.images: dict[str, dict[str, str]] = {}
        #: (region, label) → who holds it; other customers' labels included.
        self.dns_labels: dict[tuple[str, str], str] = {}
        self.lro_retry_after = "0.1"
        #: DELETE answers 200 with the group (done at once) instead of 202 + an operation;
        #: the spec allows both (ContainerGroups_Delete).
        self.delete_answers_200 = False
        self.region_max_cpu = REGION_MAX_CPU
        self.region_max_memory_gb = REGION_MAX_MEMORY_GB

    # -- knobs ---------------------------------------------------------------------------

    def throttle(
        self, count: int = 0, seconds: float = 0.0, retry_after: float = 1.0, methods: str = ""
    ) -> None:
        chosen = frozenset(methods.split()) if methods else Throttle().methods
        with self.lock:
            self.faults.throttle = Throttle(
                count, self.clock() + seconds if seconds else 0.0, retry_after, chosen
            )

    def push_image(self, repository: str, tag: str, content: str | None = None) -> str:
        digest = "sha256:" + hashlib.sha256((content or uuid.uuid4().hex).encode()).hexdigest()
        with self.lock:
            self.images.setdefault(repository, {})[tag] = digest
        return digest

    def take_dns_label(self, location: str, label: str, owner: str = "another-customer") -> None:
        """Someone else (any subscription, any tenant) holds `label` in `location`."""
        with self.lock:
            self.dns_labels[(region_of(location), label.lower())] = owner

    def reset_counters(self) -> None:
        with self.lock:
            self.calls.clear()
            self.throttled.clear()
            self.failed.clear()

    # -- counters ------------------------------------------------------------------------

    def count(self, method: str, route: str) -> int:
        return self.calls[(method, route)]

    @property
    def writes(self) -> int:
        """PUT, PATCH, DELETE and restart requests to container groups (any answer)."""
        return sum(
            n
            for (method, route), n in self.calls.items()
            if route in ("group", "restart") and method in ("PUT", "PATCH", "DELETE", "POST")
        )

    def fault_for(self, method: str, route: str) -> tuple[int, float] | None:
        """(status, retry_after) when this request should fail by injection."""
        with self.lock:
            throttle = self.faults.throttle
            if method in throttle.methods and (throttle.count > 0 or self.clock() < throttle.until):
                if throttle.count > 0:
                    throttle.count -= 1
                self.throttled[(method, route)] += 1
                return 429, throttle.retry_after
            if self.faults.errors_500 > 0 and method in self.faults.errors_500_methods:
                self.faults.errors_500 -= 1
                self.failed[(method, route)] += 1
                return 500, 0.0
        return None

    # -- groups ----------------------------------------------------------------------------

    def group(self, sub: str, rg: str, name: str) -> Group | None:
        with self.lock:
            return self.groups.get((sub, rg, name))

    def in_resource_group(self, sub: str, rg: str) -> list[Group]:
        rg = rg.lower()
        with self.lock:
            found = [(k, g) for k, g in self.groups.items() if k[0] == sub and k[1].lower() == rg]
        return [g for _, g in sorted(found, key=lambda item: item[0])]

    def new_operation(self, kind: str, key: tuple[str, str, str]) -> Operation:
        operation = Operation(uuid.uuid4().hex, group=key, kind=kind)
        with self.lock:
            self.operations[operation.id] = operation
        return operation

    def settle(self) -> None:
        """Counting mode: operations whose delay has passed finish now."""
        now = self.clock()
        with self.lock:
            for operation in self.operations.values():
                if operation.status != "InProgress" or operation.done_at is None:
                    continue
                if now < operation.done_at or operation.group is None:
                    continue
                group = self.groups.get(operation.group)
                if operation.kind == "delete":
                    self.remove_group(operation.group)
                    operation.status = "Succeeded"
                elif group is not None:
                    finish_put(group, operation)

    def remove_group(self, key: tuple[str, str, str]) -> None:
        with self.lock:
            self.groups.pop(key, None)
            owner = "/".join(key)
            for held, holder in list(self.dns_labels.items()):
                if holder == owner:
                    del self.dns_labels[held]

    def restart_container(self, sub: str, rg: str, name: str) -> Group:
        """The container crashed and ACI restarted it from its environment.

        With restartPolicy Always "the containers in the container group are always
        restarted" (learn.microsoft.com/azure/container-instances/
        container-instances-restart-policy); the restart counts in the container's
        `instanceView.restartCount` (spec: ContainerProperties.instanceView). The group's
        spec, and so `MODEL_URI`, is the one last PUT: a hot-swapped version is gone.
        """
        with self.lock:
            group = self.groups[(sub, rg, name)]
            group.restart_count += 1
        return group


def region_of(location: str) -> str:
    """ARM accepts "West Europe" and "westeurope" for the same region."""
    return location.replace(" ", "").lower()


def finish_put(group: Group, operation: Operation) -> None:
    if group.fail:
        # As ContainerGroupsGet_Failed.json (2021-10-01 example): provisioningState
        # Failed, the container Waiting, the group's instanceView state Pending.
        group.fail = False
        group.provisioning = "Failed"
        group.container_state = "Waiting"
        operation.status = "Failed"
        operation.error = {
            "code": "ContainerGroupDeploymentFailed",
            "message": f"container group {group.name} failed to provision (emulated)",
        }
    else:
        group.provisioning = "Succeeded"
        group.container_state = "Running"
        operation.status = "Succeeded"


def fqdn_for(group: Group, tenant: str) -> str | None:
    """The FQDN ACI gives the group's label, hashed when a reuse scope is asked for.

    `autoGeneratedDomainNameLabelScope` (spec 2023-05-01, IpAddress): `Unsecure` (the
    default) keeps `<label>.<region>.azurecontainer.io`; the other scopes add a hash
    that is deterministic over the tenant (TenantReuse), + subscription
    (SubscriptionReuse), + resource group (ResourceGroupReuse) and the resource name, or
    random (Noreuse), as Azure DNS's deterministic names do ("AutoGeneratedDomainNameLabel
    Scope", learn.microsoft.com/javascript/api/@azure/arm-servicefabricmanagedclusters/
    autogenerateddomainnamelabelscope: `{name}.{hash}.{region}.<domain>`).
    """
    ip = group.body.get("properties", {}).get("ipAddress") or {}
    label = ip.get("dnsNameLabel")
    if not label:
        return None
    region = region_of(group.location)
    scope = ip.get("autoGeneratedDomainNameLabelScope") or "Unsecure"
    if scope == "Unsecure":
        return f"{label}.{region}.{FQDN_SUFFIX}"
    parts = {
        "TenantReuse": (tenant,),
        "SubscriptionReuse": (tenant, group.subscription),
        "ResourceGroupReuse": (tenant, group.subscription, group.resource_group.lower()),
        "Noreuse": (uuid.uuid4().hex,),
    }[scope]
    digest = hashlib.sha256("|".join((*parts, group.name, label)).encode()).hexdigest()
    return f"{label}.{digest[:16]}.{region}.{FQDN_SUFFIX}"


def public_view(group: Group, instance_view: bool) -> Json:
    """The group as ARM returns it: no `x-ms-secret` values (spec), read-only fields set."""
    body = copy.deepcopy(group.body)
    props = body.setdefault("properties", {})
    for container in props.get("containers", []):
        cprops = container.setdefault("properties", {})
        env = []
        for var in cprops.get("environmentVariables", []) or []:
            var = {k: v for k, v in var.items() if k != "secureValue"}
            env.append(var)
        cprops["environmentVariables"] = env
        if instance_view:
            cprops["instanceView"] = {
                "restartCount": group.restart_count,
                "currentState": {"state": group.container_state, "detailStatus": ""},
                "events": [],
            }
    for credential in props.get("imageRegistryCredentials", []) or []:
        credential.pop("password", None)
    ip = props.get("ipAddress")
    if ip:
        if group.fqdn:
            ip["fqdn"] = group.fqdn
        ip["ip"] = "127.0.0.1"
    props["provisioningState"] = group.provisioning
    if instance_view:
        # The group's state: Running once its containers run, Pending before and in the
        # Failed example (ContainerGroupsGet_Failed.json).
        props["instanceView"] = {
            "state": "Running" if group.container_state == "Running" else "Pending",
            "events": [],
        }
    body["id"] = (
        f"/subscriptions/{group.subscription}/resourceGroups/{group.resource_group}"
        f"/providers/Microsoft.ContainerInstance/containerGroups/{group.name}"
    )
    body["name"] = group.name
    body["type"] = "Microsoft.ContainerInstance/containerGroups"
    return body
