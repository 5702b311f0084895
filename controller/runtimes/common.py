"""Pieces every runtime's `apply` needs in the same form."""

from __future__ import annotations

import threading

from controller.errors import InvalidSpecError
from controller.manifests.model import DNS_LABEL
from controller.reconcile.types import Action, DesiredState


def desired_for(action: Action, kind: str) -> DesiredState:
    """The desired state a create/recreate/hotswap carries, checked to be this runtime's.

    Deployment names become file, container and container-group names, so they must be
    DNS labels here as in manifests.
    """
    desired = action.desired
    if desired is None:
        raise InvalidSpecError(f"{action.name}: {action.operation} needs a desired state")
    if desired.target_kind != kind:
        raise InvalidSpecError(
            f"{desired.name}: target kind {desired.target_kind!r} sent to the {kind} runtime"
        )
    if not DNS_LABEL.match(desired.name):
        raise InvalidSpecError(f"{desired.name!r} is not a DNS label")
    return desired


class NameLocks:
    """One lock per deployment: the reconciler runs one pass per deployment at a time,
    and this makes it a fact inside the runtime too."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())
