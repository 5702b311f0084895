"""Loopback helpers shared by the local runtime, the dev stack and the tests.

Child processes (model servers, an MLflow server) are started on free loopback ports and
are only considered up once they answer HTTP, never after a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ProcessDiedError(RuntimeError):
    """The process we were waiting for exited before it became ready."""


def wait_until_ready(
    url: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    interval: float = 0.1,
) -> None:
    """Poll `url` until it answers 2xx; fail fast if `process` exits meanwhile."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ProcessDiedError(
                    f"exited with code {process.returncode} before {url} was ready"
                )
            try:
                response = client.get(url)
                if response.is_success:
                    return
                last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = type(exc).__name__
            time.sleep(interval)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last_error})")


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate politely, then kill: a test or `make up` must never leave strays.

    A process started in its own session (`start_new_session=True`) leads a process
    group; `mlflow server` forks its web server workers into it, so the whole group is
    signalled, not just the leader.
    """
    if process.poll() is not None:
        return
    _signal(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal(process, signal.SIGKILL)
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # Workers that outlived their leader.
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        leads_group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        if leads_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
