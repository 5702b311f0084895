"""Model-server and proxy processes: start one, tell whether a pid is still ours, stop it.

Servers and proxies run in their own session (`start_new_session=True`) so they outlive
the controller, which means the controller often stops processes that are not its
children. A pid alone is not proof of ownership once the original process is gone (pids
are reused), so before trusting or signalling a pid we check `/proc/<pid>/cmdline` is
still our program on the recorded port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

SERVE_MODULE = "aliasflow_cli.main"
PROXY_MODULE = "controller.runtimes.local.proxy"


def serve_command(python: str, port: int) -> list[str]:
    return [python, "-m", SERVE_MODULE, "serve", "--host", "127.0.0.1", "--port", str(port)]


def start_server(
    python: str, port: int, env: Mapping[str, str], log_file: Path
) -> subprocess.Popen[bytes]:
    return start_logged(serve_command(python, port), env, log_file)


def start_logged(
    command: list[str], env: Mapping[str, str], log_file: Path, pass_fds: tuple[int, ...] = ()
) -> subprocess.Popen[bytes]:
    """Start `command` in its own session, its output appended to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        # The child keeps its own copy of the descriptor; ours can close at once.
        return subprocess.Popen(
            command,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
        )


def command_line(pid: int) -> list[str]:
    """The arguments of a live process; [] when it is gone (or a zombie) or not readable."""
    if pid <= 0:
        return []
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    # A zombie (exited, not yet reaped) has an empty cmdline: that is dead too.
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _option(args: list[str], name: str) -> str | None:
    try:
        return args[args.index(name) + 1]
    except (ValueError, IndexError):
        return None


def is_our_server(pid: int, port: int) -> bool:
    """True while `pid` is alive and still runs our serve command on `port`."""
    args = command_line(pid)
    if SERVE_MODULE not in args or "serve" not in args:
        return False
    return _option(args, "--port") == str(port)


def is_our_proxy(pid: int, port: int, control: str | None = None) -> bool:
    """True while `pid` is alive and still runs our proxy on `port` (with `control`)."""
    args = command_line(pid)
    if PROXY_MODULE not in args or _option(args, "--port") != str(port):
        return False
    return control is None or _option(args, "--control") == control


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
    stop_owned(pid, lambda: is_our_server(pid, port), grace, child)


def stop_owned(
    pid: int,
    still_ours: Callable[[], bool],
    grace: float,
    child: subprocess.Popen[bytes] | None = None,
) -> None:
    """Stop the process group led by `pid` while `still_ours()` says it is ours."""
    if still_ours():
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(still_ours, grace, child):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(still_ours, 5.0, child)
    if child is not None:
        # Reap our own child so it does not linger as a zombie.
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1.0)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the process leads its own session, so pgid == pid


def _wait_gone(
    still_ours: Callable[[], bool], timeout: float, child: subprocess.Popen[bytes] | None
) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if child is not None and child.poll() is not None:
            return True
        if not still_ours():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def listening_pids(port: int) -> list[int]:
    """Processes of this user listening on TCP `port` (any address), from /proc.

    Only for error messages and for finding our own orphans: it reads what the kernel
    shows, without signalling anything.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    if not inodes:
        return []
    targets = {f"socket:[{inode}]" for inode in inodes}
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            descriptors = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in descriptors:
            with contextlib.suppress(OSError):
                if os.readlink(fd) in targets:
                    found.append(int(proc.name))
                    break
    return sorted(found)


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
