"""The `local` runtime: model servers as child processes on free loopback ports.

It is the embedded default (`make up`, the demo, the ACI emulator's backing) and runs
exactly the program the server image runs, `aliasflow serve`, so what works here works
in a container. It executes the planner's actions and nothing more: it never decides
whether to hot swap or recreate, and the reconciler's health gate (ready and serving the
desired version) stays the reconciler's. What it adds is the I/O: processes, ports,
the admin call for a hot swap, and an inventory on disk so that a restarted controller
adopts the servers still alive instead of starting duplicates.

Not enforced locally: `cpu`, `memory_gb`, `image` and the manifest's `port` (a free
loopback port is chosen; the endpoint is reported instead). They still feed the spec
hash, so changing them recreates the server, as it would on ACI.

One controller per data dir: two controllers acting on the same deployments at once
would each roll out their own servers.
"""

from __future__ import annotations

import logging
import os
import re
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
from controller.core.types import ActualState, DesiredState
from controller.runtimes.common import NameLocks, redact, workload_env
from controller.runtimes.hotswap import request_hot_swap
from controller.runtimes.local.process import is_our_server, log_tail, start_server, stop_server
from controller.runtimes.local.state import LocalState, ServerRecord, state_file
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
    ) -> None:
        self.root = Path(data_dir) / "local"
        self.log_dir = self.root / "logs"
        self._admin_token = admin_token
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
        record = self._state.read().servers.get(name)
        return None if record is None else self._actual(name, record)

    def list_owned(self) -> list[ActualState]:
        self._reap()
        servers = self._state.read().servers
        return [self._actual(name, record) for name, record in sorted(servers.items())]

    def deploy(self, desired: DesiredState) -> ActualState:
        """A blue/green rollout: a new server on its own port must be ready before the old
        one (if any) is stopped, so creating and replacing are the same operation."""
        with self._name_lock(desired.name):
            return self._roll_out(desired)

    def hotswap(self, desired: DesiredState, current: ActualState | None = None) -> ActualState:
        with self._name_lock(desired.name):
            return self._hotswap(desired)

    def delete(self, name: str) -> None:
        """Stop the server (and any half-started one) and forget it; unknown is a no-op.

        The record is dropped only after the process is gone, so a failed stop stays in
        the inventory and the next pass retries it.
        """
        with self._name_lock(name):
            state = self._state.read()
            for record in (state.pending.get(name), state.servers.get(name)):
                if record is not None:
                    try:
                        self._stop(record)
                    except OSError as exc:
                        raise RuntimeUnavailableError(
                            f"{name}: cannot stop server pid {record.pid}: {exc}"
                        ) from exc

            def forget(current: LocalState) -> None:
                current.servers.pop(name, None)
                current.pending.pop(name, None)

            self._state.update(forget)

    def stop_all(self) -> None:
        """Stop every owned server (`aliasflow down`); the controller's exit does not."""
        state = self._state.read()
        for name in sorted(state.servers.keys() | state.pending.keys()):
            self.delete(name)

    # -- rollouts -----------------------------------------------------------------------

    def _roll_out(self, desired: DesiredState) -> ActualState:
        env = self._child_env(desired)
        self._stop_stale_pending(desired.name)
        old = self._state.read().servers.get(desired.name)
        new = self._start_until_ready(desired, env)

        # Record the new server before touching the old one: a crash in between leaves
        # an old process running untracked-but-harmless rather than nothing serving.
        def promote(state: LocalState) -> None:
            state.servers[desired.name] = new
            state.pending.pop(desired.name, None)

        self._state.update(promote)
        if old is not None and (old.pid, old.port) != (new.pid, new.port):
            try:
                self._stop(old)
            except OSError as exc:
                log.warning(
                    "%s: could not stop the replaced server pid %s: %s", desired.name, old.pid, exc
                )
        self._prune_logs(desired.name, keep=Path(new.log_file))
        return self._actual(desired.name, new)

    def _start_until_ready(self, desired: DesiredState, env: dict[str, str]) -> ServerRecord:
        """Start a server on a free port and wait for /readyz; on any failure stop it."""
        secrets = [*desired.secret_values, self._admin_token]
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
        request_hot_swap(record.endpoint, self._admin_token, desired, record.model_version)
        swapped = replace(record, model_version=desired.model_version)

        def set_version(state: LocalState) -> None:
            current = state.servers.get(desired.name)
            if current is not None and (current.pid, current.port) == (record.pid, record.port):
                state.servers[desired.name] = swapped

        self._state.update(set_version)
        return self._actual(desired.name, swapped)

    # -- observing ----------------------------------------------------------------------

    def _actual(self, name: str, record: ServerRecord) -> ActualState:
        if not is_our_server(record.pid, record.port):
            return ActualState(
                name=name,
                spec_hash=record.spec_hash,
                model_version=record.model_version,
                running=False,
                endpoint=record.endpoint,
                detail=f"server process {record.pid} on port {record.port} is gone "
                f"(log: {record.log_file})",
            )
        probe = probe_server(record.endpoint)
        detail = probe.detail("server process is running but /readyz is not ready")
        return ActualState(
            name=name,
            spec_hash=record.spec_hash,
            model_version=record.model_version,
            running=True,
            endpoint=record.endpoint,
            served_version=probe.served_version,
            ready=probe.ready,
            detail=detail,
        )

    # -- helpers --------------------------------------------------------------------------

    def _child_env(self, desired: DesiredState) -> dict[str, str]:
        env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        env["PYTHONUNBUFFERED"] = "1"  # so the log tail of a failed start is complete
        # Secrets only ever go here, into the child's environment.
        env.update(
            workload_env(
                desired, tracking_uri=self._tracking_uri, admin_token=self._admin_token
            ).merged()
        )
        env["ALIASFLOW_SERVER_HOST"] = "127.0.0.1"
        return env

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
