"""Promotion gates: does the new version's run meet the manifest's requirements?

Pure: the metrics of the candidate run and of the served version's run go in, a verdict
with the numbers comes out ("accuracy 0.76 < served v2 0.95"). A metric the run did not
log fails its requirement: a gate that passes on missing evidence is no gate. With
nothing served yet (a first rollout), requirements against `served` have nothing to
compare with and are skipped, which the verdict says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.core.requirements import COMPARISONS, NEGATED, Requirement


@dataclass(frozen=True)
class GateVerdict:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        return "; ".join(self.failures or self.notes or ["all requirements met"])


def evaluate(
    requirements: Sequence[Requirement],
    candidate: Mapping[str, float],
    candidate_version: str,
    served: Mapping[str, float] | None,
    served_version: str | None,
) -> GateVerdict:
    verdict = GateVerdict()
    for requirement in requirements:
        value = candidate.get(requirement.metric)
        if value is None:
            verdict.failures.append(
                f"{requirement.metric} was not logged by v{candidate_version}'s run"
            )
            continue
        if requirement.threshold is not None:
            right, shown = requirement.threshold, f"{requirement.threshold:g}"
        elif served is None or served_version is None:
            verdict.notes.append(f"{requirement}: nothing served yet to compare with")
            continue
        elif requirement.metric not in served:
            verdict.notes.append(
                f"{requirement}: served v{served_version}'s run has no {requirement.metric}"
            )
            continue
        else:
            right = served[requirement.metric]
            shown = f"served v{served_version} {right:g}"
        if not COMPARISONS[requirement.op](value, right):
            verdict.failures.append(
                f"{requirement.metric} {value:g} {NEGATED[requirement.op]} {shown}"
            )
    return verdict
