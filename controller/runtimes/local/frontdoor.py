"""The runtime's side of the proxies that hold each local deployment's stable port.

`proxy.py` is the program; this module claims the port (a clear error when something else
holds it), starts a proxy with the bound socket, points it at a server, and stops it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import socket
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from controller.core.errors import RuntimeUnavailableError
from controller.core.records import Reason
from controller.runtimes.local.process import (
    PROXY_MODULE,
    command_line,
    is_our_proxy,
    listening_pids,
    log_tail,
    start_logged,
    stop_owned,
)
from controller.runtimes.local.state import ProxyRecord

HOST = "127.0.0.1"
CONTROL_TIMEOUT_SECONDS = 5.0
START_TIMEOUT_SECONDS = 15.0


def control_address(control_id: str) -> str:
    """An abstract Unix socket name: no file to clean up, no path-length limit."""
    return f"\0aliasflow-proxy-{control_id}"


class PortInUseError(RuntimeUnavailableError):
    """Another program holds a local deployment's port; retried, as it may be freed."""

    reason = Reason.PORT_IN_USE


class FrontDoors:
    def __init__(self, root: Path, python: str, log_dir: Path, grace: float) -> None:
        # Control sockets are per data dir, deployment and port: a proxy on a new port
        # starts beside the old one for a moment.
        self._scope = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
        self._python = python
        self._log_dir = log_dir
        self._grace = grace

    def control_id(self, name: str, port: int) -> str:
        return f"{self._scope}-{name}-{port}"

    def alive(self, door: ProxyRecord) -> bool:
        return is_our_proxy(door.pid, door.port, door.control)

    def claim(self, name: str, port: int, current: ProxyRecord | None) -> socket.socket | None:
        """The bound socket for a new proxy, or None when the live `current` holds `port`.

        Raises `PortInUseError` before any server is started for nothing. An orphan proxy
        of this very deployment (a controller killed mid-rollout) is stopped and replaced.
        """
        if current is not None and current.port == port and self.alive(current):
            return None
        return self.take(name, port)

    def take(self, name: str, port: int) -> socket.socket:
        """Bind `port` for a new proxy of `name`, stopping an orphan proxy of it first."""
        try:
            return bind_loopback(port)
        except PortInUseError:
            orphans = [
                pid
                for pid in listening_pids(port)
                if is_our_proxy(pid, port, self.control_id(name, port))
            ]
            if not orphans:
                raise
        for pid in orphans:
            self._stop_orphan(pid, port)
        return bind_loopback(port)

    def _stop_orphan(self, pid: int, port: int) -> None:
        stop_owned(pid, lambda: is_our_proxy(pid, port), self._grace)

    def open(
        self,
        name: str,
        listener: socket.socket,
        backend_port: int,
        env: Mapping[str, str],
    ) -> ProxyRecord:
        """Start a proxy on `listener` forwarding to `backend_port`; return once it answers."""
        port = int(listener.getsockname()[1])
        control = self.control_id(name, port)
        log_file = self._log_dir / f"{name}-proxy-{port}.log"
        command = [
            self._python,
            "-m",
            PROXY_MODULE,
            "--name",
            name,
            "--port",
            str(port),
            "--listen-fd",
            str(listener.fileno()),
            "--backend",
            str(backend_port),
            "--control",
            control,
        ]
        try:
            child = start_logged(command, env, log_file, pass_fds=(listener.fileno(),))
        except OSError as exc:
            raise RuntimeUnavailableError(f"{name}: cannot start the port proxy: {exc}") from exc
        door = ProxyRecord(
            pid=child.pid,
            port=port,
            control=control,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            log_file=str(log_file),
        )
        self._wait_answering(door, child)
        return door

    def point(self, door: ProxyRecord, backend_port: int) -> None:
        """Send new connections to `backend_port`; returns once the proxy has switched."""
        answer = _ask(door.control, f"route {backend_port}")
        if answer != f"ok {backend_port}":
            raise OSError(f"proxy answered {answer!r}")

    def stop(self, door: ProxyRecord, child: subprocess.Popen[bytes] | None = None) -> None:
        stop_owned(door.pid, lambda: self.alive(door), self._grace, child)

    def _wait_answering(self, door: ProxyRecord, child: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if child.poll() is not None:
                raise RuntimeUnavailableError(
                    f"the proxy for port {door.port} exited with code {child.returncode}; "
                    f"log {door.log_file}:\n{log_tail(Path(door.log_file))}"
                )
            with contextlib.suppress(OSError):
                _ask(door.control, "status")
                return
            if time.monotonic() >= deadline:
                self.stop(door, child)
                raise RuntimeUnavailableError(
                    f"the proxy for port {door.port} did not answer within "
                    f"{START_TIMEOUT_SECONDS:.0f}s and was stopped; log {door.log_file}"
                )
            time.sleep(0.02)


def bind_loopback(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port`, or `PortInUseError` naming who holds it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortInUseError(port_in_use_message(port, exc)) from exc
        raise RuntimeUnavailableError(f"cannot listen on {HOST}:{port}: {exc}") from exc
    return sock


def port_in_use_message(port: int, exc: OSError) -> str:
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges this controller does not have; set spec.port"
    holders = [_describe(pid) for pid in listening_pids(port)]
    who = ", ".join(holders) if holders else "another program"
    return (
        f"port {port} on {HOST} is already in use by {who}; a local deployment is served "
        f"on its manifest's port only: free the port or change spec.port"
    )


def _describe(pid: int) -> str:
    args = command_line(pid)
    shown = " ".join(args)
    return f"pid {pid} ({shown[:80]})" if shown else f"pid {pid}"


def _ask(control: str, request: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONTROL_TIMEOUT_SECONDS)
        sock.connect(control_address(control))
        sock.sendall(request.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode(errors="replace").strip()
