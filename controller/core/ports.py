"""The seams between the controller's logic and the outside world.

Each outside system sits behind one small protocol of ours, with the real adapter in its
own package (`runtimes/`, `registry/`, `manifests/`, `store/`) and, where tests need it,
an in-memory one beside it. The reconciler only ever sees these protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from controller.core.manifest import ManifestSnapshot
from controller.core.records import (
    Bake,
    BakeState,
    DeploymentStatus,
    NotificationDelivery,
    SyncRecord,
)
from controller.core.types import ActualState, DesiredState, Notification, Traffic

QUARANTINE_TAG = "aliasflow.quarantined"


@dataclass(frozen=True)
class ModelVersionInfo:
    model_name: str
    version: str
    run_id: str | None
    status: str = "READY"
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def quarantined(self) -> str | None:
        """Why the version is quarantined (the tag's value), or None when it is not."""
        reason = self.tags.get(QUARANTINE_TAG)
        return None if reason is None else reason or "quarantined"


# model name -> alias -> version
AliasMaps = dict[str, dict[str, str]]


class Runtime(Protocol):
    """One serving target (local, docker, aci).

    Runtimes only ever touch workloads they own (state file / Docker labels / ACI tags).
    They execute what the planner decided and nothing more: readiness and the
    served-version check are the reconciler's health gate. Every method raises
    `TemporaryError` or `PermanentError` subclasses, never an SDK's exception.
    """

    kind: str

    def observe(self, name: str) -> ActualState | None:
        """The workload's state including what its server says it serves."""
        ...

    def list_owned(self) -> list[ActualState]:
        """Every owned workload, as cheaply as the target allows (the full pass)."""
        ...

    def deploy(self, desired: DesiredState) -> ActualState:
        """Create the workload, or replace the one there, so that it runs `desired`."""
        ...

    def hotswap(self, desired: DesiredState, current: ActualState | None = None) -> ActualState:
        """Ask the running server to load `desired.model_version` beside the old one."""
        ...

    def set_traffic(
        self, desired: DesiredState, traffic: Traffic, current: ActualState | None = None
    ) -> ActualState:
        """Tell the running server how to split requests (canary) and mirror them (shadow)."""
        ...

    def set_api_keys(
        self, desired: DesiredState, current: ActualState | None = None
    ) -> ActualState:
        """Give the running server `desired.api_keys` (a signed admin request, no restart)."""
        ...

    def delete(self, name: str) -> None:
        """Remove an owned workload; unknown is a no-op."""
        ...


@runtime_checkable
class CountingRuntime(Protocol):
    """A runtime whose servers the controller cannot read one by one (Container Apps
    replicas behind one ingress) answers their prediction counters itself: every
    server's, summed, as the Prometheus text one server's `/metrics` would be. The
    analysis and the traffic view read these instead of the endpoint's `/metrics`."""

    def server_metrics(self, name: str) -> str | None:
        """The deployment's summed counters, or None when none are known."""
        ...


class Registry(Protocol):
    def resolve_alias(self, model_name: str, alias: str) -> ModelVersionInfo:
        """Raises AliasNotFoundError, ModelNotFoundError or RegistryUnavailableError."""
        ...

    def get_version(self, model_name: str, version: str) -> ModelVersionInfo:
        """Raises ModelNotFoundError or RegistryUnavailableError."""
        ...

    def alias_maps(self) -> AliasMaps:
        """Every registered model's aliases, one search call per page of 1000 models."""
        ...

    def set_alias(self, model_name: str, alias: str, version: str) -> None: ...

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The run's latest metrics; {} for a run that logged none."""
        ...

    def set_version_tag(self, model_name: str, version: str, key: str, value: str) -> None: ...

    def quarantined_versions(self, model_name: str) -> dict[str, str]:
        """Version -> why it is quarantined, for every quarantined version of the model."""
        ...


class ManifestSource(Protocol):
    """Desired state as a snapshot per revision: reads are free, refreshes do the I/O."""

    def snapshot(self) -> ManifestSnapshot:
        """The last snapshot read (read once on first use)."""
        ...

    def refresh(self) -> ManifestSnapshot:
        """Re-read the manifests; unchanged files are not parsed again."""
        ...

    def pull(self) -> bool:
        """Bring a remote checkout up to date; True when it moved."""
        ...


class HistoryStore(Protocol):
    """Status rows (one per deployment), sync history and webhook delivery ids."""

    error: str | None

    def begin_sync(self, record: SyncRecord) -> SyncRecord: ...

    def finish_sync(self, record: SyncRecord) -> None: ...

    def running_deployments(self) -> list[str]: ...

    def mark_interrupted(self, now: float | None = None) -> int: ...

    def history(self, deployment: str, limit: int = 50) -> list[SyncRecord]: ...

    def latest_syncs(self) -> dict[str, SyncRecord]: ...

    def put_status(self, status: DeploymentStatus) -> None: ...

    def get_status(self, name: str) -> DeploymentStatus | None: ...

    def list_status(self) -> list[DeploymentStatus]: ...

    def delete_status(self, name: str) -> None: ...

    def remember_delivery(
        self, delivery_id: str, outcome: str, now: float | None = None
    ) -> bool: ...

    def forget_deliveries_before(self, cutoff: float) -> int: ...

    def delivery_counts(self) -> dict[str, int]: ...

    def put_bake(self, bake: Bake) -> None: ...

    def get_bake(self, deployment: str) -> Bake | None: ...

    def bakes(self, states: tuple[BakeState, ...] = ()) -> list[Bake]: ...

    def record_notification(self, delivery: NotificationDelivery) -> None: ...

    def notifications(self, limit: int = 50) -> list[NotificationDelivery]: ...

    def probe(self) -> bool: ...

    def close(self) -> None: ...


class Notifier(Protocol):
    """Tells people (Teams, Slack, a webhook) what happened; never blocks a rollout."""

    def notify(self, notification: Notification) -> None: ...


class SilentNotifier:
    """For controllers with no notification target configured."""

    def notify(self, notification: Notification) -> None:
        return None
