"""The one interface every serving target implements (local, docker, aci).

Runtimes only ever touch workloads they own (state file / Docker labels / ACI tags).
`apply` performs one planned action; readiness and the served-version check are the
reconciler's health gate, not the runtime's.
"""

from __future__ import annotations

from typing import Protocol

from controller.reconcile.types import Action, ActualState


class Runtime(Protocol):
    kind: str

    def observe(self, name: str) -> ActualState | None: ...

    def list_owned(self) -> list[ActualState]: ...

    def apply(self, action: Action) -> ActualState | None:
        """Run one create/recreate/hotswap/delete. Raises TemporaryError or PermanentError."""
        ...

    def delete(self, name: str) -> None: ...
