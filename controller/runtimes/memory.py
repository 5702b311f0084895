"""An in-memory runtime for reconciler tests: the `Runtime` contract without processes.

Like httpx's mock transport, it ships beside the real implementations so tests drive
the real reconciler through our own seam instead of patching SDKs. It behaves like the
local runtime where the reconciler can tell: CREATE/RECREATE replace the workload (a
failed one leaves the old workload as it was), HOTSWAP changes the recorded and served
version (a refused one leaves both), DELETE forgets it. Tests steer it with a few knobs:
queued failures, versions that never load, out-of-band kills and drift, and an outage
switch. Every write is recorded in `calls` as (operation, name).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from controller.core.errors import (
    ControllerError,
    HealthTimeoutError,
    RolloutRejectedError,
    RuntimeUnavailableError,
)
from controller.core.types import ActualState, DesiredState, Operation, Traffic


@dataclass(frozen=True)
class _Failure:
    operation: Operation
    name: str | None
    error: ControllerError


class MemoryRuntime:
    def __init__(self, kind: str = "local") -> None:
        self.kind = kind
        self.workloads: dict[str, ActualState] = {}
        #: Every write, in order (including ones that failed): a deploy onto nothing is a
        #: CREATE, onto an existing workload a RECREATE.
        self.calls: list[tuple[Operation, str]] = []
        #: Every name deleted.
        self.deleted: list[str] = []
        #: False makes every call raise RuntimeUnavailableError, like a runtime outage.
        self.available = True
        #: Versions whose server never loads: create/recreate/hotswap to them is refused.
        self.rejected_versions: set[str] = set()
        self._failures: list[_Failure] = []
        self._generation = 0
        self._lock = threading.Lock()

    # -- knobs for tests ------------------------------------------------------------------

    def fail_next(
        self,
        operation: Operation,
        error: ControllerError | None = None,
        name: str | None = None,
    ) -> None:
        """Make the next `operation` (on `name`, or any name) raise `error` once.

        The default error is what the real runtime raises for that operation: a refused
        hot swap, or a new workload that never became healthy.
        """
        if error is None:
            error = (
                RolloutRejectedError("hot swap refused (test)")
                if operation is Operation.HOTSWAP
                else HealthTimeoutError(f"{operation} did not become healthy (test)")
            )
        with self._lock:
            self._failures.append(_Failure(operation, name, error))

    def kill(self, name: str, detail: str = "killed out of band (test)") -> None:
        """The workload's process dies: still owned, no longer running."""
        with self._lock:
            self.workloads[name] = replace(
                self.workloads[name], running=False, ready=False, served_version=None, detail=detail
            )

    def serve(self, name: str, version: str | None) -> None:
        """The server reports `version` (drift, e.g. it restarted on its boot version)."""
        with self._lock:
            self.workloads[name] = replace(self.workloads[name], served_version=version)

    def remove(self, name: str) -> None:
        """The workload disappears entirely (deleted by hand)."""
        with self._lock:
            self.workloads.pop(name, None)

    def add(
        self,
        name: str,
        spec_hash: str,
        model_version: str,
        served_version: str | None = None,
        running: bool = True,
    ) -> ActualState:
        """Seed an owned workload, as a controller restart would find it."""
        state = ActualState(
            name=name,
            spec_hash=spec_hash,
            model_version=model_version,
            running=running,
            endpoint=self._endpoint(),
            served_version=(served_version or model_version) if running else None,
            ready=running,
        )
        with self._lock:
            self.workloads[name] = state
        return state

    def operations(self) -> list[tuple[Operation, str]]:
        with self._lock:
            return list(self.calls)

    # -- Runtime protocol -----------------------------------------------------------------

    def observe(self, name: str) -> ActualState | None:
        self._check_available()
        with self._lock:
            return self.workloads.get(name)

    def list_owned(self) -> list[ActualState]:
        self._check_available()
        with self._lock:
            return [self.workloads[name] for name in sorted(self.workloads)]

    def deploy(self, desired: DesiredState) -> ActualState:
        with self._lock:
            exists = desired.name in self.workloads
            operation = Operation.RECREATE if exists else Operation.CREATE
            self.calls.append((operation, desired.name))
        self._check_available()
        self._raise_queued_failure(operation, desired.name)
        return self._roll_out(desired)

    def hotswap(self, desired: DesiredState, current: ActualState | None = None) -> ActualState:
        with self._lock:
            self.calls.append((Operation.HOTSWAP, desired.name))
        self._check_available()
        self._raise_queued_failure(Operation.HOTSWAP, desired.name)
        return self._hotswap(desired)

    def set_api_keys(
        self, desired: DesiredState, current: ActualState | None = None
    ) -> ActualState:
        """The keys' fingerprint as the server would report it."""
        with self._lock:
            self.calls.append((Operation.KEYS, desired.name))
        self._check_available()
        self._raise_queued_failure(Operation.KEYS, desired.name)
        with self._lock:
            workload = self.workloads.get(desired.name)
            if workload is None or not workload.running:
                raise RuntimeUnavailableError(f"{desired.name}: no running server (test)")
            updated = replace(workload, api_keys=desired.api_keys_fingerprint)
            self.workloads[desired.name] = updated
            return updated

    def set_traffic(
        self, desired: DesiredState, traffic: Traffic, current: ActualState | None = None
    ) -> ActualState:
        """The split as the server keeps it: the canary's version and share, the shadow's."""
        with self._lock:
            self.calls.append((Operation.TRAFFIC, desired.name))
        self._check_available()
        self._raise_queued_failure(Operation.TRAFFIC, desired.name)
        with self._lock:
            workload = self.workloads.get(desired.name)
            if workload is None or not workload.running:
                raise RuntimeUnavailableError(f"{desired.name}: no running server (test)")
            canary = _version_of(traffic.canary_uri)
            if canary is not None and canary in self.rejected_versions:
                raise RolloutRejectedError(f"{desired.name}: the server refused {canary} (test)")
            shadow = _version_of(traffic.shadow_uri)
            updated = replace(
                workload,
                canary_version=canary,
                canary_weight=traffic.weight if canary else 0,
                shadow_version=shadow,
                shadow_percent=traffic.percent if shadow else 0,
            )
            self.workloads[desired.name] = updated
            return updated

    def delete(self, name: str) -> None:
        with self._lock:
            self.calls.append((Operation.DELETE, name))
        self._check_available()
        with self._lock:
            self.deleted.append(name)
            self.workloads.pop(name, None)

    def stop_all(self) -> None:
        for name in list(self.workloads):
            self.delete(name)

    # -- behaviour ------------------------------------------------------------------------

    def _roll_out(self, desired: DesiredState) -> ActualState:
        if desired.model_version in self.rejected_versions:
            raise RolloutRejectedError(
                f"{desired.name}: the server for {desired.model_uri} exited before it was "
                "ready (test); the previous server keeps serving"
            )
        state = ActualState(
            name=desired.name,
            spec_hash=desired.spec_hash,
            model_version=desired.model_version,
            running=True,
            endpoint=self._endpoint(),
            served_version=desired.model_version,
            ready=True,
            immutable_hash=desired.immutable_hash,
        )
        with self._lock:
            self.workloads[desired.name] = state
        return state

    def _hotswap(self, desired: DesiredState) -> ActualState:
        with self._lock:
            current = self.workloads.get(desired.name)
        if current is None or not current.running:
            raise RuntimeUnavailableError(
                f"{desired.name}: no running server to hot swap; it needs a recreate"
            )
        if desired.model_version in self.rejected_versions:
            raise RolloutRejectedError(
                f"{desired.name}: the server refused {desired.model_uri} (test); "
                f"version {current.model_version} keeps serving"
            )
        promoted = current.canary_version == desired.model_version
        swapped = replace(
            current,
            model_version=desired.model_version,
            served_version=desired.model_version,
            # A swap to the canary's version promotes it: the canary role is gone.
            canary_version=None if promoted else current.canary_version,
            canary_weight=0 if promoted else current.canary_weight,
        )
        with self._lock:
            self.workloads[desired.name] = swapped
        return swapped

    def _raise_queued_failure(self, operation: Operation, name: str) -> None:
        with self._lock:
            for failure in self._failures:
                if failure.operation is operation and failure.name in (None, name):
                    self._failures.remove(failure)
                    raise failure.error

    def _check_available(self) -> None:
        if not self.available:
            raise RuntimeUnavailableError("runtime unavailable (test)")

    def _endpoint(self) -> str:
        with self._lock:
            self._generation += 1
            return f"memory://{self.kind}/{self._generation}"


def _version_of(uri: str | None) -> str | None:
    return None if uri is None else uri.rsplit("/", 1)[-1]
