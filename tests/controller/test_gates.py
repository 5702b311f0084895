"""Promotion requirements: parsing (manifest validation) and the pure gate verdict."""

from __future__ import annotations

import pytest

from controller.core.requirements import Requirement, parse_requirement
from controller.reconcile.gates import evaluate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accuracy>=served", Requirement("accuracy", ">=", None)),
        ("f1 >= 0.9", Requirement("f1", ">=", 0.9)),
        ("latency_ms<12.5", Requirement("latency_ms", "<", 12.5)),
        ("roc_auc==served", Requirement("roc_auc", "==", None)),
    ],
)
def test_requirements_parse(text: str, expected: Requirement) -> None:
    assert parse_requirement(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("accuracy=>served", "is not a requirement"),
        ("accuracy>=champion", "neither a number nor 'served'"),
        (">=0.9", "is not a requirement"),
        ("accuracy", "is not a requirement"),
    ],
)
def test_bad_requirements_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_requirement(text)


REQUIRE = [parse_requirement("accuracy>=served"), parse_requirement("f1>=0.9")]


@pytest.mark.parametrize(
    ("candidate", "served", "failures"),
    [
        ({"accuracy": 0.96, "f1": 0.95}, {"accuracy": 0.95}, []),
        ({"accuracy": 0.76, "f1": 0.95}, {"accuracy": 0.95}, ["accuracy 0.76 < served v2 0.95"]),
        ({"accuracy": 0.96, "f1": 0.5}, {"accuracy": 0.95}, ["f1 0.5 < 0.9"]),
        ({"accuracy": 0.96}, {"accuracy": 0.95}, ["f1 was not logged by v3's run"]),
        # Equal is enough for >=.
        ({"accuracy": 0.95, "f1": 0.9}, {"accuracy": 0.95}, []),
    ],
)
def test_gate_verdicts_carry_the_numbers(
    candidate: dict[str, float], served: dict[str, float], failures: list[str]
) -> None:
    verdict = evaluate(REQUIRE, candidate, "3", served, "2")
    assert verdict.failures == failures
    assert verdict.passed is (not failures)


def test_nothing_served_skips_comparisons_with_served_but_not_thresholds() -> None:
    verdict = evaluate(REQUIRE, {"accuracy": 0.1, "f1": 0.95}, "1", None, None)
    assert verdict.passed
    assert "nothing served yet" in str(verdict)
    assert not evaluate(REQUIRE, {"accuracy": 0.1, "f1": 0.5}, "1", None, None).passed
