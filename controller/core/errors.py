"""The controller's error tree; callers decide retry or report by `retryable`, and
status and history record `reason`.

    ControllerError
    ├── PermanentError          report, do not retry until something changes
    │   ├── ModelNotFoundError      registered model or version does not exist
    │   ├── AliasNotFoundError      the alias a manifest follows is not set
    │   ├── RegistryRefusedError    MLflow refused the request (auth, bad input)
    │   ├── InvalidSpecError        the runtime refuses the spec as written
    │   ├── RolloutRejectedError    the new version failed to load or its checks
    │   ├── HealthTimeoutError      the workload did not become healthy in time
    │   ├── GateFailedError         the new version's run metrics miss a requirement
    │   └── QuarantinedError        the version was rolled back once and is quarantined
    └── TemporaryError          retry with backoff
        ├── RegistryUnavailableError  MLflow unreachable or answering 5xx
        ├── RuntimeUnavailableError   the runtime (ACI, Docker, ...) failed or throttled
        ├── StoreUnavailableError     the history database cannot be read or written
        └── GitUnavailableError       a git command failed or timed out

A health timeout is permanent: the same version would time out the same way on the next
timer tick, so it waits for a change (alias, manifest) or a person, like a rejection.
Adapters wrap SDK exceptions into these at the edge (`raise ... from exc`).
"""

from __future__ import annotations

from typing import ClassVar

from controller.core.records import Reason


class ControllerError(Exception):
    """Base of everything the controller raises on purpose."""

    reason: ClassVar[Reason] = Reason.INTERNAL_ERROR
    retryable: ClassVar[bool] = False


class PermanentError(ControllerError):
    retryable = False


class TemporaryError(ControllerError):
    retryable = True


class ModelNotFoundError(PermanentError):
    reason = Reason.MODEL_MISSING


class AliasNotFoundError(PermanentError):
    reason = Reason.ALIAS_MISSING


class RegistryRefusedError(PermanentError):
    """MLflow refused the request itself (4xx other than not-found: auth, bad input).

    Retrying the same request cannot succeed until configuration or input changes.
    """

    reason = Reason.REGISTRY_REFUSED


class InvalidSpecError(PermanentError):
    reason = Reason.SPEC_INVALID


class RolloutRejectedError(PermanentError):
    """The server refused the new version; the old one keeps serving."""

    reason = Reason.ROLLOUT_REJECTED


class HealthTimeoutError(PermanentError):
    reason = Reason.HEALTH_CHECK_FAILED


class GateFailedError(PermanentError):
    reason = Reason.GATE_FAILED


class QuarantinedError(PermanentError):
    reason = Reason.QUARANTINED


class RegistryUnavailableError(TemporaryError):
    reason = Reason.REGISTRY_UNAVAILABLE


class RuntimeUnavailableError(TemporaryError):
    reason = Reason.RUNTIME_UNAVAILABLE


class StoreUnavailableError(TemporaryError):
    """The history database cannot be read or written (down, disk full, read-only)."""

    reason = Reason.STORE_UNAVAILABLE


class GitUnavailableError(TemporaryError):
    """A git command failed or timed out; the message carries git's stderr (redacted)."""

    reason = Reason.GIT_UNAVAILABLE
