"""From a `DesiredState` to a container app, and from an app (and its replicas) back.

Pure functions over ARM's JSON (the request and response bodies of `Microsoft.App/
containerApps`, api-version 2026-07-01): no client, no I/O. "spec" below is
azure-rest-api-specs `specification/app/resource-manager/Microsoft.App/ContainerApps/
stable/2026-07-01/openapi.json`; "docs: <page>" a learn.microsoft.com/azure/container-apps
page. Container Apps facts that shape this module:

- A revision is an immutable snapshot of `properties.template`; a change there makes a
  new one, changes elsewhere (traffic, secrets, tags) do not (docs: revisions). Secrets
  are read by a replica when it starts (docs: manage-secrets), so a rotated secret only
  reaches servers through new replicas. The revision suffix is therefore a digest of the
  template *and* the secret values: the same spec always names the same revision (a
  retried PUT makes none), and any change a replica would see names a new one.
- In multiple revision mode traffic goes where `ingress.traffic` says, with weights that
  add up to 100 (docs: traffic-splitting); an entry `latestRevision: true` follows the
  newest revision, so every PUT here names revisions explicitly and a new revision gets
  no traffic until the runtime shifts it.
- Secret values (`Secret.value`, `x-ms-secret` in the spec) are never returned by GET or
  a listing: drift cannot be seen by comparing specs, so the `aliasflow-spec-hash` tag
  (secrets included, as a digest) is the drift signal, as on ACI.
- Built-in environment variables (docs: environment-variables, "Built-in environment
  variables"): each replica gets `CONTAINER_APP_REVISION` and `CONTAINER_APP_REPLICA_NAME`,
  which the model server sends with its link requests.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from controller.core.errors import InvalidSpecError
from controller.core.types import ActualState, DesiredState
from controller.runtimes.azurearm import (
    TAG_DEPLOYMENT,
    TAG_MODEL_VERSION,
    TAG_SPEC_HASH,
    base_tags,
)
from controller.runtimes.common import workload_env
from controller.runtimes.link import DesiredModel, ReplicaReport

Json = dict[str, Any]
EndpointResolver = Callable[[str], str]

CONTAINER_NAME = "model-server"
# What the servers are given by the controller rather than by the manifest (URL, poll
# interval, their key, MLflow, registry access), as a digest: when it moves, the app is
# rolled to a new revision even though the manifest did not change.
TAG_RUNTIME_HASH = "aliasflow-runtime-hash"
KEY_SECRET_NAME = "aliasflow-server-key"  # noqa: S105 - a name, not a value
REGISTRY_SECRET_NAME = "aliasflow-registry-pull"  # noqa: S105 - a name
# docs: revisions, "Revision name suffix": lowercase letters, digits and '-', starting
# with a letter. The digest keeps the revision name (<app>--<suffix>) well inside ARM's
# limits for a 32-character app name.
SUFFIX_DIGITS = 10


def default_endpoint(fqdn: str) -> str:
    """The app's ingress FQDN (`<app>.<env domain>`): HTTPS on 443 (docs: ingress-overview)."""
    return f"https://{fqdn}"


@dataclass(frozen=True)
class Placement:
    """Where and how big a deployment's container app is, from the manifest."""

    subscription_id: str
    resource_group: str
    environment: str
    location: str
    min_replicas: int
    max_replicas: int
    concurrent_requests: int


def placement_of(desired: DesiredState) -> Placement:
    target = dict(desired.target_settings)
    needed = ("subscriptionId", "resourceGroup", "environment", "location")
    missing = [k for k in needed if not target.get(k)]
    if missing:
        raise InvalidSpecError(f"{desired.name}: target.containerapp needs {', '.join(missing)}")
    return Placement(
        subscription_id=target["subscriptionId"],
        resource_group=target["resourceGroup"],
        environment=target["environment"],
        location=target["location"],
        min_replicas=int(target.get("minReplicas", "1")),
        max_replicas=int(target.get("maxReplicas", "10")),
        concurrent_requests=int(target.get("concurrentRequests", "50")),
    )


@dataclass(frozen=True)
class RegistryAccess:
    """How replicas pull from a private registry: a managed identity (a user-assigned
    identity's resource id, or "system") or a user and password."""

    server: str
    identity: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ServerWiring:
    """What every server gets from the controller, beside its manifest."""

    controller_url: str
    poll_seconds: float
    tracking_uri: str | None = None
    registry: RegistryAccess | None = None


def runtime_hash(wiring: ServerWiring, key: str) -> str:
    """Digest of the controller-side settings the servers of one deployment run with."""
    registry = wiring.registry
    shape = {
        "controller": wiring.controller_url,
        "poll": wiring.poll_seconds,
        "tracking": wiring.tracking_uri,
        "key": key,
        "registry": None
        if registry is None
        else [registry.server, registry.identity, registry.username, registry.password],
    }
    return _digest(shape)[:16]


def secret_name(env_name: str) -> str:
    """A Container Apps secret name for an environment variable: lowercase letters,
    digits and '-' (docs: manage-secrets)."""
    return "env-" + env_name.lower().replace("_", "-")


def owned_tags(desired: DesiredState, wiring: ServerWiring, key: str) -> dict[str, str]:
    return {**base_tags(desired), TAG_RUNTIME_HASH: runtime_hash(wiring, key)}


@dataclass(frozen=True)
class AppBody:
    """A full container app for a PUT, and the revision its template names."""

    body: Json
    suffix_digest: str


def build_app(
    desired: DesiredState,
    *,
    placement: Placement,
    environment_id: str,
    key: str,
    wiring: ServerWiring,
) -> AppBody:
    """The container app a PUT sends for `desired`, without tags, traffic and revision
    suffix (the runtime sets those: they depend on what is already there).

    Secret values (the manifest's secretEnv, the server's key, a registry password) go in
    `configuration.secrets` and reach the container through `secretRef`, never as plain
    values. `MODEL_URI` pins the version a replica boots on when the controller does not
    answer; with the link it boots on what the controller says.
    """
    workload = workload_env(desired, tracking_uri=wiring.tracking_uri, admin_token=key)
    plain = {
        **workload.plain,
        "ALIASFLOW_CONTROLLER_URL": wiring.controller_url,
        "ALIASFLOW_DEPLOYMENT": desired.name,
        "ALIASFLOW_CONTROLLER_POLL_SECONDS": f"{wiring.poll_seconds:g}",
    }
    secrets: dict[str, str] = {}
    env: list[Json] = [{"name": k, "value": v} for k, v in sorted(plain.items())]
    for name, value in sorted(workload.secret.items()):
        ref = KEY_SECRET_NAME if name == "ALIASFLOW_ADMIN_TOKEN" else secret_name(name)
        if ref in secrets:
            raise InvalidSpecError(
                f"{desired.name}: secretEnv names {name!r} and another variable that differ "
                "only in case or '_'; Container Apps secret names are lowercase"
            )
        secrets[ref] = value
        env.append({"name": name, "secretRef": ref})
    port = desired.port
    template: Json = {
        "containers": [
            {
                "name": CONTAINER_NAME,
                "image": desired.image,
                "env": env,
                "resources": {"cpu": desired.cpu, "memory": f"{desired.memory_gb:g}Gi"},
                "probes": [
                    _probe("Readiness", "/readyz", port, initial_delay=3, period=5, failures=3),
                    # Generous: a model load can take a while, and a liveness failure restarts.
                    _probe("Liveness", "/livez", port, initial_delay=30, period=10, failures=5),
                ],
            }
        ],
        "scale": {
            "minReplicas": placement.min_replicas,
            "maxReplicas": placement.max_replicas,
            "rules": [
                {
                    "name": "http-concurrency",
                    # docs: scale-app, HTTP rule: metadata.concurrentRequests, a string.
                    "http": {
                        "metadata": {"concurrentRequests": str(placement.concurrent_requests)}
                    },
                }
            ],
        },
    }
    configuration: Json = {
        "activeRevisionsMode": "Multiple",
        "ingress": {
            "external": True,
            "targetPort": port,
            "transport": "auto",
            "allowInsecure": False,
        },
    }
    body: Json = {"location": placement.location, "properties": {"environmentId": environment_id}}
    registry = wiring.registry
    host = desired.image.split("/", 1)[0] if "/" in desired.image else ""
    if registry is not None and registry.server == host:
        configuration["registries"] = [_registry(registry, secrets, body)]
    configuration["secrets"] = [{"name": n, "value": v} for n, v in sorted(secrets.items())]
    body["properties"]["configuration"] = configuration
    body["properties"]["template"] = template
    digest = _digest({"template": template, "secrets": secrets})[:SUFFIX_DIGITS]
    return AppBody(body, digest)


def _registry(registry: RegistryAccess, secrets: dict[str, str], body: Json) -> Json:
    # spec: RegistryCredentials {server, username, passwordSecretRef, identity}; an
    # identity is a user-assigned identity's resource id attached to the app, or "system"
    # (docs: managed-identity-image-pull).
    if registry.identity:
        if registry.identity.lower() == "system":
            body["identity"] = {"type": "SystemAssigned"}
            return {"server": registry.server, "identity": "system"}
        body["identity"] = {
            "type": "UserAssigned",
            "userAssignedIdentities": {registry.identity: {}},
        }
        return {"server": registry.server, "identity": registry.identity}
    secrets[REGISTRY_SECRET_NAME] = registry.password or ""
    return {
        "server": registry.server,
        "username": registry.username or "",
        "passwordSecretRef": REGISTRY_SECRET_NAME,
    }


def _probe(
    kind: str, path: str, port: int, *, initial_delay: int, period: int, failures: int
) -> Json:
    return {
        "type": kind,
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def suffix_for(digest: str, revisions: Iterable[str], app: str, latest: str | None) -> str:
    """The revision suffix for a template digest: `r<digest>`, unless that revision exists
    and is not the latest (a spec changed back to an earlier one): then the first free
    `r<digest>-<n>`. ARM refuses a suffix that a revision already has, and reviving an old
    revision would start it with the app's current secrets, not the ones it was made with."""
    taken = set(revisions)
    base = f"r{digest}"
    candidate, n = base, 1
    while True:
        name = f"{app}--{candidate}"
        if name == latest or name not in taken:
            return candidate
        n += 1
        candidate = f"{base}-{n}"


def is_digest_of(revision: str | None, app: str, digest: str) -> bool:
    """Whether `revision` is one this runtime made for `digest` (`suffix_for`'s names)."""
    if revision is None:
        return False
    base = f"{app}--r{digest}"
    return revision == base or revision.startswith(base + "-")


# -- reading apps back ------------------------------------------------------------------


@dataclass(frozen=True)
class AppView:
    """The fields of a container app (GET or listing) that the runtime reads."""

    name: str
    tags: dict[str, str]
    provisioning_state: str
    running_status: str | None
    latest_revision: str | None
    latest_ready_revision: str | None
    fqdn: str | None
    environment_id: str | None
    location: str | None
    min_replicas: int
    traffic: tuple[tuple[str | None, int], ...]
    # The registered model the app's template boots (from its MODEL_URI).
    model_name: str | None = None

    @property
    def running(self) -> bool:
        """The app serves through some ready revision (a failed later update leaves the
        older one serving: provisioningState Failed with a ready revision is running)."""
        return (
            self.latest_ready_revision is not None
            and self.provisioning_state != "Deleting"
            and self.running_status not in ("Stopped", "Suspended")
        )

    def weights(self) -> dict[str, int]:
        """Revision -> traffic weight, `latestRevision` entries resolved (docs: traffic-
        splitting, all traffic goes to the latest revision by default)."""
        if not self.traffic:
            return {self.latest_revision: 100} if self.latest_revision else {}
        weights: Counter[str] = Counter()
        for revision, weight in self.traffic:
            name = revision or self.latest_revision
            if name:
                weights[name] += weight
        return dict(weights)


def app_view(item: Mapping[str, Any]) -> AppView:
    props = item.get("properties") or {}
    config = props.get("configuration") or {}
    ingress = config.get("ingress") or {}
    template = props.get("template") or {}
    scale = template.get("scale") or {}
    traffic = tuple(
        (
            None if entry.get("latestRevision") else entry.get("revisionName"),
            int(entry.get("weight") or 0),
        )
        for entry in ingress.get("traffic") or []
    )
    return AppView(
        name=str(item.get("name") or ""),
        tags=dict(item.get("tags") or {}),
        provisioning_state=str(props.get("provisioningState") or "Unknown"),
        running_status=props.get("runningStatus"),
        latest_revision=props.get("latestRevisionName"),
        latest_ready_revision=props.get("latestReadyRevisionName"),
        fqdn=ingress.get("fqdn"),
        environment_id=props.get("environmentId") or props.get("managedEnvironmentId"),
        location=item.get("location"),
        min_replicas=int(scale.get("minReplicas") or 0),
        traffic=traffic,
        model_name=_model_name(template),
    )


def _model_name(template: Mapping[str, Any]) -> str | None:
    for container in template.get("containers") or []:
        for var in container.get("env") or []:
            uri = var.get("value") if var.get("name") == "MODEL_URI" else None
            if isinstance(uri, str) and uri.startswith("models:/") and "/" in uri[8:]:
                return uri[8:].rsplit("/", 1)[0]
    return None


@dataclass(frozen=True)
class RevisionView:
    name: str
    active: bool
    replicas: int
    provisioning_state: str
    health_state: str | None
    running_state: str | None
    error: str | None


def revision_view(item: Mapping[str, Any]) -> RevisionView:
    props = item.get("properties") or {}
    return RevisionView(
        name=str(item.get("name") or ""),
        active=bool(props.get("active")),
        replicas=int(props.get("replicas") or 0),
        provisioning_state=str(props.get("provisioningState") or "Unknown"),
        health_state=props.get("healthState"),
        running_state=props.get("runningState"),
        error=props.get("provisioningError"),
    )


@dataclass(frozen=True)
class ReplicaView:
    name: str
    revision: str
    running: bool


def replica_view(item: Mapping[str, Any], revision: str) -> ReplicaView:
    # spec: ReplicaProperties.runningState is Running, NotRunning or Unknown.
    props = item.get("properties") or {}
    return ReplicaView(
        str(item.get("name") or ""), revision, props.get("runningState") == "Running"
    )


@dataclass(frozen=True)
class Served:
    """What the replicas say they serve, as one version, or why there is none."""

    version: str | None
    ready: bool
    detail: str = ""


def served_by_replicas(
    replicas: Iterable[ReplicaView],
    reports: Mapping[str, ReplicaReport],
    desired: DesiredModel | None,
    min_replicas: int,
) -> Served:
    """Every running replica of the active revisions (as ARM lists them) must report the
    same version, ready, for the deployment to serve it.

    A replica that has not reported yet leaves the version unknown; replicas that
    disagree make it the version that is not the desired one (drift). No running replica
    at all is serving nothing, unless the app may scale to zero: then any replica that
    starts asks the controller first, so it will serve the desired version.
    """
    running = [r for r in replicas if r.running]
    if not running:
        if min_replicas == 0 and desired is not None:
            return Served(
                desired.version,
                True,
                f"scaled to zero: a replica that starts loads version {desired.version}",
            )
        return Served(None, False, "no replica is running")
    pending = [
        r.name
        for r in running
        if r.name not in reports
        or not reports[r.name].ready
        or reports[r.name].served_version is None
    ]
    versions = Counter(
        version
        for r in running
        if r.name in reports and (version := reports[r.name].served_version) is not None
    )
    odd = _odd_version(versions, desired)
    if odd is not None:
        return Served(odd, not pending, _mixed(running, reports, desired))
    if pending:
        names = ", ".join(sorted(pending)[:3])
        return Served(
            None,
            False,
            f"{len(pending)} of {len(running)} replicas have not reported serving a "
            f"version yet ({names})",
        )
    (version,) = versions
    return Served(version, True)


def served_by_reports(
    reports: Mapping[str, ReplicaReport], desired: DesiredModel | None, running: bool
) -> Served:
    """The cheap view for the full pass: live reports only, no replica listing.

    Without any report the version is unknown (None: no news, never drift); a report of
    another version than the desired one is drift, which the per-deployment pass then
    checks against the replicas ARM lists.
    """
    if not reports:
        return Served(None, running)
    versions = Counter(r.served_version for r in reports.values() if r.served_version is not None)
    odd = _odd_version(versions, desired)
    if odd is not None:
        return Served(odd, True, _mixed(list(reports.values()), reports, desired))
    if len(versions) == 1 and all(r.ready and r.served_version for r in reports.values()):
        (version,) = versions
        return Served(version, True)
    return Served(None, running)


def _odd_version(versions: Counter[str], desired: DesiredModel | None) -> str | None:
    """A reported version other than the desired one (the most reported first); with no
    decision known, only a disagreement between replicas is one."""
    if desired is None:
        return versions.most_common()[-1][0] if len(versions) > 1 else None
    for version, _ in versions.most_common():
        if version != desired.version:
            return version
    return None


def _mixed(
    replicas: Iterable[ReplicaView | ReplicaReport],
    reports: Mapping[str, ReplicaReport],
    desired: DesiredModel | None,
) -> str:
    wanted = desired.version if desired else "?"
    off = []
    for item in replicas:
        name = item.name if isinstance(item, ReplicaView) else item.replica
        report = reports.get(name)
        if report is not None and report.served_version != wanted:
            why = f": {report.detail}" if report.detail else ""
            off.append(f"{name} serves {report.served_version}{why}")
    return f"replicas not on version {wanted}: " + "; ".join(sorted(off)[:3])


def actual_from_app(
    view: AppView,
    resolver: EndpointResolver,
    served: Served,
    expected_runtime_hash: str | None,
) -> ActualState:
    """What the tags say, completed by what the replicas report.

    A runtime hash that does not match (the servers were given another controller URL,
    poll interval, key or registry access) reads as a spec that differs, so the planner
    rolls a new revision.
    """
    tags = view.tags
    spec_hash = tags.get(TAG_SPEC_HASH, "")
    if expected_runtime_hash is not None and tags.get(TAG_RUNTIME_HASH) != expected_runtime_hash:
        spec_hash = ""
    detail = served.detail
    if not view.running:
        detail = f"no ready revision (provisioningState {view.provisioning_state})"
    return ActualState(
        name=tags.get(TAG_DEPLOYMENT) or view.name,
        spec_hash=spec_hash,
        model_version=tags.get(TAG_MODEL_VERSION),
        running=view.running,
        endpoint=resolver(view.fqdn) if view.fqdn else None,
        served_version=served.version if view.running else None,
        ready=view.running and served.ready,
        detail=detail,
    )


def _digest(shape: object) -> str:
    return hashlib.sha256(orjson.dumps(shape, option=orjson.OPT_SORT_KEYS)).hexdigest()
