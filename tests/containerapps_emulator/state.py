"""The emulator's model of Container Apps: apps, immutable revisions, replicas, operations.

Kept apart from HTTP so tests steer it directly (faults, scale, replica restarts) and
read what ARM never shows (secret values, call counters). Every rule cites its source:
"spec" is specification/app/resource-manager/Microsoft.App/ContainerApps/stable/
2026-07-01/openapi.json; "docs: <page>" is a learn.microsoft.com/azure/container-apps page.
"""

from __future__ import annotations

import copy
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]
APP_TYPE = "Microsoft.App/containerApps"
# docs: scale-app, "Scale limit" table: min 0..1000, max 1..1000, max defaults to 10.
MAX_REPLICAS_LIMIT = 1000
DEFAULT_MAX_REPLICAS = 10


class ArmError(Exception):
    """An ARM error answer: status, code and message, as `DefaultErrorResponse`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _suffix() -> str:
    # docs: revisions, "Revision name suffix": a semi-random alphanumeric string; the
    # spec's examples use seven lowercase letters (testcontainerApp0-pjxhsye).
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(7))


@dataclass
class Throttle:
    """Answer 429 with `Retry-After` to `count` requests, or to all until `until`."""

    count: int = 0
    until: float = 0.0
    retry_after: float = 1.0


@dataclass
class Faults:
    throttle: Throttle = field(default_factory=Throttle)
    #: Answer 500 to this many ARM requests...
    errors_500: int = 0
    #: ... of these (method, route) pairs only, e.g. {("PUT", "app")}; empty: any.
    errors_500_routes: set[tuple[str, str]] = field(default_factory=set)
    #: Seconds a revision stays Provisioning (counting mode; backed mode waits for servers).
    provisioning_delay: float = 0.0
    #: App names whose next new revision fails to provision.
    fail_provisioning: set[str] = field(default_factory=set)


@dataclass
class Replica:
    name: str
    created: str
    restarts: int = 0
    #: Backed mode: the loopback URL of the real server, None while it (re)starts.
    endpoint: str | None = None
    ready: bool = False


@dataclass
class Revision:
    name: str
    template: Json
    created: str
    active: bool = True
    provisioning: str = "Provisioning"
    error: str | None = None
    replicas: list[Replica] = field(default_factory=list)
    last_active: str = ""

    @property
    def scale(self) -> tuple[int, int]:
        scale = self.template.get("scale") or {}
        return int(scale.get("minReplicas", 0)), int(scale.get("maxReplicas", DEFAULT_MAX_REPLICAS))


@dataclass
class Operation:
    id: str
    key: tuple[str, str, str]
    kind: str  # "put", "patch", "delete"
    status: str = "InProgress"
    error: Json | None = None
    started: str = field(default_factory=now_iso)
    #: Counting mode: when the operation completes by itself.
    done_at: float | None = None
    #: The revision this operation provisions, if it made one.
    revision: str | None = None


@dataclass
class Environment:
    subscription: str
    resource_group: str
    name: str
    location: str
    default_domain: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.App/managedEnvironments/{self.name}"
        )


@dataclass
class App:
    subscription: str
    resource_group: str
    name: str
    body: Json  # as last PUT/PATCHed, secret values included (never returned by GET)
    environment: Environment
    revisions: dict[str, Revision] = field(default_factory=dict)
    latest: str = ""
    latest_ready: str | None = None
    provisioning: str = "InProgress"
    operation: Operation | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subscription, self.resource_group, self.name)

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{APP_TYPE}/{self.name}"
        )

    @property
    def configuration(self) -> Json:
        config: Json = self.body.setdefault("properties", {}).setdefault("configuration", {})
        return config

    @property
    def multiple(self) -> bool:
        # spec: Configuration.activeRevisionsMode defaults to Single.
        mode: str = self.configuration.get("activeRevisionsMode", "Single")
        return mode == "Multiple"

    def fqdn(self, name: str | None = None) -> str:
        return f"{name or self.name}.{self.environment.default_domain}"

    def secret_values(self) -> dict[str, str]:
        return {s["name"]: s.get("value", "") for s in self.configuration.get("secrets") or []}

    def weights(self) -> dict[str, int]:
        """Revision name -> traffic weight, with `latestRevision` entries resolved."""
        # docs: traffic-splitting, "By default, when ingress is enabled, all traffic is
        # routed to the latest deployed revision".
        entries = (self.configuration.get("ingress") or {}).get("traffic")
        if not self.multiple or not entries:
            return {self.latest: 100}
        weights: Counter[str] = Counter()
        for entry in entries:
            name = self.latest if entry.get("latestRevision") else entry.get("revisionName")
            if name:
                weights[name] += int(entry.get("weight", 0))
        return dict(weights)


class EmulatorState:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.apps: dict[tuple[str, str, str], App] = {}
        self.environments: dict[tuple[str, str, str], Environment] = {}
        self.operations: dict[str, Operation] = {}
        self.faults = Faults()
        self.tokens: set[str] = set()
        #: (method, route) -> requests, e.g. ("PUT", "app"); writes are PUT/PATCH/DELETE/POST.
        self.calls: Counter[tuple[str, str]] = Counter()
        self.throttled: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[tuple[str, str]] = Counter()
        #: Every response body sent, for "no secret ever leaves" checks.
        self.sent: list[bytes] = []
        #: Hook called (app, revision) when a revision needs replicas (backed mode).
        self.on_revision: Callable[[App, Revision], None] | None = None
        #: Hook called (app, revision) when a revision's replicas must stop.
        self.on_stop: Callable[[App, Revision], None] | None = None
        #: Hook called (app, revision) when a revision restarts (backed mode).
        self.on_restart: Callable[[App, Revision], None] | None = None

    # -- knobs ---------------------------------------------------------------------------

    def add_environment(
        self, subscription: str, resource_group: str, name: str, location: str = "westeurope"
    ) -> Environment:
        # docs: the environment's default domain is <env>-<random>.<region>.azurecontainerapps.io,
        # as in the spec's Revisions_List example: politehill-ab123456.eastus.azurecontainerapps.io
        domain = f"{name}-{uuid.uuid4().hex[:8]}.{location}.azurecontainerapps.io"
        env = Environment(subscription, resource_group, name, location, domain)
        with self.lock:
            self.environments[(subscription, resource_group.lower(), name)] = env
        return env

    def throttle(self, count: int = 0, seconds: float = 0.0, retry_after: float = 1.0) -> None:
        with self.lock:
            until = self.clock() + seconds if seconds else 0.0
            self.faults.throttle = Throttle(count, until, retry_after)

    def reset_counters(self) -> None:
        with self.lock:
            self.calls.clear()
            self.throttled.clear()
            self.failed.clear()

    @property
    def writes(self) -> int:
        return sum(
            n
            for (method, route), n in self.calls.items()
            if method in ("PUT", "PATCH", "DELETE", "POST") and route not in ("aad", "secrets")
        )

    def fault_for(self, method: str, route: str) -> tuple[int, float] | None:
        with self.lock:
            throttle = self.faults.throttle
            if throttle.count > 0 or self.clock() < throttle.until:
                throttle.count = max(0, throttle.count - 1)
                self.throttled[(method, route)] += 1
                return 429, throttle.retry_after
            routes = self.faults.errors_500_routes
            if self.faults.errors_500 > 0 and (not routes or (method, route) in routes):
                self.faults.errors_500 -= 1
                self.failed[(method, route)] += 1
                return 500, 0.0
        return None

    # -- lookups ---------------------------------------------------------------------------

    def app(self, sub: str, rg: str, name: str) -> App | None:
        with self.lock:
            return self.apps.get((sub, rg.lower(), name))

    def in_resource_group(self, sub: str, rg: str) -> list[App]:
        with self.lock:
            return [a for k, a in sorted(self.apps.items()) if k[:2] == (sub, rg.lower())]

    def environment_by_id(self, resource_id: str) -> Environment | None:
        parts = resource_id.strip("/").split("/")
        # /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.App/managedEnvironments/{n}
        if len(parts) != 8 or parts[6].lower() != "managedenvironments":
            return None
        with self.lock:
            return self.environments.get((parts[1], parts[3].lower(), parts[7]))

    # -- writes (the rules) ------------------------------------------------------------------

    def put(self, sub: str, rg: str, name: str, body: Json) -> tuple[App, Operation, bool]:
        """Create or replace an app; returns (app, operation, created)."""
        with self.lock:
            existing = self.app(sub, rg, name)
            self._refuse_if_busy(existing)
            props = body.get("properties") or {}
            env_id = props.get("environmentId") or props.get("managedEnvironmentId") or ""
            environment = self.environment_by_id(env_id)
            if existing is not None:
                environment = existing.environment  # spec: environmentId is read+create only
            if environment is None:
                # Assumption (no source for the code): ARM answers 404 for a missing parent.
                raise ArmError(
                    404, "ManagedEnvironmentNotFound", f"environment {env_id!r} not found"
                )
            app = App(sub, rg, name, copy.deepcopy(body), environment)
            if existing is not None:
                app.revisions, app.latest = existing.revisions, existing.latest
                app.latest_ready = existing.latest_ready
            return self._apply(app, existing)

    def patch(self, sub: str, rg: str, name: str, patch: Json) -> tuple[App, Operation, bool]:
        with self.lock:
            existing = self.app(sub, rg, name)
            if existing is None:
                raise ArmError(404, "ResourceNotFound", f"container app {name} not found")
            self._refuse_if_busy(existing)
            # spec: ContainerApps_Update "Patches a Container App using JSON Merge Patch".
            merged = merge_patch(copy.deepcopy(existing.body), patch)
            app = App(sub, rg, name, merged, existing.environment)
            app.revisions, app.latest = existing.revisions, existing.latest
            app.latest_ready = existing.latest_ready
            return self._apply(app, existing)

    def delete(self, sub: str, rg: str, name: str) -> Operation | None:
        with self.lock:
            app = self.app(sub, rg, name)
            if app is None:
                return None
            self._refuse_if_busy(app)
            app.provisioning = "Deleting"
            operation = self._new_operation(app, "delete")
            operation.done_at = self.clock()
        return operation

    def _refuse_if_busy(self, app: App | None) -> None:
        if app is not None and app.operation is not None and app.operation.status == "InProgress":
            # Assumption (code not in the spec): ARM answers 409 while an operation runs.
            raise ArmError(
                409,
                "ContainerAppOperationInProgress",
                f"container app {app.name}: operation {app.operation.id} is still in progress",
            )

    def _apply(self, app: App, existing: App | None) -> tuple[App, Operation, bool]:
        template = (app.body.get("properties") or {}).get("template") or {}
        validate_template(template)
        latest = existing.revisions.get(existing.latest) if existing else None
        new_revision: Revision | None = None
        # docs: revisions, "Change types": a revision-scope change (anything in
        # properties.template) creates a new revision; application-scope changes
        # (traffic, secrets, ingress on/off, anything outside template) do not.
        if latest is None or _comparable(latest.template) != _comparable(template):
            suffix = template.get("revisionSuffix") or _suffix()
            # docs: revisions, "<container app name>--<revision suffix>".
            revision_name = f"{app.name}--{suffix}"
            if revision_name in app.revisions:
                # Assumption (code not in the spec): a reused suffix is refused.
                raise ArmError(
                    400,
                    "ContainerAppRevisionSuffixConflict",
                    f"revision {revision_name} already exists; change template.revisionSuffix",
                )
            new_revision = Revision(revision_name, copy.deepcopy(template), now_iso())
            new_revision.last_active = new_revision.created
        validate_traffic(app, new_revision)
        app.revisions = dict(app.revisions)
        if new_revision is not None:
            app.revisions[new_revision.name] = new_revision
            app.latest = new_revision.name
        app.provisioning = "InProgress"
        self.apps[app.key] = app
        operation = self._new_operation(app, "put" if existing is None else "patch")
        operation.revision = new_revision.name if new_revision else None
        self._activate(app)
        if new_revision is not None:
            new_revision.error = None
            if app.name in self.faults.fail_provisioning:
                self.faults.fail_provisioning.discard(app.name)
                new_revision.error = "emulated provisioning failure"
            if self.on_revision is None:
                operation.done_at = self.clock() + self.faults.provisioning_delay
            else:
                self.on_revision(app, new_revision)
        else:
            operation.done_at = self.clock()
        return app, operation, existing is None

    def _activate(self, app: App) -> None:
        """Which revisions are active after a write."""
        weights = app.weights()
        for name, revision in app.revisions.items():
            if name == app.latest:
                revision.active = True
            elif not app.multiple:
                # docs: revisions, single revision mode keeps only the latest active.
                self._deactivate(app, revision)
            elif weights.get(name, 0) > 0:
                revision.active = True

    def _deactivate(self, app: App, revision: Revision) -> None:
        if revision.active:
            revision.active = False
            revision.last_active = now_iso()
            if self.on_stop is not None:
                self.on_stop(app, revision)
            revision.replicas = []

    def _new_operation(self, app: App, kind: str) -> Operation:
        operation = Operation(uuid.uuid4().hex, app.key, kind)
        self.operations[operation.id] = operation
        app.operation = operation
        return operation

    # -- revisions ---------------------------------------------------------------------------

    def set_active(self, app: App, revision: Revision, active: bool) -> None:
        with self.lock:
            if active and not revision.active:
                revision.active = True
                revision.replicas = []
                if self.on_revision is not None:
                    self.on_revision(app, revision)
                else:
                    self._count_replicas(revision)
            elif not active:
                self._deactivate(app, revision)

    def settle(self) -> None:
        """Counting mode: operations whose time has come finish now."""
        with self.lock:
            now = self.clock()
            for operation in self.operations.values():
                if operation.status != "InProgress" or operation.done_at is None:
                    continue
                if now < operation.done_at:
                    continue
                app = self.apps.get(operation.key)
                if operation.kind == "delete":
                    if app is not None:
                        for revision in app.revisions.values():
                            self._deactivate(app, revision)
                    self.apps.pop(operation.key, None)
                    operation.status = "Succeeded"
                    continue
                if app is None:
                    continue
                made = app.revisions.get(operation.revision or "")
                if made is not None and made.provisioning == "Provisioning":
                    # A revision that failed to provision runs no replica (its
                    # runningState is Failed; docs: revisions, "Running status").
                    if not made.error:
                        self._count_replicas(made)
                    made.provisioning = "Failed" if made.error else "Provisioned"
                self.finish(app, operation)

    def _count_replicas(self, revision: Revision) -> None:
        minimum, _ = revision.scale
        revision.replicas = [
            Replica(f"{revision.name}-{uuid.uuid4().hex[:10]}", now_iso(), ready=True)
            for _ in range(minimum)
        ]

    def finish(self, app: App, operation: Operation) -> None:
        """The operation is over: its revision is Provisioned or Failed."""
        revision = app.revisions.get(operation.revision or "")
        if revision is not None and revision.provisioning == "Failed":
            operation.status = "Failed"
            operation.error = {
                "code": "ContainerAppProvisioningFailed",  # Assumption: no code in the spec
                "message": f"revision {revision.name} failed to provision: {revision.error}",
            }
            app.provisioning = "Failed"
        else:
            operation.status = "Succeeded"
            app.provisioning = "Succeeded"
            if revision is not None:
                app.latest_ready = revision.name

    def scale(self, app: App, revision: Revision, replicas: int) -> None:
        """Test hook: what HTTP-concurrency autoscaling would do under load."""
        minimum, maximum = revision.scale
        if not minimum <= replicas <= maximum:
            raise ValueError(
                f"{revision.name}: {replicas} replicas is outside [{minimum}, {maximum}]"
            )
        with self.lock:
            if self.on_revision is None:
                while len(revision.replicas) < replicas:
                    revision.replicas.append(
                        Replica(f"{revision.name}-{uuid.uuid4().hex[:10]}", now_iso(), ready=True)
                    )
                del revision.replicas[replicas:]


def validate_template(template: Json) -> None:
    containers = template.get("containers") or []
    if not containers:
        # Assumption (code not in the spec): a template without containers is refused.
        raise ArmError(400, "ContainerAppInvalidTemplate", "template.containers must not be empty")
    scale = template.get("scale") or {}
    minimum = scale.get("minReplicas", 0)
    maximum = scale.get("maxReplicas", DEFAULT_MAX_REPLICAS)
    # docs: scale-app, "Scale limit": min 0..1000, max 1..1000. The spec has no bounds.
    if not (0 <= minimum <= MAX_REPLICAS_LIMIT and 1 <= maximum <= MAX_REPLICAS_LIMIT):
        raise ArmError(
            400,
            "ContainerAppInvalidScaleSettings",  # Assumption: the code is not in the spec
            f"minReplicas must be 0-{MAX_REPLICAS_LIMIT} and maxReplicas 1-{MAX_REPLICAS_LIMIT}"
            f" (got {minimum} and {maximum})",
        )
    if minimum > maximum:
        raise ArmError(
            400,
            "ContainerAppInvalidScaleSettings",
            f"minReplicas {minimum} is greater than maxReplicas {maximum}",
        )


def validate_traffic(app: App, new_revision: Revision | None) -> None:
    entries = (app.configuration.get("ingress") or {}).get("traffic")
    if not entries:
        return
    total = 0
    for entry in entries:
        target = entry.get("revisionName")
        known = target in app.revisions or (
            new_revision is not None and target == new_revision.name
        )
        if target and not entry.get("latestRevision") and not known:
            raise ArmError(
                400,
                "ContainerAppInvalidTrafficWeight",  # Assumption: the code is not in the spec
                f"traffic names revision {target!r}, which does not exist",
            )
        total += int(entry.get("weight", 0))
    # docs: traffic-splitting, "The combined weight of all traffic split rules must equal
    # 100%". Checked in multiple revision mode, where weights route traffic.
    if app.multiple and total != 100:
        raise ArmError(
            400,
            "ContainerAppInvalidTrafficWeight",  # Assumption: the code is not in the spec
            f"traffic weights must add up to 100, got {total}",
        )


def _comparable(template: Json) -> Json:
    return {k: v for k, v in template.items() if v is not None}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target
