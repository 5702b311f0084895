"""Shared helpers for the training tests: write configs and run the CLI in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "tests" / "data"


def write_config(directory: Path, **values: Any) -> Path:
    """A YAML config from keyword values (nested dicts as YAML mappings)."""
    path = directory / "train.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def aliasflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `aliasflow` command in a fresh interpreter: real stdout, real exit code.

    A subprocess rather than CliRunner: under pytest, `tests/controller/` can shadow the
    `controller` package that `aliasflow_cli.main` imports.
    """
    return subprocess.run(
        [sys.executable, "-m", "aliasflow_cli.main", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stdout_json(stdout: str) -> dict[str, Any]:
    """stdout must be exactly one JSON document: human lines belong on stderr."""
    parsed: dict[str, Any] = json.loads(stdout)
    return parsed


def train_direct(
    capsys: Any, config: Path | None, summary_file: Path | None = None
) -> tuple[int, str, str]:
    """Call `training.cli.run_train` (what `aliasflow train` calls) and capture its output."""
    from training.cli import run_train

    capsys.readouterr()
    code = run_train(config, summary_file)
    out, err = capsys.readouterr()
    return code, out, err
