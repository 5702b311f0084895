"""The README's quick start, as a new user meets it: `make up`, then the README's second
block pasted line by line into one shell, ending with `make down`; then a check by PID
that nothing the stack started is left.

On the way it checks what the first half hour showed (issue 12): MLflow moves off a busy
port and says where as a ready-to-paste `export` line; each phase of `up` is announced;
the model serves on its manifest's port; a second `up` is refused without touching the
running stack, so the `make down` that follows really stops it.

Two things differ from a person's shell, and only these: the deployment's port is a free
one instead of 8080 (which a developer's own stack may hold), and `make` is told that
`.venv` is installed (`-o .venv/.installed`: the tests run in that environment already).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack_harness import aliasflow, alive, local_port, start_up, user_env, wait_gone

CURL = re.compile(r"curl -s (?P<endpoint>\S+)/predict .* -d '(?P<body>.*)'$")
MARKER = "__aliasflow_line_done__"


def readme_lines(repo_root: Path) -> list[str]:
    """The quick start's second shell block: what a person pastes after `make up`."""
    readme = (repo_root / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line for line in blocks[1].splitlines() if line.strip()]


class Shell:
    """One bash, fed one line at a time, as a terminal is when lines are pasted."""

    def __init__(self, cwd: Path) -> None:
        self.process = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            cwd=cwd,
            env=user_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, line: str, timeout: float = 180) -> tuple[int, str]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{line}\necho; echo {MARKER} $?\n")
        self.process.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + timeout
        for raw in self.process.stdout:
            if raw.startswith(MARKER):
                return int(raw.split()[1]), "".join(output)
            output.append(raw)
            assert time.monotonic() < deadline, f"{line!r} did not finish"
        raise AssertionError(f"the shell exited during {line!r}: {''.join(output)}")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)


def serving(controller: str, version: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    row: dict[str, object] = {}
    while time.monotonic() < deadline:
        rows = httpx.get(f"{controller}/api/deployments", trust_env=False, timeout=10).json()
        row = {r["name"]: r for r in rows}.get("iris-local", {})
        if row.get("health") == "Healthy" and row.get("served_version") == version:
            return
        time.sleep(0.3)
    raise AssertionError(f"iris-local never served version {version}: {row}")


def test_the_readme_quick_start_pasted_line_by_line(work: Path, repo_root: Path) -> None:
    port = local_port(work)
    with socket.socket() as busy:  # someone else holds the port MLflow is asked for
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        up = start_up(work, "--mlflow-port", str(taken))
        up.wait_for("aliasflow is up", timeout=300)

    # Each phase is said as it finishes; MLflow says where it went instead of the busy port.
    for phase in (
        "[ok] MLflow is up",
        "[ok] controller is up",
        "[ok] trained and registered iris-classifier version 1",
        "[ok] iris-local serves version 1",
    ):
        up.wait_for(phase, timeout=1)
    assert f"port {taken} is busy" in up.text
    export = re.search(r"export MLFLOW_TRACKING_URI=(http://127\.0\.0\.1:(\d+))$", up.text, re.M)
    assert export is not None, up.text
    assert int(export[2]) != taken
    assert httpx.get(f"{export[1]}/health", trust_env=False, timeout=5).status_code == 200
    # The model serves on its manifest's port, and the printed curl works as printed.
    curl = next(m for line in up.lines if (m := CURL.search(line.strip())))
    assert curl["endpoint"] == f"http://127.0.0.1:{port}"
    answer = httpx.post(
        f"{curl['endpoint']}/predict", json=json.loads(curl["body"]), trust_env=False
    )
    assert answer.json()["model"] == {"name": "iris-classifier", "version": "1"}

    # A second `make up` is refused and leaves the running stack's record alone.
    record = up.record()
    second = aliasflow(work, "up")
    assert second.returncode == 1, second.stdout + second.stderr
    assert "refused: a stack from" in second.stdout
    assert "already running" in second.stdout
    assert up.record() == record
    started = {p["role"]: p["pid"] for p in record["processes"]}
    assert alive(started["MLflow"])
    assert alive(started["controller"])

    # The README's lines, one at a time, in one shell.
    controller = record["controller_url"]
    shell = Shell(work)
    try:
        for line in readme_lines(repo_root):
            pasted = line.replace("8080", str(port))
            if pasted.startswith("make down"):
                pasted = pasted.replace("make down", "make -o .venv/.installed down", 1)
                state = json.loads((work / ".aliasflow" / "local" / "state.json").read_text())
                started |= {f"server {n}": r["pid"] for n, r in state["servers"].items()}
                started |= {f"proxy {n}": r["pid"] for n, r in state["proxies"].items()}
            code, output = shell.run(pasted)
            assert code == 0, f"{line!r} failed:\n{output}"
            _check(line, output, controller)
    finally:
        shell.close()

    # `make down` stopped the running `up` (which stopped MLflow and the controller) and
    # the model server and its proxy; nothing of the stack is left, by PID.
    assert up.wait_exit(timeout=60) == 0
    for role, pid in started.items():
        assert not alive(pid), f"{role} (pid {pid}) is still running"
    assert wait_gone(work, timeout=15) == {}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{curl['endpoint']}/readyz", trust_env=False, timeout=2)


def _check(line: str, output: str, controller: str) -> None:
    """What each README line must have shown (and, where it starts a rollout, done)."""
    if line.startswith("curl"):
        assert json.loads(output)["model"]["version"] == "1", output
    elif "aliasflow promote" in line:
        assert "champion" in output, output
        serving(controller, "2")  # a person watches `status` before the next step
    elif "aliasflow status" in line:
        assert re.search(r"iris-local\s+Synced\s+Healthy", output), output
    elif "aliasflow history" in line:
        assert "hotswap" in output, output
    elif "aliasflow rollback" in line:
        assert "moved back from version 2 to 1" in output, output
        serving(controller, "1")
    elif "down" in line:
        assert "stopped `aliasflow up`" in output, output
        assert "model server on port" in output, output
        assert "proxy on port" in output, output
    assert "Traceback" not in output, output
