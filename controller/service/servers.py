"""The controller's side of the server link: which version to serve, and replica reports.

docs/server-contract.md, "The server asks the controller": a linked model server asks
`GET /api/servers/{deployment}/model` at boot and on every poll, and reports
`POST /api/servers/{deployment}/report`. Both are signed with the deployment's own key
(`core/serverkeys.py`), checked before anything else, so that an unknown deployment and
a wrong key look alike to whoever lacks the key.

The answer is what the controller last decided for the deployment (`ServerLinks`, set
by the runtime that executed the decision, after gates and quarantine): the version, and
the traffic split the server applies to its own requests; a controller that restarted
and has not listed the workload yet answers the version its status row records as
applied (with no split), and otherwise asks the server to try again shortly (503).

A report carries the split the replica applies and its prediction counters (Prometheus
text, at most `METRICS_MAX_CHARS`), checked here: a report that is not what a model
server sends is a 422 that says what is wrong, and nothing of it is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.core.manifest import ManifestSnapshot
from controller.core.records import DeploymentStatus, Sync
from controller.core.serverkeys import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_signature,
    deployment_key,
)
from controller.runtimes.counters import Counters, CountersError, parse_counters
from controller.runtimes.link import AppliedTraffic, DesiredModel, LinkTraffic, ServerLinks
from controller.service.errors import (
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    UnauthorizedError,
)

# A server's prediction families are a few kilobytes per loaded version.
METRICS_MAX_CHARS = 131_072


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CanaryIn(_Strict):
    version: str = Field(min_length=1, max_length=64)
    weight: int = Field(ge=0, le=100)


class ShadowIn(_Strict):
    version: str = Field(min_length=1, max_length=64)
    percent: int = Field(ge=0, le=100)


class TrafficIn(_Strict):
    """The split a replica applies (`null` roles: none)."""

    canary: CanaryIn | None = None
    shadow: ShadowIn | None = None

    def applied(self) -> AppliedTraffic:
        return AppliedTraffic(
            self.canary.version if self.canary else None,
            self.canary.weight if self.canary else 0,
            self.shadow.version if self.shadow else None,
            self.shadow.percent if self.shadow else 0,
        )


class ReplicaReportIn(_Strict):
    """Body of `POST /api/servers/{deployment}/report`."""

    replica: str = Field(min_length=1, max_length=253)
    served_version: str | None = Field(default=None, max_length=64)
    ready: bool
    revision: str | None = Field(default=None, max_length=253)
    detail: str | None = Field(default=None, max_length=1000)
    traffic: TrafficIn | None = None
    # Cumulative prediction counters, Prometheus text (docs/server-contract.md).
    metrics: str | None = Field(default=None, max_length=METRICS_MAX_CHARS)


def traffic_json(traffic: LinkTraffic | None) -> dict[str, dict[str, object] | None] | None:
    """The answer's `traffic`: each role's version and share, or null; null altogether
    when the controller does not say (the server keeps its split)."""
    if traffic is None:
        return None
    canary, shadow = traffic.canary, traffic.shadow
    return {
        "canary": (
            {"model_uri": canary.model_uri, "version": canary.version, "weight": canary.share}
            if canary
            else None
        ),
        "shadow": (
            {"model_uri": shadow.model_uri, "version": shadow.version, "percent": shadow.share}
            if shadow
            else None
        ),
    }


class ServerLinkService:
    def __init__(
        self,
        links: ServerLinks,
        secret: str,
        manifests: Callable[[], ManifestSnapshot],
        status: Callable[[str], DeploymentStatus | None],
    ) -> None:
        self.links = links
        self._secret = secret
        self._manifests = manifests
        self._status = status

    def authenticate(
        self,
        deployment: str,
        headers: Mapping[str, str],
        method: str,
        target: str,
        body: bytes,
    ) -> None:
        """Refuse (401) unless the request is signed with `deployment`'s key, in time."""
        refused = check_signature(
            deployment_key(self._secret, deployment),
            headers.get(TIMESTAMP_HEADER),
            headers.get(SIGNATURE_HEADER),
            method,
            target,
            body,
        )
        if refused is not None:
            raise UnauthorizedError(str(refused.value))

    def model(
        self, deployment: str, revision: str | None = None
    ) -> tuple[DesiredModel, LinkTraffic | None]:
        """The version `deployment`'s servers (of `revision`) serve, and their split; None
        for the split when this process has not decided one (a restarted controller
        answering from its status row, before it read the app's tags): the servers keep
        the split they apply rather than drop a canary in progress."""
        desired = self.links.desired(deployment, revision)
        if desired is not None:
            return desired, self.links.traffic(deployment)
        if deployment not in self._manifests().deployments:
            raise NotFoundError(f"the controller has no deployment named {deployment!r}")
        status = self._status(deployment)
        if (
            status is not None
            and status.sync is Sync.SYNCED
            and status.model_name
            and status.served_version
        ):
            version = status.served_version
            return DesiredModel(f"models:/{status.model_name}/{version}", version), None
        raise NotReadyError(
            f"the controller has not decided what {deployment!r} serves yet; ask again shortly"
        )

    def report(self, deployment: str, raw: bytes) -> None:
        if deployment not in self._manifests().deployments:
            raise NotFoundError(f"the controller has no deployment named {deployment!r}")
        try:
            report = ReplicaReportIn.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidRequestError(problems) from None
        counters: Counters | None = None
        if report.metrics is not None:
            try:
                counters = parse_counters(report.metrics)
            except CountersError as exc:
                raise InvalidRequestError(f"metrics: {exc}") from None
        self.links.report(
            deployment,
            report.replica,
            report.served_version,
            report.ready,
            report.revision,
            report.detail,
            report.traffic.applied() if report.traffic is not None else None,
            counters,
        )
