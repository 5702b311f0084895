"""The alias-map diff (pure, table-driven) and the poller's memory across failures."""

from __future__ import annotations

import pytest

from controller.core.errors import RegistryUnavailableError
from controller.core.ports import AliasMaps
from controller.registry.memory import MemoryRegistry
from controller.registry.poller import AliasPoller, diff_alias_maps

BASE: AliasMaps = {"iris": {"champion": "1", "challenger": "2"}, "wine": {"champion": "4"}}


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        pytest.param(BASE, BASE, set(), id="no change"),
        pytest.param({}, {}, set(), id="both empty"),
        pytest.param(
            BASE,
            {**BASE, "iris": {"champion": "3", "challenger": "2"}},
            {("iris", "champion")},
            id="moved",
        ),
        pytest.param(
            BASE,
            {**BASE, "wine": {"champion": "4", "canary": "5"}},
            {("wine", "canary")},
            id="added alias",
        ),
        pytest.param(
            BASE, {**BASE, "iris": {"champion": "1"}}, {("iris", "challenger")}, id="deleted alias"
        ),
        pytest.param(
            BASE,
            {"iris": BASE["iris"]},
            {("wine", "champion")},
            id="model removed",
        ),
        pytest.param(
            BASE, {**BASE, "new": {"champion": "1"}}, {("new", "champion")}, id="model added"
        ),
        pytest.param(BASE, {**BASE, "new": {}}, set(), id="model without aliases added"),
        pytest.param(
            BASE,
            {"iris": {"champion": "2", "challenger": "1"}, "wine": {}},
            {("iris", "champion"), ("iris", "challenger"), ("wine", "champion")},
            id="swap and delete at once",
        ),
        pytest.param(
            None,
            BASE,
            {("iris", "champion"), ("iris", "challenger"), ("wine", "champion")},
            id="first poll: everything",
        ),
        pytest.param(None, {"empty": {}}, set(), id="first poll, no aliases"),
    ],
)
def test_diff_alias_maps(
    old: AliasMaps | None, new: AliasMaps, changed: set[tuple[str, str]]
) -> None:
    assert diff_alias_maps(old, new) == changed


def test_diff_does_not_mutate_its_inputs() -> None:
    old = {"iris": {"champion": "1"}}
    new = {"iris": {"champion": "2"}}
    diff_alias_maps(old, new)
    assert old == {"iris": {"champion": "1"}}
    assert new == {"iris": {"champion": "2"}}


def test_poller_reports_changes_since_the_last_successful_poll() -> None:
    registry = MemoryRegistry()
    registry.add_version("iris", "1")
    registry.add_version("iris", "2")
    registry.set_alias("iris", "champion", "1")
    poller = AliasPoller(registry)

    assert poller.poll() == {("iris", "champion")}
    assert poller.poll() == set()

    registry.set_alias("iris", "champion", "2")
    registry.available = False
    with pytest.raises(RegistryUnavailableError):
        poller.poll()
    assert poller.last == {"iris": {"champion": "1"}}

    registry.available = True
    assert poller.poll() == {("iris", "champion")}
    assert poller.poll() == set()
    assert registry.search_calls == 4
