"""What a canary step is called, in the bake's message, the status and the history."""

from __future__ import annotations

from controller.core.types import DesiredState


def step_message(desired: DesiredState, step: int) -> str:
    weight, seconds = desired.steps[step]
    return (
        f"canary of version {desired.model_version}: step {step + 1} of {len(desired.steps)}, "
        f"{weight}% of requests for at least {seconds}s"
    )
