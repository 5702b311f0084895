"""The promotion decision as a pure function: parameter tables, no MLflow."""

from __future__ import annotations

import pytest

from training.promote import (
    PromotionError,
    Requirement,
    VersionFacts,
    decide,
    parse_requirement,
    validate_request,
)

CANDIDATE = VersionFacts(version=3, run_id="r3", metrics={"accuracy": 0.95, "log_loss": 0.2})
CHAMPION = VersionFacts(version=2, run_id="r2", metrics={"accuracy": 0.93, "log_loss": 0.1})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accuracy>=champion", Requirement("accuracy", ">=", "champion")),
        ("accuracy >= 0.9", Requirement("accuracy", ">=", 0.9)),
        ("log_loss<=0.3", Requirement("log_loss", "<=", 0.3)),
        ("f1_macro>=challenger", Requirement("f1_macro", ">=", "challenger")),
    ],
)
def test_parse_requirement(text: str, expected: Requirement) -> None:
    assert parse_requirement(text) == expected


@pytest.mark.parametrize("text", ["accuracy", "accuracy>0.9", "accuracy>=", ">=0.9", "a>=nan"])
def test_unparseable_requirements_are_refused(text: str) -> None:
    with pytest.raises(PromotionError):
        parse_requirement(text)


@pytest.mark.parametrize(
    ("requirements", "holders", "allowed", "fragment"),
    [
        ([], {"champion": CHAMPION}, True, None),
        (["accuracy>=champion"], {"champion": CHAMPION}, True, "0.9500 >= champion v2 0.9300"),
        (["accuracy>=champion"], {"champion": None}, True, "no version holds 'champion'"),
        (["accuracy>=0.96"], {"champion": CHAMPION}, False, "0.9500 < required 0.9600"),
        (["accuracy>=0.9"], {"champion": None}, True, "0.9500 >= required 0.9000"),
        (["log_loss<=0.3"], {"champion": CHAMPION}, True, "0.2000 <= required 0.3000"),
        (["log_loss<=champion"], {"champion": CHAMPION}, False, "0.2000 > champion v2 0.1000"),
        (["recall>=0.5"], {"champion": CHAMPION}, False, "candidate version 3 has no such"),
        (
            ["accuracy>=champion"],
            {"champion": VersionFacts(2, None, {})},
            False,
            "champion v2 has no such metric",
        ),
        (
            ["accuracy>=0.9", "log_loss<=champion"],
            {"champion": CHAMPION},
            False,
            "log_loss: candidate v3 0.2000 > champion v2 0.1000",
        ),
    ],
)
def test_decide(
    requirements: list[str],
    holders: dict[str, VersionFacts | None],
    allowed: bool,
    fragment: str | None,
) -> None:
    decision = decide(CANDIDATE, "champion", [parse_requirement(r) for r in requirements], holders)
    assert decision.allowed is allowed
    if fragment:
        assert any(fragment in check.message for check in decision.checks)
    if not allowed:
        assert decision.reasons


def test_decide_reports_no_change_when_the_alias_is_already_there() -> None:
    decision = decide(CANDIDATE, "champion", [], {"champion": CANDIDATE})
    assert decision.allowed
    assert not decision.changed
    assert decision.previous_version == 3


def test_decide_first_promotion_has_no_previous_version() -> None:
    decision = decide(CANDIDATE, "champion", [], {"champion": None})
    assert decision.changed
    assert decision.previous_version is None


@pytest.mark.parametrize(
    ("to", "version", "from_alias", "message"),
    [
        ("latest", 1, None, "reserved"),
        ("v3", 1, None, "reserved"),
        ("V3", 1, None, "reserved"),
        ("bad alias", 1, None, "may only contain"),
        ("champion", None, None, "exactly one of --version N or --from ALIAS"),
        ("champion", 1, "challenger", "exactly one of"),
        ("champion", 0, None, "positive integer"),
    ],
)
def test_bad_requests_are_refused_before_any_io(
    to: str, version: int | None, from_alias: str | None, message: str
) -> None:
    with pytest.raises(PromotionError, match=message):
        validate_request(to, version, from_alias, [])
