"""What every runtime does the same way: the server's environment, locks, redaction."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from controller.core.serverkeys import deployment_key
from controller.core.types import DesiredState

# Recorded on every workload (a state-file field, a label, a tag) whose server holds its
# own deployment key; a workload without it was started with the shared admin token.
ADMIN_KEY_SCHEME = "deployment-v1"


def server_key(secret: str, name: str) -> str:
    """The admin key of deployment `name`, the one every runtime gives its server and
    signs its admin requests with (derived from the controller's secret)."""
    return deployment_key(secret, name)


@dataclass(frozen=True)
class WorkloadEnv:
    """The model server's environment: `plain` may be shown, `secret` never.

    The runtime's own entries (which version it boots, where MLflow is, the admin key)
    are added here once; manifests cannot set the reserved ones (validation refuses them),
    and `MLFLOW_TRACKING_URI` from a manifest wins over the runtime's default.
    """

    plain: dict[str, str]
    secret: dict[str, str]

    def merged(self) -> dict[str, str]:
        return {**self.plain, **self.secret}


def workload_env(
    desired: DesiredState, *, tracking_uri: str | None, admin_token: str
) -> WorkloadEnv:
    """`admin_token` is the deployment's own key (`server_key`), never the secret."""
    plain = dict(desired.env)
    secret = dict(desired.secret_env)
    if tracking_uri and "MLFLOW_TRACKING_URI" not in plain | secret:
        plain["MLFLOW_TRACKING_URI"] = tracking_uri
    # MODEL_URI pins the version the server boots with: a restarted server comes back on
    # a known version, and the controller swaps again if that is not the desired one.
    plain["MODEL_URI"] = desired.model_uri
    secret["ALIASFLOW_ADMIN_TOKEN"] = admin_token
    if desired.api_keys:
        # The keys a (re)started server boots with; a change reaches a running server
        # through `PUT /admin/api-keys` instead (plan: Operation.KEYS), not a restart.
        secret["ALIASFLOW_API_KEYS"] = ",".join(desired.api_keys)
    return WorkloadEnv(plain, secret)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` (a log tail, an error) with every secret value replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class NameLocks:
    """One lock per deployment: the reconciler runs one pass per deployment at a time,
    and this makes it a fact inside the runtime too."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())
