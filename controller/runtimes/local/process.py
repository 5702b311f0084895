"""Model-server processes: start one, tell whether a pid is still ours, stop it.

Servers run in their own session (`start_new_session=True`) so they outlive the
controller, which means the controller often stops processes that are not its children.
A pid alone is not proof of ownership once the original process is gone (pids are
reused), so before trusting or signalling a pid we check `/proc/<pid>/cmdline` is still
our serve command on the recorded port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

SERVE_MODULE = "aliasflow_cli.main"


def serve_command(python: str, port: int) -> list[str]:
    return [python, "-m", SERVE_MODULE, "serve", "--host", "127.0.0.1", "--port", str(port)]


def start_server(
    python: str, port: int, env: Mapping[str, str], log_file: Path
) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        # The child keeps its own copy of the descriptor; ours can close at once.
        return subprocess.Popen(
            serve_command(python, port),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def is_our_server(pid: int, port: int) -> bool:
    """True while `pid` is alive and still runs our serve command on `port`."""
    if pid <= 0:
        return False
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie (exited, not yet reaped) has an empty cmdline: that is dead too.
    args = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    if SERVE_MODULE not in args or "serve" not in args:
        return False
    try:
        return args[args.index("--port") + 1] == str(port)
    except (ValueError, IndexError):
        return False


def stop_server(
    pid: int,
    port: int,
    grace: float,
    child: subprocess.Popen[bytes] | None = None,
) -> None:
    """SIGTERM the server's process group, SIGKILL it after `grace` seconds.

    Does nothing when the pid no longer belongs to our server, so a stale record can
    never make us signal some unrelated process that inherited the pid.
    """
    if is_our_server(pid, port):
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, port, grace, child):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, port, 5.0, child)
    if child is not None:
        # Reap our own child so it does not linger as a zombie.
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1.0)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the server leads its own session, so pgid == pid


def _wait_gone(pid: int, port: int, timeout: float, child: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if child is not None and child.poll() is not None:
            return True
        if not is_our_server(pid, port):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def log_tail(log_file: Path, max_lines: int = 20, max_bytes: int = 8192) -> str:
    """The end of a server's log, for an error message that says why it failed."""
    try:
        with open(log_file, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-max_lines:])
