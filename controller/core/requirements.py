"""Promotion requirements as written in a manifest: `accuracy>=served`, `f1>=0.9`.

A requirement compares one MLflow run metric of the version being promoted with either a
number or `served` — the same metric of the version the deployment serves when the alias
moves. Parsed at manifest validation, so a typo is a manifest error, not a surprise at
promotion time.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

SERVED = "served"
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
# What to say when a comparison does not hold: "0.76 < 0.95" for a failed ">=".
NEGATED = {">=": "<", "<=": ">", ">": "<=", "<": ">=", "==": "!="}
_FORM = re.compile(r"^\s*([A-Za-z0-9_.\-/ ]+?)\s*(>=|<=|==|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Requirement:
    metric: str
    op: str
    # A number, or None for `served`.
    threshold: float | None

    @property
    def against_served(self) -> bool:
        return self.threshold is None

    def __str__(self) -> str:
        right = SERVED if self.threshold is None else f"{self.threshold:g}"
        return f"{self.metric}{self.op}{right}"


def parse_requirement(text: str) -> Requirement:
    """Raises ValueError naming what is wrong."""
    match = _FORM.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a requirement: write METRIC OP VALUE with OP one of "
            ">=, <=, >, <, == and VALUE a number or 'served' (e.g. 'accuracy>=served')"
        )
    metric, op, right = match.groups()
    if right == SERVED:
        return Requirement(metric.strip(), op, None)
    try:
        return Requirement(metric.strip(), op, float(right))
    except ValueError:
        raise ValueError(f"{text!r}: {right!r} is neither a number nor 'served'") from None
