"""Backed mode: each active revision's replicas are real `aliasflow serve` processes.

A replica runs with its revision's container env (template.containers[0].env, secretRef
values read from the app's secrets when the replica starts, as a container would get
them, plus the platform's built-in CONTAINER_APP_* variables) on a free loopback port;
the container's `targetPort` cannot be shared by several local processes, so the port
differs but the contract does not. A replica that is restarted, or added by a
scale-out, comes back from that same revision env, in particular its boot-time
`MODEL_URI` (docs: revisions, a revision is an immutable snapshot; secret changes reach
containers only when they restart) unless, linked to a controller, it asks which
version to load.

`Ingress` is the app's front door: a loopback reverse proxy that picks a revision by
the traffic weights (smooth weighted round robin, so a split is exact over a cycle, not
just on average) and round-robins over that revision's ready replicas.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.runtimes.local.process import serve_command
from controller.runtimes.netutil import free_port
from tests.containerapps_emulator.state import App, EmulatorState, Replica, Revision, now_iso

log = logging.getLogger(__name__)
# Process basics a container would have too; nothing of the test process's own secrets.
_INHERITED = ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
_HOP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


class ReplicaProcesses:
    """Starts, restarts and stops the server processes behind replicas."""

    def __init__(self, state: EmulatorState, ready_timeout: float = 60.0) -> None:
        self._state = state
        self._ready_timeout = ready_timeout
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs = Path(tempfile.mkdtemp(prefix="containerapps-replicas-"))
        self._lock = threading.Lock()

    # -- hooks the state calls ------------------------------------------------------------

    def provision(self, app: App, revision: Revision) -> None:
        threading.Thread(
            target=self._provision, args=(app, revision), daemon=True, name="aca-provision"
        ).start()

    def stop_revision(self, app: App, revision: Revision) -> None:
        for replica in list(revision.replicas):
            self._kill(replica)

    def restart_revision(self, app: App, revision: Revision) -> None:
        for replica in list(revision.replicas):
            self.restart_replica(app, revision, replica)

    # -- test hooks -------------------------------------------------------------------------

    def restart_replica(self, app: App, revision: Revision, replica: Replica) -> None:
        """The container exits and comes back from the revision's environment."""
        self._kill(replica)
        replica.restarts += 1
        self._start(app, revision, replica)
        self._wait_ready(replica)

    def scale(self, app: App, revision: Revision, replicas: int) -> None:
        while len(revision.replicas) < replicas:
            replica = self._new_replica(app, revision)
            self._wait_ready(replica)
        while len(revision.replicas) > replicas:
            self._kill(revision.replicas.pop())

    def stop_all(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
        for proc in procs:
            _terminate(proc)

    # -- internals --------------------------------------------------------------------------

    def _provision(self, app: App, revision: Revision) -> None:
        minimum, _ = revision.scale
        try:
            if revision.error:
                raise RuntimeError(revision.error)
            replicas = [self._new_replica(app, revision) for _ in range(minimum)]
            for replica in replicas:
                self._wait_ready(replica)
            outcome = "Provisioned"
        except (RuntimeError, OSError) as exc:
            revision.error = str(exc)
            outcome = "Failed"
        with self._state.lock:
            revision.provisioning = outcome
            operation = app.operation
            if operation is not None and operation.revision == revision.name:
                self._state.finish(app, operation)

    def _new_replica(self, app: App, revision: Revision) -> Replica:
        replica = Replica(f"{revision.name}-{uuid.uuid4().hex[:10]}", now_iso())
        revision.replicas.append(replica)
        self._start(app, revision, replica)
        return replica

    def _start(self, app: App, revision: Revision, replica: Replica) -> None:
        port = free_port()
        env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
        env["PYTHONUNBUFFERED"] = "1"
        # docs: environment-variables, "Built-in environment variables": the platform
        # gives every replica these (and the app's hostname and DNS suffix, not used here).
        env["CONTAINER_APP_NAME"] = app.name
        env["CONTAINER_APP_REVISION"] = revision.name
        env["CONTAINER_APP_REPLICA_NAME"] = replica.name
        secrets = app.secret_values()
        container = (revision.template.get("containers") or [{}])[0]
        for var in container.get("env") or []:
            if "secretRef" in var:
                env[var["name"]] = secrets.get(var["secretRef"], "")
            else:
                env[var["name"]] = var.get("value", "")
        command = serve_command(sys.executable, port)
        with open(self._logs / f"{replica.name}.log", "ab") as handle:
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self._lock:
            self._procs[replica.name] = proc
        replica.ready = False
        replica.endpoint = f"http://127.0.0.1:{port}"

    def _wait_ready(self, replica: Replica) -> None:
        deadline = time.monotonic() + self._ready_timeout
        with self._lock:
            proc = self._procs.get(replica.name)
        while time.monotonic() < deadline:
            if proc is None or proc.poll() is not None:
                log_tail = (self._logs / f"{replica.name}.log").read_text(errors="replace")[-800:]
                raise RuntimeError(f"replica {replica.name} exited: {log_tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{replica.endpoint}/readyz", timeout=2).status_code == 200:
                    replica.ready = True
                    return
            time.sleep(0.1)
        raise RuntimeError(f"replica {replica.name} not ready after {self._ready_timeout:g}s")

    def _kill(self, replica: Replica) -> None:
        replica.ready = False
        with self._lock:
            proc = self._procs.pop(replica.name, None)
        if proc is not None:
            _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class Ingress:
    """One loopback reverse proxy per app: revision by weight, then replica round robin."""

    def __init__(self, state: EmulatorState, key: tuple[str, str, str]) -> None:
        self._state = state
        self._key = key
        self._current: dict[str, int] = {}
        self._next_replica: dict[str, int] = {}
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._client = httpx.AsyncClient(timeout=60)
        routes = [
            Route("/{path:path}", self._proxy, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        ]
        config = uvicorn.Config(
            Starlette(routes=routes),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="aca-ingress")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def pick(self) -> Replica | None:
        """Smooth weighted round robin over revisions with ready replicas."""
        app = self._state.apps.get(self._key)
        if app is None:
            return None
        candidates = {
            name: weight
            for name, weight in app.weights().items()
            if weight > 0
            and name in app.revisions
            and app.revisions[name].active
            and any(r.ready for r in app.revisions[name].replicas)
        }
        if not candidates:
            return None
        with self._lock:
            total = sum(candidates.values())
            for name, weight in candidates.items():
                self._current[name] = self._current.get(name, 0) + weight
            chosen = max(candidates, key=lambda n: self._current[n])
            self._current[chosen] -= total
            ready = [r for r in app.revisions[chosen].replicas if r.ready]
            index = self._next_replica.get(chosen, 0) % len(ready)
            self._next_replica[chosen] = index + 1
        return ready[index]

    async def _proxy(self, request: Request) -> Response:
        replica = self.pick()
        if replica is None or replica.endpoint is None:
            # Assumption: no ready replica -> 503, as Envoy in front of Container Apps answers.
            return Response(b"no healthy upstream", 503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            upstream = await self._client.request(
                request.method,
                f"{replica.endpoint}{request.url.path}",
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            return Response(f"upstream {replica.name} failed: {exc}".encode(), 502)
        out_headers = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() not in _HOP_HEADERS | {"content-encoding"}
        }
        out_headers["x-aca-replica"] = replica.name  # lets tests see where a request went
        return Response(upstream.content, upstream.status_code, headers=out_headers)
