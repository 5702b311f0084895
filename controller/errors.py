"""The controller's error tree; callers decide retry or report by the branch.

    ControllerError
    ├── PermanentError          report, do not retry until something changes
    │   ├── ModelNotFoundError      registered model or version does not exist
    │   ├── AliasNotFoundError      the alias a manifest follows is not set
    │   ├── InvalidSpecError        the runtime refuses the spec as written
    │   └── RolloutRejectedError    the new version failed to load or its checks
    └── TemporaryError          retry with backoff
        ├── RegistryUnavailableError  MLflow unreachable or answering 5xx
        ├── RuntimeUnavailableError   the runtime (ACI, Docker, ...) failed or throttled
        └── HealthTimeoutError        the workload did not become healthy in time

Adapters wrap SDK exceptions into these at the edge (`raise ... from exc`).
"""

from __future__ import annotations


class ControllerError(Exception):
    """Base of everything the controller raises on purpose."""


class PermanentError(ControllerError):
    pass


class TemporaryError(ControllerError):
    pass


class ModelNotFoundError(PermanentError):
    pass


class AliasNotFoundError(PermanentError):
    pass


class InvalidSpecError(PermanentError):
    pass


class RolloutRejectedError(PermanentError):
    """The server refused the new version; the old one keeps serving."""


class RegistryUnavailableError(TemporaryError):
    pass


class RuntimeUnavailableError(TemporaryError):
    pass


class HealthTimeoutError(TemporaryError):
    pass
