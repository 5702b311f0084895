"""The processes a stack starts, recorded so that nothing can lose track of them.

A pid alone is not an identity: once a process is gone its pid is reused. A record holds
the pid and the process's start time (`/proc/<pid>/stat`, field 22), and a process is
only ever signalled while both still match. Every process the stack starts leads its own
session (`start_new_session=True`), so stopping one stops its whole group, including
workers it forked (`mlflow server` runs uvicorn under it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot); None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRecord:
    role: str
    pid: int
    started: int

    @classmethod
    def of(cls, role: str, pid: int) -> ProcessRecord:
        return cls(role, pid, start_ticks(pid) or 0)

    @classmethod
    def from_json(cls, raw: Any) -> ProcessRecord | None:
        if not isinstance(raw, dict):
            return None
        role, pid, started = raw.get("role"), raw.get("pid"), raw.get("started")
        if isinstance(role, str) and isinstance(pid, int) and isinstance(started, int):
            return cls(role, pid, started)
        return None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "pid": self.pid, "started": self.started}

    def alive(self) -> bool:
        return start_ticks(self.pid) == self.started

    def group(self) -> list[int]:
        """Live members of the process group this process leads (itself included)."""
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == self.pid and (start_ticks(pid) or -1) >= self.started:
                    members.append(pid)
        return members

    def stop(self, grace: float = 10.0) -> bool:
        """SIGTERM the group (also when only workers of a dead leader are left), SIGKILL
        what is left after `grace`; True if anything was running."""
        if not self.group():
            return False
        self._signal_group(signal.SIGTERM)
        if not _wait(lambda: not self.group(), grace):
            self._signal_group(signal.SIGKILL)
            _wait(lambda: not self.group(), 5.0)
        return True

    def interrupt(self, grace: float) -> bool:
        """SIGTERM this one process (not a group leader: `aliasflow up` under make) and wait
        for it to exit, for its own clean-up to run; True if it was running."""
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGTERM)
        _wait(lambda: not self.alive(), grace)
        return True

    def _signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
