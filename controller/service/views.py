"""What the API and the dashboard show, assembled from the snapshot and the store.

A manifest that does not validate is a row of its own (sync `Invalid`, with the file,
field and message), under the name it declares, or under its file when it declares none:
a broken manifest must be visible where people look, not only in a log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from controller.core.manifest import LoadedManifest, ManifestError, ManifestSnapshot
from controller.core.records import DeploymentStatus, Health, Reason, Sync, SyncRecord


@dataclass(frozen=True)
class DeploymentView:
    status: DeploymentStatus
    last_sync: SyncRecord | None
    loaded: LoadedManifest | None
    errors: tuple[ManifestError, ...] = ()


def deployment_views(
    snapshot: ManifestSnapshot,
    statuses: Mapping[str, DeploymentStatus],
    latest: Mapping[str, SyncRecord],
) -> list[DeploymentView]:
    """Every deployment with a manifest, a status row or an invalid manifest, by name."""
    invalid = invalid_manifests(snapshot.errors)
    names = sorted(set(snapshot.deployments) | set(statuses) | set(invalid))
    views = []
    for name in names:
        loaded = snapshot.deployments.get(name)
        status = statuses.get(name) or pending_status(name, loaded)
        errors = tuple(invalid.get(name, ()))
        if errors and loaded is None:
            status = invalid_status(status, errors)
        views.append(DeploymentView(status, latest.get(name), loaded, errors))
    return views


def invalid_manifests(errors: list[ManifestError]) -> dict[str, list[ManifestError]]:
    """Errors by the row that shows them: the declared name, else the file."""
    rows: dict[str, list[ManifestError]] = {}
    for error in errors:
        rows.setdefault(error.name or error.file, []).append(error)
    return rows


def invalid_status(status: DeploymentStatus, errors: tuple[ManifestError, ...]) -> DeploymentStatus:
    """The last known facts (a workload may still serve), marked as not comparable."""
    return replace(
        status,
        sync=Sync.INVALID,
        reason=Reason.MANIFEST_INVALID,
        message="; ".join(str(error) for error in errors),
    )


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
