"""Value types the controller works on: what should run, what does run, what to do.

They are plain frozen dataclasses and string enums so that `plan()` stays a pure function
that tests can drive with literal tables, without MLflow, a runtime or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from controller.core.records import Reason, Result


class TargetKind(StrEnum):
    LOCAL = "local"
    ACI = "aci"
    DOCKER = "docker"
    CONTAINERAPP = "containerapp"


class Strategy(StrEnum):
    HOTSWAP = "hotswap"
    RECREATE = "recreate"
    # The server sends a share of requests to the new version, step by step.
    CANARY = "canary"


class OnFailure(StrEnum):
    """What a refused or rolled-back promotion does to the alias."""

    REVERT = "revert"
    HOLD = "hold"


class Trigger(StrEnum):
    """What started a reconcile; recorded in history and used as a metrics label."""

    WEBHOOK = "webhook"
    POLL = "poll"
    GIT = "git"
    MANUAL = "manual"
    RESTART = "restart"
    ROLLBACK = "rollback"
    # The analysis of a promotion failed: the rollback it asks for.
    ANALYSIS = "analysis"


class Operation(StrEnum):
    CREATE = "create"
    # An in-place update: the workload is re-deployed where it is (on ACI one PUT, which
    # restarts its containers; elsewhere blue/green).
    RECREATE = "recreate"
    # Delete, then create: for what a target cannot change on an existing workload (on ACI
    # CPU, memory, GPU, OS type, restart policy, network profile, zones, location). The
    # workload is down between the two.
    REPLACE = "replace"
    HOTSWAP = "hotswap"
    # Start a canary: the server loads the new version beside the served one and sends
    # it the first step's share of requests.
    CANARY = "canary"
    # Change only the shadow (the version requests are mirrored to).
    TRAFFIC = "traffic"
    # Give the running server the client API keys (`spec.auth.apiKeys`), no restart.
    KEYS = "keys"
    DELETE = "delete"
    NOOP = "noop"


@dataclass(frozen=True)
class DesiredState:
    """A manifest with its alias resolved to one model version."""

    name: str
    target_kind: TargetKind
    model_name: str
    model_version: str
    run_id: str | None
    image: str
    port: int
    cpu: float
    memory_gb: float
    env: tuple[tuple[str, str], ...]
    strategy: Strategy
    health_timeout_seconds: int
    self_heal: bool = True
    automated: bool = True
    alias: str | None = None
    # Resolved secret values: only ever passed to the runtime, never shown or stored.
    secret_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # A digest of everything that shapes the workload except the model version, so a
    # version change can hot swap while any other change must recreate.
    spec_hash: str = ""
    target_settings: tuple[tuple[str, str], ...] = ()
    prune: bool = True
    # Why this version is quarantined (MLflow tag aliasflow.quarantined), when it is.
    quarantined: str | None = None
    # A watched promotion: the server keeps the replaced version for a quick rollback.
    keep_previous: bool = False
    # A digest of the part of the spec the target cannot change on an existing workload
    # (part of `spec_hash` too); "" for targets that can change everything in place.
    immutable_hash: str = ""
    # Canary steps as (weight %, seconds), for strategy canary.
    steps: tuple[tuple[int, int], ...] = ()
    # The version requests are mirrored to (the shadow alias's), and the share mirrored.
    shadow_version: str | None = None
    shadow_percent: int = 0
    # ACI's TLS sidecar: (certificate PEM, key PEM), resolved from the controller's
    # environment; only ever passed to the runtime, never shown or stored.
    tls: tuple[str, str] | None = field(default=None, repr=False)
    # `spec.auth.apiKeys`, resolved: the keys clients must send (never shown or stored),
    # and their fingerprint as the server reports it ("" for none).
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    api_keys_fingerprint: str = ""

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.model_version}"

    @property
    def shadow_uri(self) -> str | None:
        if self.shadow_version is None:
            return None
        return f"models:/{self.model_name}/{self.shadow_version}"

    @property
    def secret_values(self) -> list[str]:
        """What must never appear in a log line or a status message."""
        return [value for _, value in self.secret_env if value] + list(self.api_keys)


@dataclass(frozen=True)
class ActualState:
    """What a runtime reports for one owned workload."""

    name: str
    spec_hash: str
    # The version the workload was last set to by the controller (state file / tag).
    model_version: str | None
    running: bool
    endpoint: str | None = None
    # What the server itself says it serves (/metadata); None when it did not answer.
    served_version: str | None = None
    ready: bool = False
    detail: str = ""
    # The `immutable_hash` the workload was made with; "" when the runtime does not record
    # one or the workload predates it (unknown: never a reason to replace).
    immutable_hash: str = ""
    # What the server says about its traffic: the canary's version and share, the
    # shadow's version and share (None / 0 when absent, or not observed).
    canary_version: str | None = None
    canary_weight: int = 0
    shadow_version: str | None = None
    shadow_percent: int = 0
    # The server was started with the controller's shared admin token (before per-
    # deployment keys and signed requests): it cannot be told anything, only recreated.
    legacy_admin_key: bool = False
    # The fingerprint of the client API keys the server holds ("" none; None: not reported).
    api_keys: str | None = None


@dataclass(frozen=True)
class Action:
    operation: Operation
    name: str
    reason: str
    desired: DesiredState | None = None
    actual: ActualState | None = None

    @property
    def changes_anything(self) -> bool:
        return self.operation is not Operation.NOOP


@dataclass(frozen=True)
class Traffic:
    """How a server splits requests: a canary's share and a mirrored shadow's (the whole
    split, not a change: what is absent here is removed from the server)."""

    canary_uri: str | None = None
    weight: int = 0
    shadow_uri: str | None = None
    percent: int = 0

    @classmethod
    def for_step(cls, desired: DesiredState, step: int) -> Traffic:
        """The desired version as the canary at `step` (0-based), with the desired shadow."""
        return cls(
            desired.model_uri, desired.steps[step][0], desired.shadow_uri, desired.shadow_percent
        )

    @classmethod
    def without_canary(cls, desired: DesiredState) -> Traffic:
        return cls(None, 0, desired.shadow_uri, desired.shadow_percent)


@dataclass(frozen=True)
class Outcome:
    """How one reconcile ended, for the work queue (retry or not) and the caller."""

    name: str
    action: Operation
    result: Result
    message: str
    reason: Reason | None = None
    retry: bool = False


class NotificationEvent(StrEnum):
    PROMOTION_STARTED = "promotion.started"
    PROMOTION_SUCCEEDED = "promotion.succeeded"
    PROMOTION_REFUSED = "promotion.refused"
    PROMOTION_ROLLED_BACK = "promotion.rolled_back"
    DEPLOYMENT_DEGRADED = "deployment.degraded"
    DEPLOYMENT_RECOVERED = "deployment.recovered"


@dataclass(frozen=True)
class Notification:
    """One thing that happened to a deployment that people want to hear about."""

    event: NotificationEvent
    deployment: str
    model_name: str | None
    alias: str | None
    from_version: str | None
    to_version: str | None
    reason: Reason | None
    message: str
    at: float

    def body(self) -> dict[str, object]:
        """The JSON body of the generic webhook (the contract receivers rely on)."""
        return {
            "event": self.event.value,
            "deployment": self.deployment,
            "model": {
                "name": self.model_name,
                "alias": self.alias,
                "from_version": self.from_version,
                "to_version": self.to_version,
            },
            "reason": None if self.reason is None else self.reason.value,
            "message": self.message,
            "at": self.at,
        }
