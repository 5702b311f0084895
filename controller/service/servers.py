"""The controller's side of the server link: which version to serve, and replica reports.

docs/server-contract.md, "The server asks the controller": a linked model server asks
`GET /api/servers/{deployment}/model` at boot and on every poll, and reports
`POST /api/servers/{deployment}/report`. Both are signed with the deployment's own key
(`core/serverkeys.py`), checked before anything else, so that an unknown deployment and
a wrong key look alike to whoever lacks the key.

The answer is what the controller last decided for the deployment (`ServerLinks`, set
by the runtime that executed the decision, after gates and quarantine); a controller
that restarted and has not listed the workload yet answers the version its status row
records as applied, and otherwise asks the server to try again shortly (503).
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
from controller.runtimes.link import DesiredModel, ServerLinks
from controller.service.errors import (
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    UnauthorizedError,
)


class ReplicaReportIn(BaseModel):
    """Body of `POST /api/servers/{deployment}/report`."""

    model_config = ConfigDict(extra="forbid")

    replica: str = Field(min_length=1, max_length=253)
    served_version: str | None = Field(default=None, max_length=64)
    ready: bool
    revision: str | None = Field(default=None, max_length=253)
    detail: str | None = Field(default=None, max_length=1000)


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

    def model(self, deployment: str, revision: str | None = None) -> DesiredModel:
        desired = self.links.desired(deployment, revision)
        if desired is not None:
            return desired
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
            return DesiredModel(f"models:/{status.model_name}/{version}", version)
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
        self.links.report(
            deployment,
            report.replica,
            report.served_version,
            report.ready,
            report.revision,
            report.detail,
        )
