"""Which loaded version answers a request: the primary, or the canary by weight.

The slot publishes one immutable `Routes` per change (swap, traffic, rollback-copy
dropped) with a single reference assignment, so a request reads a consistent split once
and never sees a half-applied change. Everything a request needs is made here once per
change, not per request: each role's `Choice` carries its metric children, and the
primary's carries the shadow to mirror to. Routing a request is then one attribute
read and, only while a canary takes a share, one random draw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from model_server.errors import InputError, NotReadyError, RoleNotServedError
from model_server.loading import LoadedModel
from model_server.metrics import ServerMetrics
from model_server.version_metrics import RoleMetrics, ShadowMetrics

PRIMARY = "primary"
CANARY = "canary"
SHADOW = "shadow"
ROLE_HEADER = "x-aliasflow-role"
VERSION_HEADER = "x-aliasflow-model-version"

# A generator of our own, seeded from the OS: a library that seeds the global `random`
# (for its own reproducibility) must not make the split a fixed sequence.
_draw = random.Random().random  # noqa: S311 - a traffic split, not a secret


@dataclass(frozen=True, slots=True)
class ShadowTarget:
    model: LoadedModel
    percent: int
    metrics: ShadowMetrics


@dataclass(frozen=True, slots=True)
class Choice:
    """A request's version and role, with what recording its answer needs."""

    model: LoadedModel
    role: str
    metrics: RoleMetrics
    shadow: ShadowTarget | None = None  # only on the primary: what to mirror to
    version_headers: dict[str, str] | None = None

    def mirrors(self) -> ShadowTarget | None:
        """The shadow when this request is one of its `percent`%; else None."""
        shadow = self.shadow
        if shadow is None or (shadow.percent < 100 and _draw() * 100 >= shadow.percent):
            return None
        return shadow


@dataclass(frozen=True, slots=True)
class Routes:
    primary: Choice | None = None
    canary: Choice | None = None
    weight: int = 0
    shadow: ShadowTarget | None = None
    previous: LoadedModel | None = None

    def choose(self, pin: str | None = None) -> Choice:
        """The role answering this request: the canary `weight`% of the time, unless the
        request is pinned (`X-Aliasflow-Role`)."""
        primary, canary = self.primary, self.canary
        if primary is None:
            raise NotReadyError("no model is served yet")
        if pin is None:
            if canary is None or _draw() * 100 >= self.weight:
                return primary
            return canary
        if pin == PRIMARY:
            return primary
        if pin == CANARY:
            if canary is None:
                raise RoleNotServedError("no canary is served here (X-Aliasflow-Role: canary)")
            return canary
        raise InputError(f"X-Aliasflow-Role must be 'primary' or 'canary', not {pin!r}")

    def traffic(self) -> dict[str, object]:
        """`/readyz`'s "traffic": the canary and shadow with their shares, the kept version."""
        canary, shadow, previous = self.canary, self.shadow, self.previous
        return {
            "canary": (
                {"version": canary.model.version, "weight": self.weight} if canary else None
            ),
            "shadow": (
                {"version": shadow.model.version, "percent": shadow.percent} if shadow else None
            ),
            "previous": previous.version if previous else None,
        }

    def versions(self) -> dict[str, str | None]:
        """The admin answer: the version in each role (null when the role is absent)."""
        return {
            PRIMARY: self.primary.model.version if self.primary else None,
            CANARY: self.canary.model.version if self.canary else None,
            SHADOW: self.shadow.model.version if self.shadow else None,
            "previous": self.previous.version if self.previous else None,
        }


def build_routes(
    metrics: ServerMetrics,
    primary: LoadedModel | None,
    canary: tuple[LoadedModel, int] | None,
    shadow: tuple[LoadedModel, int] | None,
    previous: LoadedModel | None,
) -> Routes:
    target = None
    if shadow is not None:
        model, percent = shadow
        target = ShadowTarget(model, percent, metrics.shadow(model.version))
    return Routes(
        primary=_choice(metrics, primary, PRIMARY, target) if primary else None,
        canary=_choice(metrics, canary[0], CANARY, None) if canary else None,
        weight=canary[1] if canary else 0,
        shadow=target,
        previous=previous,
    )


def _choice(
    metrics: ServerMetrics, model: LoadedModel, role: str, shadow: ShadowTarget | None
) -> Choice:
    headers = {VERSION_HEADER: model.version} if model.version is not None else None
    return Choice(model, role, metrics.role(model.version, role), shadow, headers)
