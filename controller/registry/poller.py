"""Polling MLflow's alias maps: the guarantee behind the best-effort webhook.

MLflow delivers webhooks from an in-memory pool with a few retries and persists
nothing, and a worker's webhook cache can hide a new webhook for a minute. Polling alone
must therefore converge. Moving an alias does not change a model's
`last_updated_timestamp`, so the poll reads every alias map (one search call per 1000
models) and diffs it against the previous one. The diff is a pure function; scheduling
belongs to the controller app.
"""

from __future__ import annotations

from controller.core.ports import AliasMaps, Registry


def diff_alias_maps(old: AliasMaps | None, new: AliasMaps) -> set[tuple[str, str]]:
    """(model, alias) pairs added, moved or deleted between two polls.

    With no previous poll (`old` is None) every alias counts as changed: after a restart
    the controller cannot know what moved while it was down. A model that disappears
    reports each of its former aliases, since deployments following them lost their target.
    """
    if old is None:
        return {(model, alias) for model, aliases in new.items() for alias in aliases}
    changed: set[tuple[str, str]] = set()
    for model in old.keys() | new.keys():
        before = old.get(model, {})
        after = new.get(model, {})
        for alias in before.keys() | after.keys():
            if before.get(alias) != after.get(alias):
                changed.add((model, alias))
    return changed


class AliasPoller:
    """Remembers the last alias maps and reports what changed since.

    The last map moves only after a successful read: a `RegistryUnavailableError` (or any
    error) propagates and leaves it untouched, so the next successful poll still reports
    every change made during the outage.
    """

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._last: AliasMaps | None = None

    @property
    def last(self) -> AliasMaps | None:
        return self._last

    def poll(self) -> set[tuple[str, str]]:
        current = self._registry.alias_maps()
        changed = diff_alias_maps(self._last, current)
        self._last = current
        return changed
