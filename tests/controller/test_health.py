"""The health gate: ready and serving the desired version and, after a change of the
shadow, mirroring to it (servers that apply a split on their own poll are not done when
it was asked for)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.core.errors import HealthTimeoutError
from controller.core.types import ActualState
from controller.reconcile.health import wait_until_serving
from controller.runtimes.memory import MemoryRuntime
from tests.controller.test_plan import DESIRED, IN_SYNC

SHADOWED = replace(DESIRED, shadow_version="3", shadow_percent=100, health_timeout_seconds=1)


class Lagging(MemoryRuntime):
    """Serves the desired version at once; mirrors to the shadow from look `shadow_from`."""

    def __init__(self, shadow_from: int) -> None:
        super().__init__()
        self.looks = 0
        self.shadow_from = shadow_from

    def observe(self, name: str) -> ActualState | None:
        self.looks += 1
        if self.looks >= self.shadow_from:
            return replace(IN_SYNC, shadow_version="3", shadow_percent=100)
        return IN_SYNC


def test_the_gate_waits_for_the_shadow_only_when_asked() -> None:
    assert wait_until_serving(Lagging(3), SHADOWED, 0.01) == IN_SYNC
    runtime = Lagging(3)
    applied = wait_until_serving(runtime, SHADOWED, 0.01, shadow=True)
    assert (applied.shadow_version, runtime.looks) == ("3", 3)


def test_a_shadow_never_applied_times_out_saying_so() -> None:
    with pytest.raises(HealthTimeoutError, match=r"with shadow 3 .*shadow none"):
        wait_until_serving(Lagging(10**6), SHADOWED, 0.05, shadow=True)
