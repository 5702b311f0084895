"""Fixtures of the end-to-end tests; the stack's pieces live in stack_harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack_harness import kill_leftovers, make_workdir


@pytest.fixture
def work(tmp_path: Path, repo_root: Path) -> Iterator[Path]:
    """A clone-like working directory for `aliasflow up`; whatever a failing test left
    running there is killed afterwards."""
    work = make_workdir(tmp_path, repo_root)
    try:
        yield work
    finally:
        kill_leftovers(work)
