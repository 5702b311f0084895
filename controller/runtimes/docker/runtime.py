"""The `docker` runtime: one labelled container per deployment on a Docker engine.

For workstations that have Docker but not Azure: the same server image as ACI, the
same observe/plan/apply contract as the local runtime. What the engine holds is the
inventory: every container this runtime creates carries `aliasflow.managed=true`,
`aliasflow.deployment`, `aliasflow.spec-hash` and `aliasflow.model-version` (the boot
version), and only containers with the managed label are ever listed, replaced or
removed; a container with a look-alike name but no label is not ours. The version set
by a hot swap cannot be a label (labels are immutable), so it lives in a small state
file (see `state.py` for why not `/metadata`).

Rules it shares with the other runtimes:

- observing is reads only: one `containers.list` for the full pass, then a probe of
  each endpoint; an unchanged deployment costs zero writes;
- create and recreate are blue/green: the new container starts next to the old one and
  must answer `/readyz` on its published port before the old one is removed; a failed
  start removes the new container and leaves the old one serving;
- a hot swap is `POST {endpoint}/admin/model` with the admin token, no new container;
- SDK and transport errors are wrapped at the edge into the controller's error tree.

The port is published on 127.0.0.1 only, on a host port the engine picks; the endpoint
is read back from the engine. With `target.docker.network: host` nothing is published
and the server is told to bind 127.0.0.1 on a free port instead.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import requests
from docker.models.containers import Container
from docker.utils import parse_repository_tag

from controller.core.errors import (
    HealthTimeoutError,
    InvalidSpecError,
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
from controller.runtimes.docker.state import Current, DockerState, state_file
from controller.runtimes.hotswap import request_api_keys, request_hot_swap, request_traffic
from controller.runtimes.netutil import free_port
from controller.runtimes.probe import Probe, ServerProber, probe_all

log = logging.getLogger(__name__)

LABEL_MANAGED = "aliasflow.managed"
LABEL_DEPLOYMENT = "aliasflow.deployment"
LABEL_SPEC_HASH = "aliasflow.spec-hash"
LABEL_MODEL_VERSION = "aliasflow.model-version"
# Only in host network mode, where the engine publishes nothing to read the port from.
LABEL_HOST_PORT = "aliasflow.host-port"
# `common.ADMIN_KEY_SCHEME` on a container whose server holds its own deployment key.
LABEL_ADMIN_KEY = "aliasflow.admin-key"
OWNED = f"{LABEL_MANAGED}=true"

_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# Docker's states for a container whose process is (or is about to be) up again.
_ALIVE = frozenset({"running", "restarting"})


@dataclass(frozen=True)
class _Seen:
    """One owned container as the list call summarises it (no per-container inspect)."""

    id: str
    name: str
    deployment: str
    spec_hash: str
    boot_version: str
    state: str
    status: str
    created: int
    host_port: int | None
    admin_key: str = ""

    @classmethod
    def from_summary(cls, attrs: dict[str, Any]) -> _Seen:
        labels = attrs.get("Labels") or {}
        port: int | None = None
        if labels.get(LABEL_HOST_PORT, "").isdigit():
            port = int(labels[LABEL_HOST_PORT])
        for binding in attrs.get("Ports") or []:
            if binding.get("PublicPort") and binding.get("IP") in ("127.0.0.1", None, ""):
                port = int(binding["PublicPort"])
                break
        names = attrs.get("Names") or [""]
        return cls(
            id=str(attrs["Id"]),
            name=str(names[0]).lstrip("/"),
            deployment=str(labels.get(LABEL_DEPLOYMENT, "")),
            spec_hash=str(labels.get(LABEL_SPEC_HASH, "")),
            boot_version=str(labels.get(LABEL_MODEL_VERSION, "")),
            state=str(attrs.get("State", "")),
            status=str(attrs.get("Status", "")),
            created=int(attrs.get("Created") or 0),
            host_port=port,
            admin_key=str(labels.get(LABEL_ADMIN_KEY, "")),
        )


class DockerRuntime:
    """Runs the model-server image as containers; owns what carries `aliasflow.managed=true`.

    `client` is built on first use (`docker.DockerClient(base_url=...)`, or
    `docker.from_env()` without one) because building it asks the engine for its API
    version: a controller must start, and report, while Docker is down.
    """

    kind = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        admin_token: str,
        tracking_uri: str,
        data_dir: Path,
        base_url: str | None = None,
        stop_timeout_seconds: int = 10,
        ready_poll_seconds: float = 0.25,
    ) -> None:
        self._client_obj = client
        self._base_url = base_url
        # The controller's secret: each container gets its own key (`server_key`).
        self._admin_secret = admin_token
        # MLflow as the container sees it (e.g. http://host.docker.internal:5000).
        self._tracking_uri = tracking_uri
        self._state = state_file(Path(data_dir) / "docker" / "state.json")
        self._stop_timeout = stop_timeout_seconds
        self._poll = ready_poll_seconds
        self._client_lock = threading.Lock()
        self._name_lock = NameLocks()
        self._prober = ServerProber()

    @property
    def state_file(self) -> Path:
        return self._state.path

    def close(self) -> None:
        self._prober.close()
        if self._client_obj is not None:
            self._client_obj.close()

    # -- Runtime protocol ---------------------------------------------------------------

    def observe(self, name: str) -> ActualState | None:
        seen = self._list([OWNED, f"{LABEL_DEPLOYMENT}={name}"])
        return self._actual(name, seen, self._state.read().get(name), self._prober)

    def list_owned(self) -> list[ActualState]:
        """One list call, then every running server asked what it serves, a few at a time:
        a container the engine restarted is back on its label's boot version."""
        by_name: dict[str, list[_Seen]] = {}
        for container in self._list([OWNED]):
            if container.deployment:
                by_name.setdefault(container.deployment, []).append(container)
        recorded = self._state.read()
        chosen = (_current(seen, recorded.get(n)) for n, seen in by_name.items())
        probes = probe_all(
            self._prober,
            [_endpoint(c) for c in chosen if c is not None and c.state in _ALIVE and c.host_port],
        )
        found = (
            self._actual(n, seen, recorded.get(n), probes.__getitem__)
            for n, seen in sorted(by_name.items())
        )
        return [actual for actual in found if actual is not None]

    def deploy(self, desired: DesiredState) -> ActualState:
        """Blue/green: a deploy that finds a container already there replaces it instead
        of adding a second one, once the new one is ready."""
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
        """One signed admin request to the deployment's running container
        (`send(endpoint, key)`), then what it looks like after it."""
        with self._name_lock(desired.name):
            chosen = _current(
                self._list([OWNED, f"{LABEL_DEPLOYMENT}={desired.name}"]),
                self._state.read().get(desired.name),
            )
            if chosen is None or chosen.host_port is None or chosen.state != "running":
                raise RuntimeUnavailableError(
                    f"{desired.name}: no running container to {purpose}; the next pass recreates it"
                )
            send(_endpoint(chosen), self._key(desired.name))
        actual = self.observe(desired.name)
        if actual is None:
            raise RuntimeUnavailableError(f"{desired.name}: the container vanished")
        return actual

    def delete(self, name: str) -> None:
        """Remove every owned container of `name`; unknown is a no-op.

        The state entry goes only after the containers are gone, so a failed removal
        stays visible to `list_owned` and the next pass retries it.
        """
        with self._name_lock(name):
            for seen in self._list([OWNED, f"{LABEL_DEPLOYMENT}={name}"]):
                self._remove(seen.id, graceful=True)

            def forget(current: DockerState) -> None:
                current.pop(name, None)

            self._state.update(forget)

    # -- rollouts -----------------------------------------------------------------------

    def _roll_out(self, desired: DesiredState) -> ActualState:
        create_args = self._create_args(desired)
        self._ensure_image(desired)
        old = self._list([OWNED, f"{LABEL_DEPLOYMENT}={desired.name}"])
        container = self._create(desired, create_args)
        try:
            with _engine_errors(f"{desired.name}: start container {container.name}"):
                container.start()
            self._wait_ready(desired, container)
        except BaseException:
            # Blue/green: the new container goes, whatever is serving now keeps serving.
            self._remove(str(container.id), graceful=False, quiet=True)
            raise

        # Record the new container before touching the old ones: a crash in between
        # leaves an extra container that the next rollout or delete removes.
        def promote(current: DockerState) -> None:
            current[desired.name] = Current(str(container.id), desired.model_version)

        self._state.update(promote)
        for stale in old:
            try:
                self._remove(stale.id, graceful=True)
            except RuntimeUnavailableError as exc:
                log.warning(
                    "%s: could not remove replaced container %s: %s", desired.name, stale.name, exc
                )
        actual = self.observe(desired.name)
        if actual is None:
            raise RuntimeUnavailableError(
                f"{desired.name}: container {container.name} vanished right after it was ready"
            )
        return actual

    def _create(self, desired: DesiredState, create_args: dict[str, Any]) -> Container:
        try:
            with _engine_errors(f"{desired.name}: create container", spec=True):
                return self._client().containers.create(**create_args)
        except InvalidSpecError as exc:
            # The engine refuses NanoCpus above the host's CPU count ("range of CPUs is
            # from 0.01 to N.00, as there are only N CPUs available": moby daemon/
            # daemon_unix.go, verifyPlatformContainerResources, HTTP 400).
            if "range of CPUs" not in str(exc):
                raise
            raise InvalidSpecError(
                f"{desired.name}: spec.resources.cpu is {desired.cpu:g}, more CPUs than the "
                f"Docker host has; lower spec.resources.cpu ({exc})"
            ) from exc

    def _create_args(self, desired: DesiredState) -> dict[str, Any]:
        env = self._container_env(desired)
        labels = {
            LABEL_MANAGED: "true",
            LABEL_DEPLOYMENT: desired.name,
            LABEL_SPEC_HASH: desired.spec_hash,
            LABEL_MODEL_VERSION: desired.model_version,
            LABEL_ADMIN_KEY: ADMIN_KEY_SCHEME,
        }
        # The short hash names the spec; the nonce lets a recreate with the same spec
        # run next to the container it replaces (names are unique per engine).
        name = f"aliasflow-{desired.name}-{desired.spec_hash[:8]}-{secrets.token_hex(2)}"
        args: dict[str, Any] = {
            "image": desired.image,
            "name": name,
            "labels": labels,
            "environment": env,
            "nano_cpus": int(desired.cpu * 1e9),
            "mem_limit": int(desired.memory_gb * 1024**3),
            "restart_policy": {"Name": "unless-stopped"},
        }
        network = dict(desired.target_settings).get("network")
        if network == "host":
            # The host's network has no port mapping: bind loopback on a free port
            # ourselves, or every deployment would claim the image's 8080 on all
            # interfaces. This replaces the image's CMD with the same program.
            port = free_port()
            labels[LABEL_HOST_PORT] = str(port)
            args["network"] = "host"
            args["command"] = ["aliasflow", "serve", "--host", "127.0.0.1", "--port", str(port)]
        else:
            args["ports"] = {f"{desired.port}/tcp": ("127.0.0.1", None)}
            # Lets the server reach an MLflow on the host as host.docker.internal (Linux
            # needs this mapping; Docker Desktop provides the name anyway).
            args["extra_hosts"] = {"host.docker.internal": "host-gateway"}
            if network:
                args["network"] = network
        return args

    def _container_env(self, desired: DesiredState) -> dict[str, str]:
        # Secrets only ever go here, into the container's environment.
        return workload_env(
            desired, tracking_uri=self._tracking_uri, admin_token=self._key(desired.name)
        ).merged()

    def _key(self, name: str) -> str:
        return server_key(self._admin_secret, name)

    def _ensure_image(self, desired: DesiredState) -> None:
        """Pull the image when the engine does not have it; a missing image is the spec's fault."""
        client = self._client()
        with _engine_errors(f"{desired.name}: inspect image {desired.image}"):
            try:
                client.images.get(desired.image)
                return
            except docker.errors.ImageNotFound:
                pass
        repository, tag = parse_repository_tag(desired.image)
        log.info("%s: pulling image %s", desired.name, desired.image)
        with _engine_errors(f"{desired.name}: pull image {desired.image}", spec=True):
            client.images.pull(repository, tag=tag or "latest")

    def _wait_ready(self, desired: DesiredState, container: Container) -> None:
        """Until `/readyz` answers on the published port; fail fast if the container dies."""
        deadline = time.monotonic() + desired.health_timeout_seconds
        secrets_ = [*desired.secret_values, self._key(desired.name)]
        endpoint: str | None = None
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while True:
                with _engine_errors(f"{desired.name}: inspect container {container.name}"):
                    container.reload()
                status = container.attrs.get("State", {})
                if status.get("Status") in ("exited", "dead", "restarting"):
                    raise RolloutRejectedError(
                        f"{desired.name}: container {container.name} for {desired.model_uri} "
                        f"exited with code {status.get('ExitCode')} before it was ready; the "
                        f"previous container, if any, keeps serving. Logs:\n"
                        f"{self._log_tail(container, secrets_)}"
                    )
                endpoint = endpoint or _endpoint_of(container.attrs, desired.port)
                if endpoint is not None:
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"{endpoint}/readyz").is_success:
                            return
                if time.monotonic() >= deadline:
                    raise HealthTimeoutError(
                        f"{desired.name}: container {container.name} for {desired.model_uri} "
                        f"was not ready within {desired.health_timeout_seconds}s and was "
                        f"removed; the previous container, if any, keeps serving. Logs:\n"
                        f"{self._log_tail(container, secrets_)}"
                    )
                time.sleep(self._poll)

    def _log_tail(self, container: Container, secrets: list[str]) -> str:
        try:
            text = container.logs(tail=20).decode(errors="replace")
        except Exception as exc:
            return f"(logs unavailable: {type(exc).__name__})"
        return redact(text, secrets).strip()

    def _hotswap(self, desired: DesiredState) -> ActualState:
        seen = self._list([OWNED, f"{LABEL_DEPLOYMENT}={desired.name}"])
        recorded = self._state.read().get(desired.name)
        chosen = _current(seen, recorded)
        if chosen is None or chosen.host_port is None or chosen.state != "running":
            raise RuntimeUnavailableError(
                f"{desired.name}: no running container to hot swap; the next pass recreates it"
            )
        endpoint = _endpoint(chosen)
        was = _recorded_version(chosen, recorded)
        request_hot_swap(endpoint, self._key(desired.name), desired, was)
        swapped = Current(chosen.id, desired.model_version)

        def set_version(current: DockerState) -> None:
            current[desired.name] = swapped

        self._state.update(set_version)
        actual = self._actual(desired.name, seen, swapped, self._prober)
        assert actual is not None  # `seen` holds `chosen`
        return actual

    # -- observing ----------------------------------------------------------------------

    def _list(self, labels: list[str]) -> list[_Seen]:
        # sparse: the list's summaries carry labels, state and ports; no inspect per
        # container, so a full pass is one call however many deployments there are.
        with _engine_errors("list containers"):
            found = self._client().containers.list(all=True, filters={"label": labels}, sparse=True)
        return [_Seen.from_summary(container.attrs) for container in found]

    def _actual(
        self, name: str, seen: list[_Seen], recorded: Current | None, probe: Probe
    ) -> ActualState | None:
        chosen = _current(seen, recorded)
        if chosen is None:
            return None
        version = _recorded_version(chosen, recorded)
        endpoint = None if chosen.host_port is None else _endpoint(chosen)
        extra = len(seen) - 1
        note = f"; {extra} replaced container(s) still to remove" if extra else ""
        if chosen.state not in _ALIVE:
            return ActualState(
                name=name,
                spec_hash=chosen.spec_hash,
                model_version=version,
                running=False,
                endpoint=endpoint,
                detail=f"container {chosen.name} is {chosen.status or chosen.state}{note}",
            )
        answer = probe(endpoint) if endpoint else None
        if answer is None:
            detail = f"container {chosen.name} publishes no loopback port"
        else:
            detail = answer.detail(
                f"container {chosen.name} is {chosen.state} but /readyz is not ready"
            )
        return ActualState(
            name=name,
            spec_hash=chosen.spec_hash,
            model_version=version,
            running=True,
            endpoint=endpoint,
            served_version=None if answer is None else answer.served_version,
            ready=False if answer is None else answer.ready,
            detail=(detail + note).lstrip("; "),
            legacy_admin_key=chosen.admin_key != ADMIN_KEY_SCHEME,
            **({} if answer is None else answer.traffic()),
        )

    # -- helpers --------------------------------------------------------------------------

    def _client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client_obj is None:
                with _engine_errors("connect to the Docker engine"):
                    self._client_obj = (
                        docker.DockerClient(base_url=self._base_url)
                        if self._base_url
                        else docker.from_env()
                    )
            return self._client_obj

    def _remove(self, container_id: str, *, graceful: bool, quiet: bool = False) -> None:
        """Stop (politely when `graceful`) and remove one container; gone already is fine."""
        try:
            with _engine_errors(f"remove container {container_id[:12]}"):
                try:
                    container = self._client().containers.get(container_id)
                    if graceful:
                        container.stop(timeout=self._stop_timeout)
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass
        except RuntimeUnavailableError as exc:
            if not quiet:
                raise
            log.warning("%s", exc)


def _current(seen: list[_Seen], recorded: Current | None) -> _Seen | None:
    """The container serving a deployment: the recorded one, else the newest alive one.

    More than one exists only during a rollout or after a controller died in one.
    """
    if not seen:
        return None
    if recorded is not None:
        for container in seen:
            if container.id == recorded.container_id:
                return container
    return max(seen, key=lambda c: (c.state in _ALIVE, c.created, c.name))


def _endpoint(container: _Seen) -> str:
    return f"http://127.0.0.1:{container.host_port}"


def _recorded_version(container: _Seen, recorded: Current | None) -> str:
    if recorded is not None and recorded.container_id == container.id:
        return recorded.model_version
    return container.boot_version


def _endpoint_of(attrs: dict[str, Any], port: int) -> str | None:
    labels = attrs.get("Config", {}).get("Labels") or {}
    if labels.get(LABEL_HOST_PORT, "").isdigit():
        return f"http://127.0.0.1:{labels[LABEL_HOST_PORT]}"
    bindings = (attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
    for binding in bindings:
        if binding.get("HostPort"):
            return f"http://127.0.0.1:{binding['HostPort']}"
    return None


@contextlib.contextmanager
def _engine_errors(what: str, *, spec: bool = False) -> Iterator[None]:
    """Wrap SDK and transport errors: the engine refusing a spec is permanent, the rest not.

    `spec` marks calls whose 4xx answers are about what the manifest asked for (create,
    pull); elsewhere a 4xx is the engine's state changing under us, worth a retry.
    """
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise InvalidSpecError(
            f"{what}: the image does not exist locally and could not be pulled "
            f"({exc.explanation}); build it (docker build -f Dockerfile.server ...) or fix "
            "spec.image"
        ) from exc
    except docker.errors.APIError as exc:
        status = exc.status_code
        if spec and status is not None and 400 <= status < 500 and status not in _RETRYABLE_4XX:
            raise InvalidSpecError(
                f"{what}: the Docker engine refused it (HTTP {status}): {exc.explanation}"
            ) from exc
        raise RuntimeUnavailableError(
            f"{what}: the Docker engine answered HTTP {status}: {exc.explanation}"
        ) from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise RuntimeUnavailableError(
            f"{what}: the Docker engine does not answer ({type(exc).__name__}: {exc})"
        ) from exc
