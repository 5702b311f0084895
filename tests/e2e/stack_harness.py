"""`aliasflow up` as a new user runs it, in a working directory of its own, and a way to
prove by PID that nothing it started is left behind.

The working directory looks like a clone: `.venv` (a link to the environment running the
tests), the Makefile and pyproject.toml, and the example manifests, with the local
deployment moved to a free port (8080 may be a developer's own `make up`). Every process
the stack starts inherits that directory as its cwd, which is how the tests find them,
and how the finalizer kills any a failing test left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aliasflow_cli.stack_commands import manifests_on_free_ports
from controller.runtimes.netutil import free_port


def make_workdir(root: Path, repo: Path) -> Path:
    work = root / "clone"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    for name in ("Makefile", "pyproject.toml"):
        (work / name).symlink_to(repo / name)
    manifests_on_free_ports(repo / "manifests", work / "manifests")
    return work


def local_port(work: Path) -> int:
    """The port the working directory's iris-local manifest names."""
    text = (work / "manifests" / "iris.yaml").read_text()
    return int(next(line for line in text.splitlines() if "port:" in line).split()[-1])


def user_env() -> dict[str, str]:
    """The environment of a shell that has not set anything of ours."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ALIASFLOW_", "MLFLOW_")) and not key.startswith("PYTEST_")
    }


@dataclass
class Up:
    """A running `aliasflow up`; its output is read without threads (select), so that the
    test can close the reading end to play a terminal that went away."""

    process: subprocess.Popen[bytes]
    work: Path
    read_fd: int | None
    lines: list[str] = field(default_factory=list)
    _partial: bytes = b""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if text in line:
                    return line
            if self.process.poll() is not None and not self._read(0.2):
                raise AssertionError(f"`up` exited before {text!r}:\n" + self.text)
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {text!r}:\n" + "\n".join(self.lines[-40:]))
            self._read(1.0)

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False once nothing more will come."""
        if self.read_fd is None:
            return False
        ready, _, _ = select.select([self.read_fd], [], [], timeout)
        if not ready:
            return self.process.poll() is None
        chunk = os.read(self.read_fd, 65536)
        if not chunk:
            return False
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        self.lines += [line.decode(errors="replace") for line in complete]
        return True

    def drain(self) -> None:
        while self._read(0.2):
            pass

    def hang_up_terminal(self) -> None:
        """The terminal is gone: nothing reads what `up` writes any more."""
        if self.read_fd is not None:
            os.close(self.read_fd)
            self.read_fd = None

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = json.loads((self.work / ".aliasflow" / "stack.json").read_text())
        return record

    def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            assert time.monotonic() < deadline, "`up` did not exit:\n" + self.text
            if not self._read(0.2):
                time.sleep(0.1)
        self.drain()
        return self.process.returncode


def aliasflow(work: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One `aliasflow` command in the working directory, from a fresh user's shell."""
    return subprocess.run(
        [sys.executable, "-m", "aliasflow_cli.main", *args],
        cwd=work,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_up(work: Path, *args: str) -> Up:
    """`aliasflow up` on free ports (never 5000 or 8000: someone's own stack may run there)."""
    if "--mlflow-port" not in args:
        args = ("--mlflow-port", str(free_port()), *args)
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "aliasflow_cli.main", "up", "--port", str(free_port()), *args],
        cwd=work,
        env=user_env(),
        stdin=subprocess.DEVNULL,
        stdout=write_fd,
        stderr=subprocess.STDOUT,
    )
    os.close(write_fd)
    return Up(process, work, read_fd)


def processes_in(work: Path) -> dict[int, str]:
    """Live processes (not zombies) whose working directory is `work`: the stack's."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(entry / "cwd") != str(work):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z":
            found[int(entry.name)] = args.strip()
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(work: Path, timeout: float = 30) -> dict[int, str]:
    """Wait until no process of the stack is left; returns what is left at the end."""
    deadline = time.monotonic() + timeout
    while (left := processes_in(work)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_leftovers(work: Path) -> None:
    """A failing test must not leave its stack running on the shared machine."""
    for pid in processes_in(work):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
