"""Whether a planned change may go ahead: the policy of one reconcile, as a pure function.

A plan says what would make the workload match the manifest; policy says whether to do
it now. Three rules, in this order: nothing to do is a success (recorded only when a
restarted controller re-runs a sync a stop interrupted, so its history says how that
sync ended; a person's "Sync now" that changes nothing adds no row); a
deployment whose manifest says `automated: false` waits for a person; and a rollout that
failed permanently (rejected, or not healthy in time) is not retried by a timer, only by
a change (alias, manifest) or a person.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from controller.core.records import Reason
from controller.core.types import Action, DesiredState, Trigger


@dataclass(frozen=True)
class Decision:
    proceed: bool
    # Whether the pass gets a history row (every rollout does; a no-op only on restart).
    record: bool
    reason: Reason


def decide(action: Action, *, automated: bool, trigger: Trigger, failed_before: bool) -> Decision:
    asked = trigger is Trigger.MANUAL
    if not action.changes_anything:
        return Decision(False, trigger is Trigger.RESTART, Reason.SUCCEEDED)
    if not automated and not asked:
        return Decision(False, False, Reason.NOT_AUTOMATED)
    if failed_before and not asked:
        return Decision(False, False, Reason.PREVIOUSLY_FAILED)
    return Decision(True, True, Reason.PROGRESSING)


class KnownFailures:
    """What each deployment's last permanently failed rollout was: its spec hash, version
    and whether that version was quarantined (clearing the quarantine is a change too)."""

    def __init__(self) -> None:
        self._failed: dict[str, tuple[str, str, bool]] = {}
        self._lock = threading.Lock()

    def remember(self, desired: DesiredState) -> None:
        with self._lock:
            self._failed[desired.name] = _key(desired)

    def forget(self, name: str) -> None:
        with self._lock:
            self._failed.pop(name, None)

    def failed_before(self, desired: DesiredState) -> bool:
        with self._lock:
            return self._failed.get(desired.name) == _key(desired)


def _key(desired: DesiredState) -> tuple[str, str, bool]:
    return (desired.spec_hash, desired.model_version, desired.quarantined is not None)
