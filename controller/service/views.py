"""What the API and the dashboard show, assembled from the snapshot and the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.manifest import LoadedManifest, ManifestSnapshot
from controller.core.records import DeploymentStatus, Health, Sync, SyncRecord


@dataclass(frozen=True)
class DeploymentView:
    status: DeploymentStatus
    last_sync: SyncRecord | None
    loaded: LoadedManifest | None


def deployment_views(
    snapshot: ManifestSnapshot,
    statuses: Mapping[str, DeploymentStatus],
    latest: Mapping[str, SyncRecord],
) -> list[DeploymentView]:
    """Every deployment with a manifest or a status row, by name."""
    names = sorted(set(snapshot.deployments) | set(statuses))
    views = []
    for name in names:
        loaded = snapshot.deployments.get(name)
        status = statuses.get(name) or pending_status(name, loaded)
        views.append(DeploymentView(status, latest.get(name), loaded))
    return views


def pending_status(name: str, loaded: LoadedManifest | None) -> DeploymentStatus:
    if loaded is None:
        return DeploymentStatus(name, Sync.UNKNOWN, Health.UNKNOWN, "no manifest")
    spec = loaded.deployment.spec
    return DeploymentStatus(
        name,
        Sync.UNKNOWN,
        Health.UNKNOWN,
        "waiting for the first reconcile",
        model_name=spec.model.name,
        alias=spec.model.alias,
        target_kind=spec.target.kind.value,
        image=spec.image,
    )
