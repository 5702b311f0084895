"""The `local` runtime: model servers as child processes, each deployment on its own port.

It is the embedded default (`make up`, the demo, the ACI emulator's backing) and runs
exactly the program the server image runs, `aliasflow serve`, so what works here works
in a container. It executes the planner's actions and nothing more: it never decides
whether to hot swap or recreate, and the reconciler's health gate (ready and serving the
desired version) stays the reconciler's. What it adds is the I/O: processes, ports,
the admin call for a hot swap, and an inventory on disk so that a restarted controller
adopts the servers still alive instead of starting duplicates.

A deployment is served on `127.0.0.1:<spec.port>`, the address its manifest names, for as
long as it exists: a small proxy holds that port (`proxy.py` says why a proxy), and each
server listens on a free loopback port behind it, so a recreate stays blue/green (the new
server is ready before the proxy points at it and the old one stops) without a failed
request. A port something else holds is a `PortInUse` status, never a silent move.
`stable_ports=False` (the emulators, where every container group has an address of its
own) serves each server on its free port directly, as the endpoint.

Not enforced locally: `cpu`, `memory_gb` and `image`. They still feed the spec hash, so
changing them recreates the server, as it would on ACI.

One controller per data dir: two controllers acting on the same deployments at once
would each roll out their own servers.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from controller.core.errors import (
    HealthTimeoutError,
    RolloutRejectedError,
    RuntimeUnavailableError,
)
from controller.core.types import ActualState, DesiredState, Traffic
from controller.runtimes.common import (
    ADMIN_KEY_SCHEME,
    NameLocks,
    redact,
    server_key,
    workload_env,
)
from controller.runtimes.hotswap import request_api_keys, request_hot_swap, request_traffic
from controller.runtimes.local.frontdoor import FrontDoors
from controller.runtimes.local.process import is_our_server, log_tail, start_server, stop_server
from controller.runtimes.local.state import LocalState, ProxyRecord, ServerRecord, state_file
from controller.runtimes.netutil import ProcessDiedError, free_port, wait_until_ready
from controller.runtimes.probe import probe_server

log = logging.getLogger(__name__)

# What a child inherits from the controller's environment: process basics only, so a
# local server sees what a container would (the manifest's env and secretEnv), and none
# of the controller's own secrets (API token, webhook secret, cloud credentials).
INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
_PORT_ATTEMPTS = 3


class LocalRuntime:
    """Runs `aliasflow serve` processes; owns what `data_dir/local/state.json` lists.

    CPU and memory limits are not enforced by this runtime (see the module docstring).
    """

    kind = "local"

    def __init__(
        self,
        data_dir: Path,
        admin_token: str,
        tracking_uri: str,
        python: str = sys.executable,
        *,
        stop_grace_seconds: float = 10.0,
        log_files_kept: int = 3,
        stable_ports: bool = True,
    ) -> None:
        self.root = Path(data_dir) / "local"
        self.log_dir = self.root / "logs"
        # The controller's secret: each server gets its own key (`server_key`).
        self._admin_secret = admin_token
        self._tracking_uri = tracking_uri
        self._python = python
        self._grace = stop_grace_seconds
        self._log_files_kept = log_files_kept
        self._state = state_file(self.root / "state.json")
        # Servers this instance started: kept to fail fast on exit and to reap them.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._children_lock = threading.Lock()
        # The reconciler runs one pass per deployment at a time; this makes it a fact.
        self._name_lock = NameLocks()
        self._stable = stable_ports
        self._doors = FrontDoors(self.root, python, self.log_dir, stop_grace_seconds)

    @property
    def state_file(self) -> Path:
        return self._state.path

    @property
    def state_error(self) -> str | None:
        """Why the state file could not be read last time, for status; None if it read."""
        return self._state.error

    # -- Runtime protocol ---------------------------------------------------------------

    def observe(self, name: str) -> ActualState | None:
        self._reap()
        state = self._state.read()
        record = state.servers.get(name)
        return None if record is None else self._actual(name, record, state.proxies.get(name))

    def list_owned(self) -> list[ActualState]:
        self._reap()
        state = self._state.read()
        return [
            self._actual(name, record, state.proxies.get(name))
            for name, record in sorted(state.servers.items())
        ]

    def deploy(self, desired: DesiredState) -> ActualState:
        """A blue/green rollout: a new server on its own port must be ready before the old
        one (if any) is stopped, so creating and replacing are the same operation."""
        with self._name_lock(desired.name):
            return self._roll_out(desired)

    def hotswap(self, desired: DesiredState, current: ActualState | None = None) -> ActualState:
        with self._name_lock(desired.name):
            return self._hotswap(desired)

    def set_traffic(
        self, desired: DesiredState, traffic: Traffic, current: ActualState | None = None
    ) -> ActualState:
        return self._tell_server(
            desired,
            "split traffic on",
            lambda endpoint, key: request_traffic(endpoint, key, desired, traffic),
        )

    def set_api_keys(
        self, desired: DesiredState, current: ActualState | None = None
    ) -> ActualState:
        return self._tell_server(
            desired,
            "give API keys to",
            lambda endpoint, key: request_api_keys(endpoint, key, desired),
        )

    def _tell_server(
        self, desired: DesiredState, purpose: str, send: Callable[[str, str], None]
    ) -> ActualState:
        """One signed admin request to the deployment's running server
        (`send(endpoint, key)`), then what it looks like after it."""
        with self._name_lock(desired.name):
            state = self._state.read()
            record = state.servers.get(desired.name)
            if record is None or not is_our_server(record.pid, record.port):
                raise RuntimeUnavailableError(
                    f"{desired.name}: no running server to {purpose}; it needs a recreate"
                )
            send(record.endpoint, self._key(desired.name))
            return self._actual(desired.name, record, state.proxies.get(desired.name))

    def delete(self, name: str) -> None:
        """Stop the proxy and the server (and any half-started one) and forget them;
        unknown is a no-op."""
        self._delete(name)

    def stop_all(self) -> list[str]:
        """Stop every owned process (`aliasflow down`; the controller's exit does not),
        and say which: one line per process stopped."""
        stopped: list[str] = []
        for name in self._state.read().names():
            stopped += self._delete(name)
        return stopped

    def _delete(self, name: str) -> list[str]:
        """The records are dropped only after the processes are gone, so a failed stop
        stays in the inventory and the next pass retries it."""
        stopped: list[str] = []
        with self._name_lock(name):
            state = self._state.read()
            door = state.proxies.get(name)
            try:
                if door is not None and self._doors.alive(door):
                    self._doors.stop(door)
                    stopped.append(f"{name}: proxy on port {door.port} (pid {door.pid})")
                for record in (state.pending.get(name), state.servers.get(name)):
                    if record is not None and is_our_server(record.pid, record.port):
                        self._stop(record)
                        stopped.append(
                            f"{name}: model server on port {record.port} (pid {record.pid})"
                        )
            except OSError as exc:
                raise RuntimeUnavailableError(f"{name}: cannot stop its processes: {exc}") from exc

            def forget(current: LocalState) -> None:
                current.servers.pop(name, None)
                current.pending.pop(name, None)
                current.proxies.pop(name, None)

            self._state.update(forget)
        return stopped

    # -- rollouts -----------------------------------------------------------------------

    def _roll_out(self, desired: DesiredState) -> ActualState:
        env = self._child_env(desired)
        self._stop_stale_pending(desired.name)
        state = self._state.read()
        old, door = state.servers.get(desired.name), state.proxies.get(desired.name)
        # The port first: a busy one fails the rollout before a server starts for nothing.
        listener = self._doors.claim(desired.name, desired.port, door) if self._stable else None
        try:
            new = self._start_until_ready(desired, env)
            try:
                new_door = self._open_door(desired, new, door, listener)
            except BaseException:
                self._discard_pending(desired.name, new)
                raise
        finally:
            if listener is not None:
                listener.close()  # the proxy holds its own copy

        # Record the new server before touching the old one: a crash in between leaves
        # an old process running untracked-but-harmless rather than nothing serving.
        def promote(state: LocalState) -> None:
            state.servers[desired.name] = new
            state.pending.pop(desired.name, None)
            if new_door is not None:
                state.proxies[desired.name] = new_door

        self._state.update(promote)
        try:
            if door is not None and new_door is not None and door != new_door:
                self._doors.stop(door)
            if old is not None and (old.pid, old.port) != (new.pid, new.port):
                self._stop(old)
        except OSError as exc:
            log.warning("%s: could not stop a replaced process: %s", desired.name, exc)
        self._prune_logs(desired.name, keep=Path(new.log_file))
        return self._actual(desired.name, new, new_door)

    def _open_door(
        self,
        desired: DesiredState,
        new: ServerRecord,
        door: ProxyRecord | None,
        listener: socket.socket | None,
    ) -> ProxyRecord | None:
        """Point the deployment's port at `new`: the live proxy switches, or a new one
        starts on `listener`. Returns once new connections reach `new`."""
        if not self._stable:
            return None
        if listener is None and door is not None:
            try:
                self._doors.point(door, new.port)
                return door
            except OSError as exc:
                log.warning(
                    "%s: the proxy on port %s did not answer (%s); replacing it",
                    desired.name,
                    door.port,
                    exc,
                )
                self._doors.stop(door)
        own = listener or self._doors.take(desired.name, desired.port)
        try:
            return self._doors.open(desired.name, own, new.port, self._process_env())
        finally:
            if own is not listener:
                own.close()

    def _start_until_ready(self, desired: DesiredState, env: dict[str, str]) -> ServerRecord:
        """Start a server on a free port and wait for /readyz; on any failure stop it."""
        secrets = [*desired.secret_values, self._key(desired.name)]
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = free_port()
            log_file = self.log_dir / f"{desired.name}-{port}.log"
            env["ALIASFLOW_SERVER_PORT"] = str(port)
            self._write_log_header(log_file, desired, port)
            try:
                child = start_server(self._python, port, env, log_file)
            except OSError as exc:
                raise RuntimeUnavailableError(
                    f"{desired.name}: cannot start {self._python} -m aliasflow_cli.main serve: "
                    f"{exc}"
                ) from exc
            self._remember(child)
            record = ServerRecord(
                pid=child.pid,
                port=port,
                endpoint=f"http://127.0.0.1:{port}",
                spec_hash=desired.spec_hash,
                model_version=desired.model_version,
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                log_file=str(log_file),
                admin_key=ADMIN_KEY_SCHEME,
            )
            # Recorded as pending first, so a controller that dies mid-wait leaves an
            # orphan the next rollout of this name will find and stop.
            self._state.update(_set_pending(desired.name, record))
            try:
                wait_until_ready(
                    f"{record.endpoint}/readyz",
                    timeout=desired.health_timeout_seconds,
                    process=child,
                )
                return record
            except ProcessDiedError:
                self._discard_pending(desired.name, record)
                tail = redact(log_tail(log_file), secrets)
                if "address already in use" in tail.lower() and attempt < _PORT_ATTEMPTS:
                    continue  # another process took the free port first; pick another
                raise RolloutRejectedError(
                    f"{desired.name}: the model server for {desired.model_uri} exited with "
                    f"code {child.returncode} before it was ready; the previous server, if "
                    f"any, keeps serving. Log {log_file}:\n{tail}"
                ) from None
            except TimeoutError:
                self._discard_pending(desired.name, record)
                tail = redact(log_tail(log_file), secrets)
                raise HealthTimeoutError(
                    f"{desired.name}: the model server for {desired.model_uri} was not ready "
                    f"within {desired.health_timeout_seconds}s and was stopped; the previous "
                    f"server, if any, keeps serving. Log {log_file}:\n{tail}"
                ) from None
            except BaseException:
                self._discard_pending(desired.name, record)
                raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _hotswap(self, desired: DesiredState) -> ActualState:
        record = self._state.read().servers.get(desired.name)
        if record is None or not is_our_server(record.pid, record.port):
            raise RuntimeUnavailableError(
                f"{desired.name}: no running server to hot swap; it needs a recreate"
            )
        request_hot_swap(record.endpoint, self._key(desired.name), desired, record.model_version)
        swapped = replace(record, model_version=desired.model_version)

        def set_version(state: LocalState) -> None:
            current = state.servers.get(desired.name)
            if current is not None and (current.pid, current.port) == (record.pid, record.port):
                state.servers[desired.name] = swapped

        self._state.update(set_version)
        return self._actual(desired.name, swapped, self._state.read().proxies.get(desired.name))

    # -- observing ----------------------------------------------------------------------

    def _actual(self, name: str, record: ServerRecord, door: ProxyRecord | None) -> ActualState:
        endpoint: str | None = record.endpoint
        gone = None
        if not is_our_server(record.pid, record.port):
            gone = f"server process {record.pid} on port {record.port} is gone"
        if self._stable:
            endpoint = door.endpoint if door is not None else None
            if gone is None and door is None:
                gone = "no proxy holds the deployment's port yet"
            elif gone is None and door is not None and not self._doors.alive(door):
                gone = f"the proxy on port {door.port} (pid {door.pid}) is gone"
        if gone is not None or endpoint is None:
            return ActualState(
                name=name,
                spec_hash=record.spec_hash,
                model_version=record.model_version,
                running=False,
                endpoint=endpoint,
                detail=f"{gone} (log: {record.log_file})",
            )
        probe = probe_server(endpoint)
        detail = probe.detail("server process is running but /readyz is not ready")
        return ActualState(
            name=name,
            spec_hash=record.spec_hash,
            model_version=record.model_version,
            running=True,
            endpoint=endpoint,
            served_version=probe.served_version,
            ready=probe.ready,
            detail=detail,
            legacy_admin_key=record.admin_key != ADMIN_KEY_SCHEME,
            **probe.traffic(),
        )

    # -- helpers --------------------------------------------------------------------------

    def _process_env(self) -> dict[str, str]:
        env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        env["PYTHONUNBUFFERED"] = "1"  # so the log tail of a failed start is complete
        return env

    def _child_env(self, desired: DesiredState) -> dict[str, str]:
        env = self._process_env()
        # Secrets only ever go here, into the child's environment.
        env.update(
            workload_env(
                desired, tracking_uri=self._tracking_uri, admin_token=self._key(desired.name)
            ).merged()
        )
        env["ALIASFLOW_SERVER_HOST"] = "127.0.0.1"
        return env

    def _key(self, name: str) -> str:
        return server_key(self._admin_secret, name)

    def _write_log_header(self, log_file: Path, desired: DesiredState, port: int) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with open(log_file, "a", encoding="utf-8") as handle:
            handle.write(
                f"--- aliasflow local runtime: {desired.name} {desired.model_uri} "
                f"on 127.0.0.1:{port} at {stamp} ---\n"
            )

    def _stop(self, record: ServerRecord) -> None:
        with self._children_lock:
            child = self._children.pop(record.pid, None)
        stop_server(record.pid, record.port, self._grace, child)

    def _discard_pending(self, name: str, record: ServerRecord) -> None:
        self._stop(record)

        def drop(state: LocalState) -> None:
            if state.pending.get(name) == record:
                del state.pending[name]

        self._state.update(drop)

    def _stop_stale_pending(self, name: str) -> None:
        stale = self._state.read().pending.get(name)
        if stale is not None:
            log.warning("%s: stopping a half-started server left behind (pid %s)", name, stale.pid)
            self._discard_pending(name, stale)

    def _remember(self, child: subprocess.Popen[bytes]) -> None:
        with self._children_lock:
            self._children[child.pid] = child

    def _reap(self) -> None:
        with self._children_lock:
            for pid, child in list(self._children.items()):
                if child.poll() is not None:
                    del self._children[pid]

    def _prune_logs(self, name: str, keep: Path) -> None:
        """Keep the newest few log files of a deployment: enough to see why one died."""
        pattern = re.compile(rf"{re.escape(name)}-\d+\.log")
        logs = sorted(
            (path for path in self.log_dir.glob("*.log") if pattern.fullmatch(path.name)),
            key=lambda path: path.stat().st_mtime,
            reverse=True,
        )
        for old in logs[self._log_files_kept :]:
            if old != keep:
                old.unlink(missing_ok=True)


def _set_pending(name: str, record: ServerRecord) -> Callable[[LocalState], None]:
    def change(state: LocalState) -> None:
        state.pending[name] = record

    return change
