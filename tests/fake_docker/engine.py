"""A small fake Docker Engine API on loopback, so tests drive the real `docker` SDK.

No Docker engine runs where the tests run, and mocking the SDK would only test our
guesses about it. This server answers the Engine API routes the Docker runtime's SDK
calls make (ping, version, image inspect and pull, container create/start/stop/inspect/
logs/delete, and the list with label filters) in the shapes the SDK parses.

A "container" is a real process on the host: the image decides which one.

- `serve`: `python -m aliasflow_cli.main serve` with the container's env, so `/predict`
  really answers (the model comes from the MLflow the env names);
- `stub`: `stub_server.py`, which only speaks readiness (with the model it serves) and hot swap, for
  tests that need a live endpoint but not a model;
- `exit`: prints a line and exits 3, a container that dies at once;
- `hang`: runs but never listens, a container that never gets ready.

The published host port (`HostPort: ""` asks for a free one) is the port the process
binds on 127.0.0.1, so the endpoint the runtime reads from the engine is the real one.
In `host` network mode nothing is published and the process binds the `--port` of the
container's command, as it would on the host's network.

Restart policies as the engine applies them (moby `daemon/internal/restartmanager/
restartmanager.go`): a container whose process dies under `always`, `unless-stopped`
(not stopped by hand) or `on-failure` (non-zero exit) is `restarting` for a back-off of
100 ms doubling to at most 1 minute (reset after a run of 10 s or more), then `running`
again from its create-time env; `RestartCount` counts it. A stopped container is not
restarted. Every list and inspect body is checked against the Engine API's swagger
definitions (`schema.py`); a violation fails the test at `close()`.

Not emulated: networks other than recording the mode, exec, events. Fault knobs:
`fail(...)` for any route, images present locally or only "in the registry", `kill(...)`
to crash a running container.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from controller.runtimes.netutil import free_port, stop_process
from tests.fake_docker.schema import violations

API_VERSION = "1.45"
# moby restartmanager.go: defaultTimeout, backoffMultiplier, maxRestartTimeout, and the
# 10 s of execution after which the back-off starts over.
RESTART_BACKOFF = 0.1
RESTART_BACKOFF_MAX = 60.0
RESTART_RESET_AFTER = 10.0
STUB_SERVER = Path(__file__).with_name("stub_server.py")
# What a container process inherits from the host besides the container's own env:
# just enough for the venv's python to start.
HOST_ENV = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "SSL_CERT_FILE")


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    message: str
    times: int


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str
    body: dict[str, Any]
    created: float
    state: str = "created"
    exit_code: int = 0
    host_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    started_at: str = "0001-01-01T00:00:00Z"
    started_mono: float = 0.0
    restart_count: int = 0
    backoff: float = 0.0
    restart_at: float = 0.0
    stopped_by_hand: bool = False

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.body.get("Labels") or {})

    @property
    def host_config(self) -> dict[str, Any]:
        return dict(self.body.get("HostConfig") or {})

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.body.get("Env") or [] if "=" in item)

    def port_bindings(self) -> dict[str, list[dict[str, str]]]:
        if self.host_port is None:
            return {}
        (private,) = (self.host_config.get("PortBindings") or {}).keys()
        return {private: [{"HostIp": "127.0.0.1", "HostPort": str(self.host_port)}]}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)


class FakeDockerEngine:
    """The engine's state plus the HTTP server in a daemon thread; `close()` stops all."""

    def __init__(self, workdir: Path, python: str = sys.executable) -> None:
        self.workdir = workdir
        self.python = python
        self.images: dict[str, str] = {}  # present locally: name -> kind
        self.registry: dict[str, str] = {}  # pullable: name -> kind
        self.containers: dict[str, FakeContainer] = {}
        self.requests: list[Request] = []
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        #: Bodies that break the Engine API's swagger definitions.
        self.violations: list[str] = []
        #: The host's CPUs, as the engine counts them for the NanoCpus check.
        self.cpus = os.cpu_count() or 1

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        threading.Thread(target=self._supervise, daemon=True, name="fake-docker-restarts").start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._server is not None, "engine not started"
        return f"tcp://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        """Stop the API and every container process: a test must leave no strays."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for container in self.containers.values():
                container.stopped_by_hand = True
                self._stop_process(container, grace=2.0)
        if self.violations:
            raise AssertionError(
                "the fake Docker engine sent bodies that break the Engine API swagger:\n"
                + "\n".join(dict.fromkeys(self.violations))
            )

    # -- knobs --------------------------------------------------------------------------

    def add_image(self, name: str, kind: str = "stub") -> None:
        self.images[_normalize(name)] = kind

    def add_remote_image(self, name: str, kind: str = "stub") -> None:
        self.registry[_normalize(name)] = kind

    def fail(
        self, method: str, path: str, status: int = 500, message: str = "boom", times: int = 1
    ) -> None:
        """Answer the next `times` requests matching `method` and the `path` regex with an error."""
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(path), status, message, times))

    def kill(self, container_id: str) -> None:
        """Crash a running container's process, as an OOM kill would."""
        with self._lock:
            container = self.containers[container_id]
        if container.process is not None:
            container.process.kill()
            container.process.wait(timeout=10)
        self._refresh(container)

    def writes(self) -> list[Request]:
        """Requests that change something in the engine (everything but GET/HEAD)."""
        return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    def by_name(self, name: str) -> FakeContainer:
        with self._lock:
            for container in self.containers.values():
                if container.name == name:
                    return container
        raise KeyError(name)

    def create_unmanaged(self, name: str, image: str, labels: dict[str, str]) -> FakeContainer:
        """A container someone else made (never started): pruning must leave it alone."""
        return self._create(name, {"Image": image, "Labels": labels, "HostConfig": {}})

    # -- the API ------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: bytes) -> tuple[int, Any, str]:
        """Route one request; returns (status, payload, content type)."""
        split = urlsplit(raw_path)
        path = re.sub(r"^/v[0-9.]+", "", split.path)
        query = parse_qs(split.query)
        with self._lock:
            self.requests.append(Request(method, path, query))
            for fault in self._faults:
                if fault.method == method and fault.path.search(path) and fault.times > 0:
                    fault.times -= 1
                    return fault.status, {"message": fault.message}, "application/json"
        payload = json.loads(body) if body else {}
        for pattern, route_method, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                params = {key: unquote(value) for key, value in match.groupdict().items()}
                answer: tuple[int, Any, str] = handler(query, payload, **params)
                return answer
        return 404, {"message": f"page not found: {method} {path}"}, "application/json"

    def _routes(self) -> list[tuple[str, str, Any]]:
        return [
            (r"/_ping", "GET", self._ping),
            (r"/_ping", "HEAD", self._ping),
            (r"/version", "GET", self._version),
            (r"/images/create", "POST", self._pull),
            (r"/images/(?P<name>.+)/json", "GET", self._inspect_image),
            (r"/containers/create", "POST", self._create_route),
            (r"/containers/json", "GET", self._list),
            (r"/containers/(?P<ref>[^/]+)/json", "GET", self._inspect),
            (r"/containers/(?P<ref>[^/]+)/start", "POST", self._start),
            (r"/containers/(?P<ref>[^/]+)/stop", "POST", self._stop),
            (r"/containers/(?P<ref>[^/]+)/logs", "GET", self._logs),
            (r"/containers/(?P<ref>[^/]+)", "DELETE", self._remove),
        ]

    def _ping(self, query: Any, payload: Any) -> tuple[int, Any, str]:
        return 200, "OK", "text/plain"

    def _version(self, query: Any, payload: Any) -> tuple[int, Any, str]:
        return (
            200,
            {
                "Version": "26.1.0-fake",
                "ApiVersion": API_VERSION,
                "MinAPIVersion": "1.24",
                "Os": "linux",
                "Arch": "amd64",
            },
            "application/json",
        )

    def _inspect_image(self, query: Any, payload: Any, name: str) -> tuple[int, Any, str]:
        key = _normalize(name)
        with self._lock:
            if key not in self.images:
                return 404, {"message": f"No such image: {key}"}, "application/json"
        return 200, {"Id": _image_id(key), "RepoTags": [key], "Config": {}}, "application/json"

    def _pull(self, query: Any, payload: Any) -> tuple[int, Any, str]:
        repo = query.get("fromImage", [""])[0]
        tag = query.get("tag", ["latest"])[0] or "latest"
        # The engine takes a digest in `tag` too (moby api/server/router/image
        # postImagesCreate: "The 'tag' could actually be a digest").
        key = _normalize(f"{repo}@{tag}" if tag.startswith("sha256:") else f"{repo}:{tag}")
        with self._lock:
            if key not in self.registry:
                message = (
                    f"pull access denied for {repo}, repository does not exist or may "
                    "require 'docker login'"
                )
                return 404, {"message": message}, "application/json"
            self.images[key] = self.registry[key]
        lines = [{"status": f"Pulling from {repo}", "id": tag}, {"status": f"Downloaded {key}"}]
        return 200, "".join(json.dumps(line) + "\r\n" for line in lines), "application/json"

    def _create_route(self, query: Any, payload: dict[str, Any]) -> tuple[int, Any, str]:
        name = query.get("name", [""])[0] or f"fake_{secrets.token_hex(4)}"
        image = _normalize(str(payload.get("Image", "")))
        nano = int((payload.get("HostConfig") or {}).get("NanoCpus") or 0)
        if nano < 0 or nano > self.cpus * 10**9:
            # moby daemon/daemon_unix.go verifyPlatformContainerResources, an
            # InvalidParameter error (HTTP 400).
            message = (
                f"range of CPUs is from 0.01 to {self.cpus}.00, as there are only "
                f"{self.cpus} CPUs available"
            )
            return 400, {"message": message}, "application/json"
        with self._lock:
            if image not in self.images:
                return 404, {"message": f"No such image: {image}"}, "application/json"
            if any(c.name == name for c in self.containers.values()):
                return (
                    409,
                    {"message": f'Conflict. The container name "/{name}" is already in use'},
                    "application/json",
                )
        container = self._create(name, payload)
        return 201, {"Id": container.id, "Warnings": []}, "application/json"

    def _create(self, name: str, payload: dict[str, Any]) -> FakeContainer:
        container = FakeContainer(
            id=secrets.token_hex(32),
            name=name,
            image=_normalize(str(payload.get("Image", ""))),
            body=payload,
            created=time.time(),
        )
        with self._lock:
            self.containers[container.id] = container
        return container

    def _list(self, query: dict[str, list[str]], payload: Any) -> tuple[int, Any, str]:
        show_all = query.get("all", ["0"])[0] in ("1", "true", "True")
        filters = json.loads(query.get("filters", ["{}"])[0])
        wanted_labels = filters.get("label", [])
        if isinstance(wanted_labels, dict):  # the older {"key=value": true} form
            wanted_labels = [k for k, v in wanted_labels.items() if v]
        with self._lock:
            found = list(self.containers.values())
        rows = []
        for container in sorted(found, key=lambda c: c.created, reverse=True):
            self._refresh(container)
            if not show_all and container.state != "running":
                continue
            if not all(_label_matches(container.labels, want) for want in wanted_labels):
                continue
            rows.append(self._summary(container))
        for row in rows:
            self.violations.extend(violations("ContainerSummary", row))
        return 200, rows, "application/json"

    def _summary(self, container: FakeContainer) -> dict[str, Any]:
        ports = []
        for private, bindings in container.port_bindings().items():
            number, proto = private.split("/")
            for binding in bindings:
                ports.append(
                    {
                        "IP": binding["HostIp"],
                        "PrivatePort": int(number),
                        "PublicPort": int(binding["HostPort"]),
                        "Type": proto,
                    }
                )
        return {
            "Id": container.id,
            "Names": [f"/{container.name}"],
            "Image": container.image,
            "ImageID": _image_id(container.image),
            "Command": " ".join(container.body.get("Cmd") or []),
            "Created": int(container.created),
            "Ports": ports,
            "Labels": container.labels,
            "State": container.state,
            "Status": _status_text(container),
            "HostConfig": {"NetworkMode": container.host_config.get("NetworkMode", "default")},
        }

    def _find(self, ref: str) -> FakeContainer | None:
        with self._lock:
            if ref in self.containers:
                return self.containers[ref]
            for container in self.containers.values():
                if container.name == ref or (len(ref) >= 12 and container.id.startswith(ref)):
                    return container
        return None

    def _missing(self, ref: str) -> tuple[int, Any, str]:
        return 404, {"message": f"No such container: {ref}"}, "application/json"

    def _inspect(self, query: Any, payload: Any, ref: str) -> tuple[int, Any, str]:
        container = self._find(ref)
        if container is None:
            return self._missing(ref)
        self._refresh(container)
        process = container.process
        pid = process.pid if container.state == "running" and process is not None else 0
        body = {
            "Id": container.id,
            "Name": f"/{container.name}",
            "Created": datetime.fromtimestamp(container.created, UTC).isoformat(),
            "Image": _image_id(container.image),
            "State": {
                "Status": container.state,
                "Running": container.state == "running",
                "Paused": False,
                "Restarting": container.state == "restarting",
                "OOMKilled": False,
                "Dead": False,
                "Pid": pid,
                "ExitCode": container.exit_code,
                "Error": "",
                "StartedAt": container.started_at,
            },
            "RestartCount": container.restart_count,
            "Config": {
                "Image": container.image,
                "Env": container.body.get("Env") or [],
                "Labels": container.labels,
                "Cmd": container.body.get("Cmd"),
                "Tty": False,
                "ExposedPorts": container.body.get("ExposedPorts") or {},
            },
            "HostConfig": container.host_config,
            "NetworkSettings": {"Ports": container.port_bindings()},
        }
        self.violations.extend(violations("ContainerInspectResponse", body))
        return 200, body, "application/json"

    def _start(self, query: Any, payload: Any, ref: str) -> tuple[int, Any, str]:
        container = self._find(ref)
        if container is None:
            return self._missing(ref)
        self._refresh(container)
        if container.state == "running":
            return 304, None, "application/json"
        container.stopped_by_hand = False
        failure = self._launch(container)
        if failure is not None:
            return failure
        return 204, None, "application/json"

    def _launch(self, container: FakeContainer) -> tuple[int, Any, str] | None:
        """Start the container's process (on `start`, and again after a crash)."""
        host_config = container.host_config
        if host_config.get("NetworkMode") == "host":
            command = container.body.get("Cmd") or []
            port = int(command[command.index("--port") + 1]) if "--port" in command else 8080
            container.host_port = None
        else:
            bindings = host_config.get("PortBindings") or {}
            if len(bindings) != 1:
                return 400, {"message": "the fake engine publishes exactly one port"}, "text/plain"
            (binding,) = next(iter(bindings.values()))
            # A restarted container keeps the host port it was given.
            port = container.host_port or int(binding.get("HostPort") or 0) or free_port()
            container.host_port = port
        kind = self.images.get(container.image, "stub")
        container.log_path = self.workdir / f"{container.id[:12]}.log"
        env = {key: os.environ[key] for key in HOST_ENV if key in os.environ}
        env.update(container.env)
        env["PYTHONUNBUFFERED"] = "1"
        with open(container.log_path, "ab") as log:
            container.process = subprocess.Popen(
                self._command(kind, port),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        container.state = "running"
        container.started_at = datetime.now(UTC).isoformat()
        container.started_mono = time.monotonic()
        return None

    def _command(self, kind: str, port: int) -> list[str]:
        if kind == "serve":
            serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
            return [self.python, "-m", "aliasflow_cli.main", *serve]
        if kind == "hang":
            return [self.python, "-c", "import time; print('starting forever'); time.sleep(600)"]
        if kind == "exit":
            return [self.python, "-c", "import sys; print('dying on purpose'); sys.exit(3)"]
        return [self.python, str(STUB_SERVER), str(port)]

    def _stop(self, query: dict[str, list[str]], payload: Any, ref: str) -> tuple[int, Any, str]:
        container = self._find(ref)
        if container is None:
            return self._missing(ref)
        self._refresh(container)
        container.stopped_by_hand = True
        if container.state == "restarting":
            container.state = "exited"
            return 204, None, "application/json"
        if container.state != "running":
            return 304, None, "application/json"
        self._stop_process(container, grace=float(query.get("t", ["10"])[0]))
        return 204, None, "application/json"

    def _remove(self, query: dict[str, list[str]], payload: Any, ref: str) -> tuple[int, Any, str]:
        container = self._find(ref)
        if container is None:
            return self._missing(ref)
        self._refresh(container)
        force = query.get("force", ["0"])[0] in ("1", "true", "True")
        if container.state == "running" and not force:
            message = f"cannot remove container {ref}: container is running: stop it first"
            return 409, {"message": message}, "application/json"
        self._stop_process(container, grace=0.5)
        with self._lock:
            self.containers.pop(container.id, None)
        return 204, None, "application/json"

    def _logs(self, query: dict[str, list[str]], payload: Any, ref: str) -> tuple[int, Any, str]:
        container = self._find(ref)
        if container is None:
            return self._missing(ref)
        text = b""
        if container.log_path is not None and container.log_path.exists():
            text = container.log_path.read_bytes()
        tail = query.get("tail", ["all"])[0]
        lines = text.splitlines(keepends=True)
        if tail != "all":
            lines = lines[-int(tail) :] if int(tail) else []
        # Not a TTY, so the engine multiplexes: an 8-byte header (stream 1 = stdout,
        # big-endian length) before each chunk.
        frames = b"".join(
            bytes([1, 0, 0, 0]) + len(line).to_bytes(4, "big") + line for line in lines
        )
        return 200, frames, "application/vnd.docker.raw-stream"

    # -- processes ------------------------------------------------------------------------

    def _refresh(self, container: FakeContainer) -> None:
        with self._lock:
            process = container.process
            if container.state != "running" or process is None or process.poll() is None:
                return
            # A signal shows as 128 + its number, as the engine reports an OOM kill (137).
            code = process.returncode
            container.exit_code = code if code >= 0 else 128 - code
            if self._restarts(container):
                ran = time.monotonic() - container.started_mono
                if ran >= RESTART_RESET_AFTER or container.backoff == 0:
                    container.backoff = RESTART_BACKOFF
                else:
                    container.backoff = min(container.backoff * 2, RESTART_BACKOFF_MAX)
                container.state = "restarting"
                container.restart_count += 1
                container.restart_at = time.monotonic() + container.backoff
            else:
                container.state = "exited"

    def _restarts(self, container: FakeContainer) -> bool:
        policy = (container.host_config.get("RestartPolicy") or {}).get("Name", "no")
        if policy == "always":
            return True
        if policy == "unless-stopped":
            return not container.stopped_by_hand
        return policy == "on-failure" and container.exit_code != 0

    def _supervise(self) -> None:
        """The daemon's side of restart policies: notice deaths, restart after back-off."""
        while not self._closing.wait(0.05):
            with self._lock:
                found = list(self.containers.values())
            for container in found:
                self._refresh(container)
                with self._lock:
                    due = (
                        container.state == "restarting"
                        and time.monotonic() >= container.restart_at
                        and container.id in self.containers
                    )
                    if due:
                        self._launch(container)

    def _stop_process(self, container: FakeContainer, grace: float) -> None:
        container.stopped_by_hand = True
        process = container.process
        if process is not None:
            stop_process(process, grace=grace)
            if container.state == "running":
                container.state = "exited"
                container.exit_code = process.returncode if process.returncode >= 0 else 137


def _normalize(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in last else f"{name}:latest"


def _image_id(name: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def _label_matches(labels: dict[str, str], want: str) -> bool:
    key, eq, value = want.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _status_text(container: FakeContainer) -> str:
    if container.state == "running":
        return "Up"
    if container.state == "exited":
        return f"Exited ({container.exit_code})"
    if container.state == "restarting":
        return f"Restarting ({container.exit_code})"
    return "Created"


def _handler_for(engine: FakeDockerEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                status, payload, content_type = engine.handle(self.command, self.path, body)
            except Exception as exc:
                status, payload, content_type = 500, {"message": repr(exc)}, "application/json"
            if payload is None:
                raw = b""
            elif isinstance(payload, bytes):
                raw = payload
            elif isinstance(payload, str):
                raw = payload.encode()
            else:
                raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Api-Version", API_VERSION)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD" and status not in (204, 304):
                self.wfile.write(raw)

        do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _serve  # noqa: N815

    return Handler


@contextlib.contextmanager
def running_engine(workdir: Path) -> Iterator[FakeDockerEngine]:
    engine = FakeDockerEngine(workdir)
    engine.start()
    try:
        yield engine
    finally:
        engine.close()
