"""The reconcile package stays readable as its steps (docs/architecture.md).

Checked here rather than trusted to review: no function in `controller/reconcile/` is
longer than 60 lines and no module there longer than 300.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RECONCILE = Path(__file__).resolve().parents[2] / "controller" / "reconcile"
MODULES = sorted(RECONCILE.glob("*.py"))


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_reconcile_modules_and_functions_stay_short(module: Path) -> None:
    source = module.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 300, f"{module.name} is over 300 lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"  # type: ignore[operator]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 60  # type: ignore[operator]
    ]
    assert not long, f"{module.name}: functions over 60 lines: {', '.join(long)}"
