"""`aliasflow promote`: move an alias onto a model version, behind an optional metric gate.

Moving `champion` is the deploy button of aliasflow, so the decision is a pure function
(`decide`) over facts read beforehand, tested without I/O; the MLflow reads and the one
write (`set_registered_model_alias`) sit behind the small `PromotionRegistry` seam.

Exit codes: 0 promoted (or already there), 1 refused by a requirement, 2 bad arguments or
missing model/version/alias, 3 MLflow unreachable.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from training.config import reserved_alias
from training.errors import EXIT_GATE_FAILED, EXIT_OK, TrackingError, TrainingError

Comparison = Literal[">=", "<="]

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-/ ]+?)\s*(>=|<=)\s*(\S+)\s*$")


class PromotionError(TrainingError):
    """Bad arguments or a model, version or alias that does not exist (exit 2)."""


@dataclass(frozen=True)
class Requirement:
    """`metric >= 0.9`, or `metric >= champion` (the version holding that alias)."""

    metric: str
    op: Comparison
    reference: float | str

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.reference}"


def parse_requirement(text: str) -> Requirement:
    """Parse `METRIC>=champion`, `accuracy>=0.9`, `log_loss<=0.3`."""
    match = _REQUIREMENT.match(text)
    if not match:
        raise PromotionError(
            f"cannot parse requirement {text!r}; expected METRIC>=VALUE, METRIC<=VALUE or "
            "METRIC>=ALIAS (e.g. accuracy>=champion, accuracy>=0.9, log_loss<=0.3)"
        )
    metric, op, raw = match.groups()
    reference: float | str
    try:
        reference = float(raw)
    except ValueError:
        reference = raw
        if not re.fullmatch(r"[A-Za-z0-9_-]+", raw):
            raise PromotionError(
                f"requirement {text!r}: {raw!r} is neither a number nor an alias"
            ) from None
    else:
        if not math.isfinite(reference):
            raise PromotionError(f"requirement {text!r}: threshold must be a finite number")
    return Requirement(metric=metric, op=op, reference=reference)  # type: ignore[arg-type]


@dataclass(frozen=True)
class VersionFacts:
    """What the decision needs to know about one model version."""

    version: int
    run_id: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    requirement: str
    passed: bool
    candidate_value: float | None
    reference_value: float | None
    reference_version: int | None
    message: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    changed: bool
    previous_version: int | None
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        return [check.message for check in self.checks if not check.passed]


def _compare(value: float, op: Comparison, reference: float) -> bool:
    return value >= reference if op == ">=" else value <= reference


def _shown(op: Comparison, passed: bool) -> str:
    """The operator that is true of the two values: the requirement's, or its negation."""
    if passed:
        return op
    return "<" if op == ">=" else ">"


def check_requirement(
    requirement: Requirement,
    candidate: VersionFacts,
    holders: Mapping[str, VersionFacts | None],
) -> Check:
    """Pure: one requirement against the candidate and the alias holders read beforehand."""
    name = str(requirement)
    value = candidate.metrics.get(requirement.metric)
    if value is None:
        return Check(
            name, False, None, None, None,
            f"{requirement.metric}: candidate version {candidate.version} has no such metric",
        )  # fmt: skip
    if isinstance(requirement.reference, float):
        passed = _compare(value, requirement.op, requirement.reference)
        return Check(
            name, passed, value, requirement.reference, None,
            f"{requirement.metric}: candidate v{candidate.version} {value:.4f} "
            f"{_shown(requirement.op, passed)} required {requirement.reference:.4f}",
        )  # fmt: skip
    alias = requirement.reference
    holder = holders.get(alias)
    if holder is None:
        # Nothing holds the alias yet (first promotion): nothing to be worse than.
        return Check(
            name, True, value, None, None,
            f"{requirement.metric}: no version holds {alias!r} yet; nothing to compare",
        )  # fmt: skip
    reference = holder.metrics.get(requirement.metric)
    if reference is None:
        # Refuse rather than guess: promotion is the deploy button.
        return Check(
            name, False, value, None, holder.version,
            f"{requirement.metric}: {alias} v{holder.version} has no such metric to compare",
        )  # fmt: skip
    passed = _compare(value, requirement.op, reference)
    return Check(
        name, passed, value, reference, holder.version,
        f"{requirement.metric}: candidate v{candidate.version} {value:.4f} "
        f"{_shown(requirement.op, passed)} {alias} v{holder.version} {reference:.4f}",
    )  # fmt: skip


def decide(
    candidate: VersionFacts,
    target_alias: str,
    requirements: Sequence[Requirement],
    holders: Mapping[str, VersionFacts | None],
) -> Decision:
    """Pure: may `target_alias` move onto `candidate`? All requirements must pass."""
    current = holders.get(target_alias)
    checks = tuple(check_requirement(req, candidate, holders) for req in requirements)
    return Decision(
        allowed=all(check.passed for check in checks),
        changed=current is None or current.version != candidate.version,
        previous_version=current.version if current else None,
        checks=checks,
    )


class PromotionRegistry(Protocol):
    """The MLflow calls promotion needs; an in-memory one fits tests of callers."""

    def aliases(self, model: str) -> dict[str, int]: ...

    def version(self, model: str, version: int) -> VersionFacts: ...

    def set_alias(self, model: str, alias: str, version: int) -> None: ...


class MlflowPromotionRegistry:
    """PromotionRegistry over MlflowClient; MLflow errors become ours at this edge."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self._uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri)

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise PromotionError(f"{what} not found") from exc
            raise TrackingError(f"MLflow refused {what}: {exc.message}") from exc
        except OSError as exc:
            raise TrackingError(f"MLflow request failed at {self._uri}: {exc}") from exc

    def aliases(self, model: str) -> dict[str, int]:
        registered = self._call(
            f"registered model {model!r}", self._client.get_registered_model, model
        )
        return {alias: int(version) for alias, version in registered.aliases.items()}

    def version(self, model: str, version: int) -> VersionFacts:
        found = self._call(
            f"version {version} of model {model!r}",
            self._client.get_model_version,
            model,
            str(version),
        )
        metrics: dict[str, float] = {}
        if found.run_id:
            run = self._call(f"run {found.run_id}", self._client.get_run, found.run_id)
            metrics = dict(run.data.metrics)
        return VersionFacts(version=version, run_id=found.run_id, metrics=metrics)

    def set_alias(self, model: str, alias: str, version: int) -> None:
        self._call(
            f"alias {alias!r} on {model!r} v{version}",
            self._client.set_registered_model_alias,
            model,
            alias,
            str(version),
        )


@dataclass(frozen=True)
class PromotionResult:
    model_name: str
    alias: str
    version: int
    previous_version: int | None
    promoted: bool
    changed: bool
    checks: tuple[Check, ...]
    message: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def validate_request(
    to: str, version: int | None, from_alias: str | None, requirements: Sequence[str]
) -> list[Requirement]:
    """Argument checks that need no MLflow, so usage errors come back before any I/O."""
    if reserved_alias(to):
        raise PromotionError(f"alias {to!r} is reserved by MLflow (latest, v<number>)")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", to):
        raise PromotionError(f"alias {to!r} may only contain letters, digits, '-' and '_'")
    if (version is None) == (from_alias is None):
        raise PromotionError("give exactly one of --version N or --from ALIAS")
    if version is not None and version < 1:
        raise PromotionError(f"--version must be a positive integer, got {version}")
    return [parse_requirement(text) for text in requirements]


def promote(
    registry: PromotionRegistry,
    model: str,
    *,
    to: str,
    version: int | None = None,
    from_alias: str | None = None,
    requirements: Sequence[str] = (),
) -> PromotionResult:
    """Read facts, decide, and move the alias only when the decision allows it."""
    parsed = validate_request(to, version, from_alias, requirements)

    aliases = registry.aliases(model)
    if from_alias is not None:
        if from_alias not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise PromotionError(f"model {model!r} has no alias {from_alias!r} (aliases: {known})")
        version = aliases[from_alias]
    assert version is not None
    candidate = registry.version(model, version)

    wanted = {to} | {req.reference for req in parsed if isinstance(req.reference, str)}
    holders = {
        alias: registry.version(model, aliases[alias]) if alias in aliases else None
        for alias in wanted
    }
    decision = decide(candidate, to, parsed, holders)
    if not decision.allowed:
        message = f"refused to move {to!r} to v{version}: " + "; ".join(decision.reasons)
    elif decision.changed:
        registry.set_alias(model, to, version)
        message = f"moved {to!r} of {model!r} to v{version}" + (
            f" (was v{decision.previous_version})" if decision.previous_version else ""
        )
    else:
        message = f"{to!r} of {model!r} already on v{version}; nothing to do"
    return PromotionResult(
        model_name=model,
        alias=to,
        version=version,
        previous_version=decision.previous_version,
        promoted=decision.allowed,
        changed=decision.allowed and decision.changed,
        checks=decision.checks,
        message=message,
    )


def run_promote(
    model: str,
    *,
    to: str,
    version: int | None,
    from_alias: str | None,
    requirements: Sequence[str],
    tracking_uri: str | None,
) -> int:
    """CLI entry: one JSON line on stdout, the human message on stderr; returns the exit code."""
    from training.tracking import check_reachable

    try:
        validate_request(to, version, from_alias, requirements)
        if not tracking_uri:
            raise PromotionError("no tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI")
        check_reachable(tracking_uri)
        result = promote(
            MlflowPromotionRegistry(tracking_uri),
            model,
            to=to,
            version=version,
            from_alias=from_alias,
            requirements=requirements,
        )
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(result.to_json(), flush=True)
    print(result.message, file=sys.stderr)
    return EXIT_OK if result.promoted else EXIT_GATE_FAILED


QUARANTINE_TAG = "aliasflow.quarantined"


def run_unquarantine(model: str, version: int, tracking_uri: str | None) -> int:
    """Clear the quarantine the controller put on a version after a failed analysis.

    The controller then rolls the version out again whenever its alias points at it (and
    the gates and the next analysis judge it afresh).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training.tracking import check_reachable

    try:
        if not tracking_uri:
            raise PromotionError("no tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI")
        check_reachable(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            found = client.get_model_version(model, str(version))
        except MlflowException as exc:
            raise PromotionError(f"{model} version {version} not found: {exc.message}") from None
        why = (found.tags or {}).get(QUARANTINE_TAG)
        if why is None:
            print(f"{model} version {version} is not quarantined; nothing to do", file=sys.stderr)
            return EXIT_OK
        client.delete_model_version_tag(model, str(version), QUARANTINE_TAG)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(
        f"{model} version {version} is no longer quarantined (it was: {why}); the controller "
        "rolls it out again when its alias points at it",
        file=sys.stderr,
    )
    return EXIT_OK
