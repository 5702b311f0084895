"""The `containerapp` runtime: model servers as Azure Container Apps, one app per deployment.

It executes the planner's actions through `azure-mgmt-appcontainers` and nothing more.
Container Apps facts that shape it (spec.py cites each; docs/operations.md says what it
means for an operator):

- The controller cannot reach a replica: the ingress sends a request to one replica of
  one revision, and there is no per-replica address. So servers are linked to the
  controller (`ALIASFLOW_CONTROLLER_URL`; docs/server-contract.md): they ask which
  version to serve at boot and on a poll, swap themselves, and report. A hot swap is a
  new desired version in `ServerLinks` (and the version tag, by a tags-only PATCH): no
  new revision, every replica converges within a poll, and a replica that starts later
  (a restart, a scale-out) boots on it directly.
- Served-version truth: a deployment serves version N when every running replica of its
  active revisions, as ARM lists them, reports N. A full pass lists no replicas (one
  list per resource group is its whole ARM cost): there the replicas' own reports are
  the news, and a report of another version is drift the per-deployment pass checks.
- Any other change is a new revision: made with no traffic, proven (provisioned, every
  replica reporting the desired version), then given 100% of the traffic, and only then
  are the older revisions deactivated, after a drain pause for requests in flight. A
  new revision that fails leaves the old one serving.
- Canary and shadow travel the link too: every replica splits its own requests by the
  split recorded in `ServerLinks` (and on the app's tags), so the app's traffic follows
  the weight in aggregate; the split counts as applied once every ready replica reports
  it. The replicas' reported prediction counters, summed, are the deployment's metrics
  (`server_metrics`), since no one replica's `/metrics` is (split.py, counters.py).
- Apps are tagged like ACI groups (`aliasflow-managed`, `-deployment`, `-spec-hash`,
  `-model-version`) plus `aliasflow-runtime-hash`; the spec hash moves only once a new
  revision serves, so a failed rollout is retried when something changes.

Only apps tagged `aliasflow-managed=true` are observed, updated or deleted, and only in
the resource groups the controller is configured with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from azure.core.credentials import TokenCredential
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from controller.core.errors import (
    HealthTimeoutError,
    InvalidSpecError,
    RolloutRejectedError,
    RuntimeUnavailableError,
)
from controller.core.types import ActualState, DesiredState, Traffic
from controller.runtimes.azurearm import (
    ARM_URL,
    TAG_DEPLOYMENT,
    TAG_MODEL_VERSION,
    ArmClients,
    RetryOptions,
    Whereabouts,
    is_owned,
)
from controller.runtimes.common import server_key
from controller.runtimes.containerapp.arm import ContainerAppsArm, Key, OperationFailedError
from controller.runtimes.containerapp.spec import (
    AppView,
    EndpointResolver,
    Json,
    ReplicaView,
    RevisionView,
    Served,
    ServerWiring,
    actual_from_app,
    app_view,
    build_app,
    default_endpoint,
    is_digest_of,
    owned_tags,
    placement_of,
    runtime_hash,
    served_by_replicas,
    served_by_reports,
    suffix_for,
)
from controller.runtimes.containerapp.split import (
    TAG_CANARY,
    applied_traffic,
    link_traffic,
    traffic_from_tags,
    traffic_tags,
)
from controller.runtimes.link import DesiredModel, ReplicaReport, ServerLinks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Observation:
    """One app as ARM shows it now: the app, its active revisions and their replicas."""

    at: float
    view: AppView
    revisions: tuple[RevisionView, ...]
    replicas: tuple[ReplicaView, ...]


class ContainerAppRuntime:
    kind = "containerapp"

    def __init__(
        self,
        credential: TokenCredential,
        resource_groups: Iterable[Key],
        secret: str,
        links: ServerLinks,
        wiring: ServerWiring,
        *,
        base_url: str | None = None,
        audience: str = ARM_URL,
        connection_verify: str | bool | None = None,
        endpoint_resolver: EndpointResolver = default_endpoint,
        retry: RetryOptions = RetryOptions(),
        polling_interval: float = 2.0,
        delete_timeout: float = 300.0,
        listing_ttl: float = 5.0,
        observe_ttl: float = 1.0,
        check_interval: float = 1.0,
        drain_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.resource_groups: tuple[Key, ...] = tuple(dict.fromkeys(resource_groups))
        if not self.resource_groups:
            raise ValueError("the containerapp runtime needs at least one resource group")
        self._secret = secret
        self.links = links
        self.wiring = wiring
        #: Maps an app's ingress FQDN to the URL the controller calls (tests map it to
        #: the loopback ingress of an emulated app).
        self.endpoint_resolver = endpoint_resolver
        self.delete_timeout = delete_timeout
        self.check_interval = check_interval
        self.drain_seconds = drain_seconds
        self._observe_ttl = observe_ttl
        self._clock = clock
        self._sleep = sleep
        clients = ArmClients(
            ContainerAppsAPIClient,
            credential,
            base_url=base_url or ARM_URL,
            audience=audience,
            retry=retry,
            polling_interval=polling_interval,
            connection_verify=connection_verify,
        )
        self.arm = ContainerAppsArm(clients, polling_interval)
        self._whereabouts = Whereabouts(self.resource_groups, listing_ttl, clock)
        self._observed: dict[str, _Observation] = {}
        self._environments: dict[tuple[Key, str], str] = {}
        self._hashes: dict[str, str] = {}
        self._lock = threading.RLock()

    # -- Runtime protocol ---------------------------------------------------------------

    def list_owned(self) -> list[ActualState]:
        """One list per resource group; served versions from the replicas' reports."""
        owned: list[ActualState] = []
        for key in self.resource_groups:
            for name, view in self._list(key).items():
                desired = self._seed(name, view)
                reports = self.links.reports(name)
                served = served_by_reports(reports, desired, view.running)
                owned.append(self._actual(name, view, served, reports.values()))
        return sorted(owned, key=lambda state: state.name)

    def observe(self, name: str) -> ActualState | None:
        """The app, and what every running replica of its active revisions reports."""
        key = self._locate(name)
        if key is None:
            return None
        seen = self._observe(key, name)
        if seen is None:
            return None
        desired = self._seed(name, seen.view)
        reports = self.links.reports(name)
        served = served_by_replicas(seen.replicas, reports, desired, seen.view.min_replicas)
        running = [reports[r.name] for r in seen.replicas if r.running and r.name in reports]
        return self._actual(name, seen.view, served, running)

    def deploy(self, desired: DesiredState) -> ActualState:
        """A new revision, proven before it takes the traffic (zero downtime)."""
        return _Rollout(self, desired).run()

    def set_traffic(
        self, desired: DesiredState, traffic: Traffic, current: ActualState | None = None
    ) -> ActualState:
        """Every replica is told the split through the link and splits its own requests;
        the split is recorded on the tags by a tags-only PATCH (no new revision). What
        comes back is pending until every ready replica reports the split."""
        key = self._key_of(desired)
        what = f"traffic of {key[1]}/{desired.name}"
        existing = self._get(key, desired.name)
        if existing is not None and not is_owned(existing.tags):
            raise InvalidSpecError(f"{what}: not tagged aliasflow-managed=true; left alone")
        if existing is None or not existing.running:
            raise RuntimeUnavailableError(f"{what}: no running container app to split traffic")
        # The primary the replicas serve stays what it was (from the tags after a restart).
        self._seed(desired.name, existing)
        split = link_traffic(traffic)
        self.links.decide_traffic(desired.name, split)
        log.info(
            "%s: replicas told to split: canary %s at %s%%, shadow %s at %s%%",
            desired.name,
            traffic.canary_uri or "none",
            traffic.weight,
            traffic.shadow_uri or "none",
            traffic.percent,
            extra={"deployment": desired.name, "model_version": desired.model_version},
        )
        self._write_tags(key, desired, existing, traffic_tags(existing.tags, split))
        seen = self.observe(desired.name)
        if seen is None:
            raise RuntimeUnavailableError(f"{what}: the app vanished")
        return seen

    def server_metrics(self, name: str) -> str | None:
        """The deployment's prediction counters: every replica's reported ones, summed
        (no one replica's `/metrics` is the app's); None before any report."""
        return self.links.metrics(name)

    def set_api_keys(
        self, desired: DesiredState, current: ActualState | None = None
    ) -> ActualState:
        """Not reachable per replica: the keys are in the spec hash here, so a change is a
        new revision. The planner never asks (these servers' keys are not probed)."""
        raise InvalidSpecError(
            f"{desired.name}: API keys change with a new revision on target containerapp"
        )

    def hotswap(self, desired: DesiredState, current: ActualState | None = None) -> ActualState:
        """Every replica is told the new version through the link; the version tag moves
        by a tags-only PATCH (no new revision, no restart)."""
        key = self._key_of(desired)
        what = f"hot swap {key[1]}/{desired.name}"
        existing = self._get(key, desired.name)
        if existing is not None and not is_owned(existing.tags):
            raise InvalidSpecError(f"{what}: not tagged aliasflow-managed=true; left alone")
        if existing is None or not existing.running:
            raise RuntimeUnavailableError(
                f"{what}: no running container app to hot swap; it needs a new revision"
            )
        self.links.decide(desired.name, DesiredModel(desired.model_uri, desired.model_version))
        log.info(
            "%s: replicas told to serve %s",
            desired.name,
            desired.model_uri,
            extra={"deployment": desired.name, "model_version": desired.model_version},
        )
        # A new primary ends a canary (it became the primary, or it was replaced).
        tags = {**existing.tags, TAG_MODEL_VERSION: desired.model_version}
        tags.pop(TAG_CANARY, None)
        view = self._write_tags(key, desired, existing, tags)
        pending = Served(None, False, f"replicas switch to version {desired.model_version}")
        return self._actual(desired.name, view, pending)

    def delete(self, name: str) -> None:
        """Delete an owned app (a no-op when it is gone); refuse anything not ours."""
        key = self._locate(name)
        if key is None:
            return
        existing = self._get(key, name)
        if existing is not None and not is_owned(existing.tags):
            raise InvalidSpecError(
                f"delete {key[1]}/{name}: not tagged aliasflow-managed=true; left alone"
            )
        if existing is not None:
            self.arm.delete_app(key, name, self.delete_timeout)
            log.info("deleted container app %s/%s", key[1], name)
        self.links.forget(name)
        self._forget(name)

    def close(self) -> None:
        self.arm.close()

    # -- what the servers of one deployment are given ----------------------------------

    def server_key(self, name: str) -> str:
        return server_key(self._secret, name)

    def runtime_hash(self, name: str) -> str:
        with self._lock:
            known = self._hashes.get(name)
        if known is None:
            known = runtime_hash(self.wiring, self.server_key(name))
            with self._lock:
                self._hashes[name] = known
        return known

    def _write_tags(
        self, key: Key, desired: DesiredState, existing: AppView, tags: dict[str, str]
    ) -> AppView:
        """A tags-only PATCH when the tags change (no new revision, no restart). The
        replicas already follow the link; a failed PATCH is retried and re-records it on
        the next pass."""
        if tags == existing.tags:
            return existing
        view = app_view(
            self.arm.patch_app(
                key,
                desired.name,
                {"tags": tags_patch(existing.tags, tags)},
                float(desired.health_timeout_seconds),
            )
        )
        self._remember(key, desired.name, view)
        return view

    # -- reads --------------------------------------------------------------------------

    def _actual(
        self,
        name: str,
        view: AppView,
        served: Served,
        reports: Iterable[ReplicaReport] = (),
    ) -> ActualState:
        """The app and its served version, with the split its ready replicas apply."""
        actual = actual_from_app(view, self.endpoint_resolver, served, self.runtime_hash(name))
        applied, lagging = applied_traffic(reports, self.links.traffic(name))
        return replace(
            actual,
            canary_version=applied.canary_version,
            canary_weight=applied.canary_weight,
            shadow_version=applied.shadow_version,
            shadow_percent=applied.shadow_percent,
            detail="; ".join(part for part in (actual.detail, lagging) if part),
        )

    def _seed(self, name: str, view: AppView) -> DesiredModel | None:
        """What the servers are told: this process's decision, else the tags' record."""
        version = view.tags.get(TAG_MODEL_VERSION)
        if version and view.model_name:
            self.links.seed(
                name,
                DesiredModel(f"models:/{view.model_name}/{version}", version),
                traffic_from_tags(view.tags, view.model_name),
            )
        return self.links.desired(name)

    def _list(self, key: Key) -> dict[str, AppView]:
        owned: dict[str, AppView] = {}
        for item in self.arm.list_apps(key):
            view = app_view(item)
            if is_owned(view.tags):
                owned[view.tags.get(TAG_DEPLOYMENT) or view.name] = view
        self._whereabouts.listed(key, owned)
        return owned

    def _get(self, key: Key, name: str) -> AppView | None:
        found = self.arm.get_app(key, name)
        if found is None:
            return None
        view = app_view(found)
        self._remember(key, name, view)
        return view

    def _observe(self, key: Key, name: str) -> _Observation | None:
        """The app, its active revisions and their replicas; reused for `observe_ttl` s
        (the health gate asks several times a second) unless this runtime wrote since."""
        now = self._clock()
        with self._lock:
            cached = self._observed.get(name)
        if cached is not None and now - cached.at < self._observe_ttl:
            return cached
        view = self._get(key, name)
        if view is None or not is_owned(view.tags):
            return None
        revisions = tuple(r for r in self.arm.revisions(key, name) if r.active)
        replicas = tuple(
            replica
            for revision in revisions
            if revision.replicas > 0
            for replica in self.arm.replicas(key, name, revision.name)
        )
        seen = _Observation(now, view, revisions, replicas)
        with self._lock:
            self._observed[name] = seen
        return seen

    def _locate(self, name: str) -> Key | None:
        """Which resource group holds `name`: known from a listing, a write, or a fresh list."""
        return self._whereabouts.locate(name, self._list)

    def _remember(self, key: Key, name: str, view: AppView) -> None:
        self._invalidate(name)
        if is_owned(view.tags):
            self._whereabouts.remember(key, name)

    def _invalidate(self, name: str) -> None:
        with self._lock:
            self._observed.pop(name, None)

    def _forget(self, name: str) -> None:
        self._invalidate(name)
        self._whereabouts.forget(name)

    def _key_of(self, desired: DesiredState) -> Key:
        where = placement_of(desired)
        key = (where.subscription_id, where.resource_group)
        if key not in self.resource_groups:
            raise InvalidSpecError(
                f"{desired.name}: resource group {where.resource_group} (subscription "
                f"{where.subscription_id}) is not one the controller manages; add it to "
                "ALIASFLOW_CONTAINERAPP_RESOURCE_GROUPS so its apps are listed, observed "
                "and pruned"
            )
        return key

    def _environment_id(self, key: Key, environment: str, name: str) -> str:
        """A managed environment's resource id, from its id or its name (read once)."""
        if environment.startswith("/subscriptions/"):
            return environment
        with self._lock:
            known = self._environments.get((key, environment))
        if known is not None:
            return known
        found = self.arm.environment_id(key, environment)
        if found is None:
            raise InvalidSpecError(
                f"{name}: no Container Apps environment {environment!r} in resource group "
                f"{key[1]}; set spec.target.containerapp.environment to an existing "
                "environment's name there, or to its resource id"
            )
        with self._lock:
            self._environments[(key, environment)] = found
        return found


class _Rollout:
    """One `deploy`: make (or find) the revision for the spec, prove it, shift, retire.

    A flat pipeline of named steps; each fails in one way. The deadline is the manifest's
    `healthTimeoutSeconds` for the whole rollout.
    """

    def __init__(self, runtime: ContainerAppRuntime, desired: DesiredState) -> None:
        self.runtime = runtime
        self.arm = runtime.arm
        self.desired = desired
        self.name = desired.name
        self.key = runtime._key_of(desired)
        self.placement = placement_of(desired)
        self.model = DesiredModel(desired.model_uri, desired.model_version)
        self.timeout = float(desired.health_timeout_seconds)
        self.deadline = runtime._clock() + self.timeout
        self.what = f"deploy {self.key[1]}/{self.name}"

    def left(self) -> float:
        return max(self.deadline - self.runtime._clock(), 0.0)

    def run(self) -> ActualState:
        existing = self.existing_app()
        key = self.runtime.server_key(self.name)
        environment_id = self.runtime._environment_id(
            self.key, self.placement.environment, self.name
        )
        if existing is not None:
            self.refuse_moves(existing, environment_id)
        app = build_app(
            self.desired,
            placement=self.placement,
            environment_id=environment_id,
            key=key,
            wiring=self.runtime.wiring,
        )
        tags = owned_tags(self.desired, self.runtime.wiring, key)
        revisions = {r.name: r for r in self.arm.revisions(self.key, self.name)} if existing else {}
        latest = existing.latest_revision if existing else None
        if is_digest_of(latest, self.name, app.suffix_digest):
            target = str(latest)
        else:
            target = f"{self.name}--{suffix_for(app.suffix_digest, revisions, self.name, latest)}"
        # The new revision's replicas boot on the new version; the others keep theirs
        # until it has proven itself.
        self.runtime.links.decide(self.name, self.model, revision=target)
        if target not in revisions:
            self.create_revision(app.body, target, existing, tags)
        elif not revisions[target].active:
            self.arm.set_active(self.key, self.name, target, True)
        self.prove(target, {n for n, r in revisions.items() if r.active and n != target})
        view = self.shift(target, tags)
        self.runtime.links.decide(self.name, self.model)
        self.retire(target)
        log.info(
            "container app %s/%s serves revision %s with %s",
            self.key[1],
            self.name,
            target,
            self.desired.model_uri,
            extra={"deployment": self.name, "model_version": self.desired.model_version},
        )
        return self.runtime._actual(self.name, view, Served(self.model.version, True))

    def existing_app(self) -> AppView | None:
        """The app as it is, once no earlier operation is still running on it."""
        while True:
            existing = self.runtime._get(self.key, self.name)
            if existing is not None and not is_owned(existing.tags):
                raise InvalidSpecError(
                    f"{self.what}: a container app of that name exists and is not tagged "
                    "aliasflow-managed=true; refusing to overwrite it"
                )
            if existing is None or existing.provisioning_state != "InProgress":
                return existing
            if self.left() <= 0:
                raise RuntimeUnavailableError(
                    f"{self.what}: an earlier operation on the app is still running; none "
                    "was sent, the next pass tries again"
                )
            self.runtime._sleep(self.runtime.check_interval)

    def refuse_moves(self, existing: AppView, environment_id: str) -> None:
        """An app stays in the environment and region it was created in (spec:
        environmentId is read and create only; ARM refuses a new location)."""
        moved = []
        # Resource ids and regions compare without case ("West Europe" is westeurope).
        if existing.environment_id and existing.environment_id.lower() != environment_id.lower():
            moved.append(f"environment {existing.environment_id}")
        if existing.location and _region(existing.location) != _region(self.placement.location):
            moved.append(f"location {existing.location}")
        if moved:
            raise InvalidSpecError(
                f"{self.what}: the app runs in {' and '.join(moved)}, which an app cannot "
                "change: delete the app (az containerapp delete) and the next pass creates "
                "it where the manifest says"
            )

    def create_revision(
        self, body: Json, target: str, existing: AppView | None, tags: dict[str, str]
    ) -> None:
        """PUT the app with the new template; traffic stays where it is."""
        props = body["properties"]
        props["template"]["revisionSuffix"] = target.split("--", 1)[1]
        ingress = props["configuration"]["ingress"]
        if existing is None:
            body["tags"] = tags
            ingress["traffic"] = [{"latestRevision": True, "weight": 100}]
        else:
            # The version tags move only once the new revision serves (see shift()).
            body["tags"] = existing.tags
            weights = {n: w for n, w in existing.weights().items() if w > 0}
            ingress["traffic"] = [
                {"revisionName": n, "weight": w} for n, w in sorted(weights.items())
            ] or [{"latestRevision": True, "weight": 100}]
        try:
            view = app_view(self.arm.put_app(self.key, self.name, body, self.left()))
        except OperationFailedError as exc:
            raise self.rejected(target, str(exc)) from exc
        self.runtime._remember(self.key, self.name, view)

    def prove(self, target: str, serving: set[str]) -> None:
        """Provisioned, and every running replica serving the desired version, in time."""
        last = "not provisioned yet"
        while True:
            revision = self.arm.revision(self.key, self.name, target)
            if revision is not None and revision.provisioning_state == "Failed":
                raise self.rejected(target, revision.error or "provisioning failed")
            if revision is not None and revision.provisioning_state == "Provisioned":
                replicas = self.arm.replicas(self.key, self.name, target)
                served = served_by_replicas(
                    replicas,
                    self.runtime.links.reports(self.name),
                    self.model,
                    self.placement.min_replicas,
                )
                if served.ready and served.version == self.model.version:
                    return
                last = served.detail or f"serving {served.version}"
            if self.left() <= 0:
                others = ", ".join(sorted(serving)) or "nothing"
                raise HealthTimeoutError(
                    f"{self.what}: revision {target} not serving version "
                    f"{self.model.version} after {self.timeout:.0f}s ({last}); "
                    f"{others} keeps serving"
                )
            self.runtime._sleep(self.runtime.check_interval)

    def shift(self, target: str, tags: dict[str, str]) -> AppView:
        """All traffic to the proven revision, and the tags that record what it runs."""
        current = self.runtime._get(self.key, self.name)
        if current is None:
            raise RuntimeUnavailableError(f"{self.what}: the app vanished during the rollout")
        wanted = {**current.tags, **tags}
        # The new revision serves the desired version alone: a canary is over.
        wanted.pop(TAG_CANARY, None)
        if current.weights() == {target: 100} and wanted == current.tags:
            return current
        patch: dict[str, Any] = {
            "tags": tags_patch(current.tags, wanted),
            "properties": {
                "configuration": {"ingress": {"traffic": [{"revisionName": target, "weight": 100}]}}
            },
        }
        view = app_view(
            self.arm.patch_app(self.key, self.name, patch, max(self.left(), self.timeout / 2))
        )
        self.runtime._remember(self.key, self.name, view)
        return view

    def retire(self, target: str) -> None:
        """Deactivate every other active revision, after requests in flight drained."""
        others = [
            r.name for r in self.arm.revisions(self.key, self.name) if r.active and r.name != target
        ]
        if not others:
            return
        self.runtime._sleep(self.runtime.drain_seconds)
        for name in others:
            self.arm.set_active(self.key, self.name, name, False)
        self.runtime._invalidate(self.name)

    def rejected(self, target: str, why: str) -> RolloutRejectedError:
        return RolloutRejectedError(
            f"{self.what}: revision {target} failed ({why}); it takes no traffic and the "
            "revision that served keeps serving"
        )


def tags_patch(old: dict[str, str], new: dict[str, str]) -> dict[str, str | None]:
    """`new` as a JSON merge patch over `old` (spec: ContainerApps_Update is a merge
    patch): a tag that goes is sent as null, or it would stay."""
    return {**new, **{k: None for k in old if k not in new}}


def _region(location: str) -> str:
    return location.replace(" ", "").lower()
