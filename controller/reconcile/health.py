"""The health gate: the only thing that advances what a deployment is recorded as serving."""

from __future__ import annotations

import time

from controller.core.errors import HealthTimeoutError
from controller.core.ports import Runtime
from controller.core.types import ActualState, DesiredState
from controller.reconcile.plan import shadow_differs


def wait_until_serving(
    runtime: Runtime, desired: DesiredState, poll_interval: float, shadow: bool = False
) -> ActualState:
    """Ready and serving the desired version within the manifest's timeout, or failed;
    with `shadow`, mirroring to the desired shadow too (where servers apply a split on
    their own poll, the change is not done when it was asked for)."""
    deadline = time.monotonic() + desired.health_timeout_seconds
    while True:
        last = runtime.observe(desired.name)
        if (
            last is not None
            and last.ready
            and last.served_version == desired.model_version
            and not (shadow and shadow_differs(desired, last))
        ):
            return last
        if time.monotonic() >= deadline:
            seen = (
                "no workload"
                if last is None
                else f"ready={last.ready}, serving {last.served_version or 'nothing'}"
            )
            if shadow and last is not None:
                seen += f", shadow {last.shadow_version or 'none'}; {last.detail}".rstrip("; ")
            wanted = f" with shadow {desired.shadow_version or 'none'}" if shadow else ""
            raise HealthTimeoutError(
                f"not serving version {desired.model_version}{wanted} after "
                f"{desired.health_timeout_seconds}s ({seen})"
            )
        time.sleep(poll_interval)
