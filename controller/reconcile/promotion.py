"""Before a new version rolls out: is it quarantined, and does it pass its gates?

Runs only when a rollout would change the version a deployment serves (a promotion),
never for a spec change or a self-heal back to the recorded version. A refused version
never reaches the runtime: the old one keeps serving. With `onFailure: revert` the
alias goes back to the served version in MLflow, so the registry tells the truth about
what serves again; with `hold` the alias stays and the status says why nothing moved.
"""

from __future__ import annotations

import logging

from controller.core.errors import ControllerError, GateFailedError, QuarantinedError
from controller.core.manifest import LoadedManifest
from controller.core.ports import Registry
from controller.core.types import ActualState, DesiredState, OnFailure
from controller.reconcile.gates import evaluate

log = logging.getLogger("aliasflow.reconcile")


def served_version(actual: ActualState | None) -> str | None:
    """What the deployment serves now: the server's word, else what was last recorded."""
    if actual is None:
        return None
    return actual.served_version or actual.model_version


def is_promotion(desired: DesiredState, actual: ActualState | None) -> bool:
    return actual is None or actual.model_version != desired.model_version


class PromotionCheck:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def check(
        self, loaded: LoadedManifest, desired: DesiredState, actual: ActualState | None
    ) -> None:
        """Raise QuarantinedError or GateFailedError (after a revert) when it may not roll out."""
        if not is_promotion(desired, actual):
            return
        served = served_version(actual)
        if desired.quarantined is not None:
            raise QuarantinedError(
                f"version {desired.model_version} of {desired.model_name} is quarantined "
                f"({desired.quarantined}); version {served or 'nothing'} keeps serving. Clear "
                f"it with: aliasflow unquarantine {desired.model_name} {desired.model_version}"
            )
        promotion = loaded.deployment.spec.promotion
        if not promotion.require:
            return
        candidate = self.registry.run_metrics(desired.run_id) if desired.run_id else {}
        served_metrics = None
        if served is not None and served != desired.model_version:
            info = self.registry.get_version(desired.model_name, served)
            served_metrics = self.registry.run_metrics(info.run_id) if info.run_id else {}
        verdict = evaluate(
            promotion.requirements, candidate, desired.model_version, served_metrics, served
        )
        if verdict.passed:
            if verdict.notes:
                log.info("%s: gates passed with notes: %s", desired.name, verdict)
            return
        message = f"version {desired.model_version} refused: {verdict}"
        if promotion.on_failure is OnFailure.REVERT:
            message += self._revert(desired, served)
        else:
            message += f"; alias {desired.alias} held at it (onFailure: hold), nothing rolled out"
        raise GateFailedError(message)

    def _revert(self, desired: DesiredState, served: str | None) -> str:
        if desired.alias is None or served is None or served == desired.model_version:
            return f"; version {served or 'nothing'} keeps serving"
        try:
            self.registry.set_alias(desired.model_name, desired.alias, served)
        except ControllerError as exc:
            log.error(
                "%s: could not move %s back to %s: %s", desired.name, desired.alias, served, exc
            )
            return f"; moving alias {desired.alias} back to {served} failed ({exc})"
        return f"; alias {desired.alias} moved back to {served}, which keeps serving"
