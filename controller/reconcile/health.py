"""The health gate: the only thing that advances what a deployment is recorded as serving."""

from __future__ import annotations

import time

from controller.core.errors import HealthTimeoutError
from controller.core.ports import Runtime
from controller.core.types import ActualState, DesiredState


def wait_until_serving(
    runtime: Runtime, desired: DesiredState, poll_interval: float
) -> ActualState:
    """Ready and serving the desired version within the manifest's timeout, or failed."""
    deadline = time.monotonic() + desired.health_timeout_seconds
    while True:
        last = runtime.observe(desired.name)
        if last is not None and last.ready and last.served_version == desired.model_version:
            return last
        if time.monotonic() >= deadline:
            seen = (
                "no workload"
                if last is None
                else f"ready={last.ready}, serving {last.served_version or 'nothing'}"
            )
            raise HealthTimeoutError(
                f"not serving version {desired.model_version} after "
                f"{desired.health_timeout_seconds}s ({seen})"
            )
        time.sleep(poll_interval)
