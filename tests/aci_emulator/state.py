"""The emulator's model of Azure: container groups, operations, faults, call counters.

Kept apart from the HTTP layer so tests can steer it (inject faults, read counters,
look at the stored spec including secure values) without going through ARM.
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
    #: Answer 500 to this many ARM requests.
    errors_500: int = 0
    #: Seconds a PUT stays provisioning (counting mode; backed mode waits for the server).
    provisioning_delay: float = 0.0
    #: Group names whose next PUT ends in provisioningState Failed.
    fail_provisioning: set[str] = field(default_factory=set)
    #: With `fail_provisioning`: whether the containers keep running (ACI does that).
    failed_keeps_running: bool = True


@dataclass
class Group:
    subscription: str
    resource_group: str
    name: str
    body: Json  # as PUT, secure values included (never returned)
    provisioning: str = "Creating"
    container_state: str = "Waiting"
    ready_at: float = 0.0
    restarts: int = 0
    fail: bool = False


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
        self.tokens: set[str] = set()
        self.acr_tokens: set[str] = set()
        #: ACR repository → tag → digest.
        self.images: dict[str, dict[str, str]] = {}
        self.lro_retry_after = "0.1"

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
            if self.faults.errors_500 > 0:
                self.faults.errors_500 -= 1
                self.failed[(method, route)] += 1
                return 500, 0.0
        return None

    # -- groups ----------------------------------------------------------------------------

    def group(self, sub: str, rg: str, name: str) -> Group | None:
        with self.lock:
            return self.groups.get((sub, rg, name))

    def in_resource_group(self, sub: str, rg: str) -> list[Group]:
        with self.lock:
            return [
                g
                for key, g in sorted(self.groups.items())
                if key[0] == sub and key[1].lower() == rg.lower()
            ]

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
                    self.groups.pop(operation.group, None)
                    operation.status = "Succeeded"
                elif group is not None:
                    finish_put(group, operation, self.faults.failed_keeps_running)


def finish_put(group: Group, operation: Operation, keeps_running: bool) -> None:
    if group.fail:
        group.fail = False
        group.provisioning = "Failed"
        group.container_state = "Running" if keeps_running else "Terminated"
        operation.status = "Failed"
        operation.error = {
            "code": "ContainerGroupDeploymentFailed",
            "message": f"container group {group.name} failed to provision (emulated)",
        }
    else:
        group.provisioning = "Succeeded"
        group.container_state = "Running"
        operation.status = "Succeeded"


def public_view(group: Group, fqdn_suffix: str, instance_view: bool) -> Json:
    """The group as ARM returns it: no secure values, no registry passwords."""
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
                "restartCount": group.restarts,
                "currentState": {"state": group.container_state},
                "events": [],
            }
    for credential in props.get("imageRegistryCredentials", []) or []:
        credential.pop("password", None)
    ip = props.get("ipAddress")
    if ip:
        label = ip.get("dnsNameLabel")
        if label:
            ip["fqdn"] = f"{label}.{body.get('location', 'westeurope')}.{fqdn_suffix}"
        ip["ip"] = "127.0.0.1"
    props["provisioningState"] = group.provisioning
    props["osType"] = props.get("osType", "Linux")
    if instance_view:
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
