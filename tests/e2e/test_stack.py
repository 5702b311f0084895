"""`aliasflow up` loses track of nothing: SIGTERM, SIGHUP and a crash, checked by PID.

Each test stops `up` while it is starting (MLflow and the controller are up, training
runs), which is both the cheapest moment and the one with the most processes in flight.
The quick start test covers a stack that is fully up, stopped by `make down`.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.stack_harness import aliasflow, alive, processes_in, start_up, wait_gone


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_up_like_ctrl_c(work: Path, signum: signal.Signals) -> None:
    up = start_up(work)
    up.wait_for("[ok] controller is up", timeout=180)
    started = {p["role"]: p["pid"] for p in up.record()["processes"]}
    assert {"MLflow", "controller"} <= started.keys()
    if signum is signal.SIGHUP:
        up.hang_up_terminal()  # a closed terminal: what `up` writes goes nowhere

    up.process.send_signal(signum)

    up.wait_exit(timeout=60)
    for role, pid in started.items():
        assert not alive(pid), f"{role} (pid {pid}) outlived `up`"
    assert wait_gone(work, timeout=15) == {}
    assert not (work / ".aliasflow" / "stack.json").exists()
    if signum is signal.SIGTERM:
        assert "stopping the controller and MLflow" in up.text


def test_a_crashed_up_is_refused_again_and_down_stops_what_it_left(work: Path) -> None:
    up = start_up(work)
    up.wait_for("[ok] controller is up", timeout=180)
    record = up.record()

    up.process.kill()  # no clean-up at all: MLflow and the controller are orphans now
    up.wait_exit(timeout=10)
    started = {p["role"]: p["pid"] for p in record["processes"]}
    assert alive(started["MLflow"])
    assert alive(started["controller"])

    refused = aliasflow(work, "up")
    assert refused.returncode == 1
    assert "from an earlier `aliasflow up`" in refused.stdout
    assert "`make down` stops them" in refused.stdout
    assert up.record()["processes"][:2] == record["processes"][:2]  # untouched

    down = aliasflow(work, "down")
    assert down.returncode == 0, down.stderr
    assert f"stopped MLflow (pid {started['MLflow']})" in down.stdout
    assert f"stopped controller (pid {started['controller']})" in down.stdout
    for role, pid in started.items():
        assert not alive(pid), f"{role} (pid {pid}) survived `down`"
    assert wait_gone(work, timeout=15) == {}
    assert "nothing was running" in aliasflow(work, "down").stdout
    assert processes_in(work) == {}


def test_the_first_make_up_says_what_it_installs_and_how_long(
    tmp_path: Path, repo_root: Path
) -> None:
    (tmp_path / "Makefile").symlink_to(repo_root / "Makefile")
    (tmp_path / "pyproject.toml").symlink_to(repo_root / "pyproject.toml")
    planned = subprocess.run(
        ["make", "-n", "up"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    said = [line for line in planned.splitlines() if line.startswith("echo")]
    assert "installing MLflow, scikit-learn" in said[0]
    assert "about 1-3 minutes" in " ".join(said)
    install = next(line for line in planned.splitlines() if "pip install --progress-bar" in line)
    assert "-q" not in install.split()  # pip's progress reaches the terminal, one line a package
