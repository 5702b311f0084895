"""A loopback HTTPS ACI emulator the real Azure SDK talks to.

HTTPS with a CA made by `trustme` for each emulator, because azure-core's bearer-token
policy refuses plain http; the SDK gets the CA as `connection_verify`. One host serves
ARM (container groups and their long-running operations), the AAD token endpoint that
`ClientSecretCredential` (MSAL) uses, and the ACR endpoints `ContainerRegistryClient`
uses to resolve a tag.

Two modes:
- counting (default): no processes; PUTs finish after `faults.provisioning_delay`.
- backed: each container group runs the real model server through `LocalRuntime` on a
  free loopback port. ACI's FQDN does not resolve here, so the emulator keeps the
  mapping FQDN → loopback endpoint, and the runtime under test is given
  `emulator.resolve_endpoint` as its `endpoint_resolver` (the runtime's only test seam).
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trustme
import uvicorn
from azure.identity import ClientSecretCredential

from controller.core.errors import ControllerError
from controller.core.types import DesiredState, Strategy, TargetKind
from controller.runtimes.netutil import free_port
from tests.aci_emulator.app import DEFAULT_PAGE_SIZE, create_app
from tests.aci_emulator.state import EmulatorState, Group, finish_put

log = logging.getLogger(__name__)

TENANT = "00000000-0000-0000-0000-00000000aaaa"
CLIENT_ID = "00000000-0000-0000-0000-00000000bbbb"
CLIENT_SECRET = "emulator-client-secret"
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/]+)/(?P<version>[^/]+)$")
# Set by the ACI runtime for the container; the local runtime sets its own.
_RUNTIME_ENV = frozenset({"MODEL_URI", "MLFLOW_TRACKING_URI", "ALIASFLOW_ADMIN_TOKEN"})


class AciEmulator:
    def __init__(
        self,
        *,
        backed_data_dir: Path | None = None,
        tracking_uri: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        port: int | None = None,
        check_schema: bool = True,
    ) -> None:
        """`check_schema=False` skips validating each answer against the spec's schema:
        only for scale benchmarks, where ten thousand validations a pass would measure
        jsonschema (in this process, under the GIL) rather than the runtime."""
        self.state = EmulatorState()
        self._tmp = tempfile.TemporaryDirectory(prefix="aci-emulator-")
        tmp = Path(self._tmp.name)
        self._ca = trustme.CA()
        cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self.cert_path = tmp / "server.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.cert_path))
        self.ca_path = tmp / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))
        self.port = port or free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.backed = backed_data_dir is not None
        self._data_dir = backed_data_dir
        self._tracking_uri = tracking_uri
        self._locals: dict[tuple[str, str], Any] = {}
        self._endpoints: dict[str, str] = {}
        self._lock = threading.Lock()
        app = create_app(
            self.state,
            lambda: self.url,
            on_put=self._backed_put if self.backed else None,
            on_delete=self._backed_delete if self.backed else None,
            page_size=page_size,
            tenant=TENANT,
            check_schema=check_schema,
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            ssl_certfile=str(self.cert_path),
            ssl_keyfile=str(self.cert_path),
            log_config=None,
            access_log=False,
            log_level="warning",
            # The SDK keeps connections alive; do not wait for them on stop (uvicorn waits
            # with asyncio.wait_for, which takes a float; its annotation says int).
            timeout_graceful_shutdown=0.1,  # type: ignore[arg-type]
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> AciEmulator:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("ACI emulator did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and the backing servers; fail if any body broke the spec."""
        for runtime in list(self._locals.values()):
            try:
                runtime.stop_all()
            except ControllerError as exc:
                log.warning("emulator: could not stop a backing server: %s", exc)
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._tmp.cleanup()
        if self.state.violations:
            raise AssertionError(
                "the ACI emulator sent bodies that break the 2023-05-01 spec:\n"
                + "\n".join(dict.fromkeys(self.state.violations))
            )

    def restart_container(self, name: str, resource_group: str, subscription: str) -> None:
        """The container crashes and ACI restarts it from the group's environment.

        Backed mode: the model-server process really stops and starts again with the
        group's `MODEL_URI`, so after a hot swap it comes back on the boot version. The
        call returns at once; the group reads `Waiting` until the server is ready.
        """
        group = self.state.restart_container(subscription, resource_group, name)
        if not self.backed:
            return
        with self.state.lock:
            group.container_state = "Waiting"

        def run() -> None:
            try:
                desired, admin, tracking = _desired_from_group(group, self._tracking_uri)
                runtime = self._local(admin, tracking)
                runtime.delete(desired.name)  # the crash: nothing serves until it is back
                runtime.deploy(desired)
                self._map_endpoint(group, runtime, desired.name)
            except (ControllerError, ValueError) as exc:
                log.warning("emulator: restart of %s failed: %s", group.name, exc)
                return
            with self.state.lock:
                group.container_state = "Running"

        threading.Thread(target=run, daemon=True, name="aci-restart").start()

    def _map_endpoint(self, group: Group, runtime: Any, name: str) -> None:
        observed = runtime.observe(name)
        if group.fqdn and observed is not None and observed.endpoint:
            with self._lock:
                self._endpoints[group.fqdn] = observed.endpoint

    # -- what the runtime under test is given ----------------------------------------------

    def credential(self) -> ClientSecretCredential:
        """A real service-principal credential whose authority is this emulator."""
        return ClientSecretCredential(
            TENANT,
            CLIENT_ID,
            CLIENT_SECRET,
            authority=self.url,
            disable_instance_discovery=True,
            connection_verify=str(self.ca_path),
        )

    def resolve_endpoint(self, fqdn: str, port: int) -> str:
        """Backed mode: the loopback server behind an emulated FQDN; else a dead address."""
        with self._lock:
            endpoint = self._endpoints.get(fqdn)
        return endpoint or f"http://127.0.0.1:9/{fqdn}:{port}"

    @property
    def acr_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- backed mode -------------------------------------------------------------------------

    def _local(self, admin_token: str, tracking_uri: str) -> Any:
        from controller.runtimes.local import LocalRuntime

        class GivenKeyRuntime(LocalRuntime):
            # The container's ALIASFLOW_ADMIN_TOKEN is already the deployment's key (the
            # ACI runtime derived it): the server gets it as given, as in ACI. Source:
            # spec containerInstance.json, EnvironmentVariable {name, value, secureValue};
            # docs "Set environment variables in container instances" (secure values reach
            # the container's environment, only the API hides them).
            def _key(self, name: str) -> str:
                return admin_token

        assert self._data_dir is not None
        key = (admin_token, tracking_uri)
        with self._lock:
            runtime = self._locals.get(key)
            if runtime is None:
                digest = hashlib.sha256("|".join(key).encode()).hexdigest()[:8]
                runtime = GivenKeyRuntime(
                    self._data_dir / digest, admin_token, tracking_uri, stable_ports=False
                )
                self._locals[key] = runtime
        return runtime

    def _backed_put(self, group: Group, operation_id: str) -> None:
        threading.Thread(
            target=self._run_put, args=(group, operation_id), daemon=True, name="aci-put"
        ).start()

    def _run_put(self, group: Group, operation_id: str) -> None:
        operation = self.state.operations[operation_id]
        try:
            desired, admin, tracking = _desired_from_group(group, self._tracking_uri)
            runtime = self._local(admin, tracking)
            runtime.deploy(desired)
            self._map_endpoint(group, runtime, desired.name)
        except (ControllerError, ValueError) as exc:
            log.warning("emulator: backing server for %s failed: %s", group.name, exc)
            group.fail = True
        with self.state.lock:
            finish_put(group, operation)

    def _backed_delete(self, group: Group, operation_id: str) -> None:
        def run() -> None:
            operation = self.state.operations[operation_id]
            for runtime in list(self._locals.values()):
                runtime.delete(group.name)
            with self.state.lock:
                self.state.remove_group(group.key)
                operation.status = "Succeeded"

        threading.Thread(target=run, daemon=True, name="aci-delete").start()


def _desired_from_group(
    group: Group, default_tracking: str | None
) -> tuple[DesiredState, str, str]:
    """The container group as the local runtime's DesiredState (secure values included)."""
    props = group.body["properties"]
    container = props["containers"][0]["properties"]
    plain: dict[str, str] = {}
    secure: dict[str, str] = {}
    for var in container.get("environmentVariables", []):
        if "secureValue" in var:
            secure[var["name"]] = var["secureValue"]
        else:
            plain[var["name"]] = var.get("value", "")
    match = _MODEL_URI.match(plain.get("MODEL_URI", ""))
    if match is None:
        raise ValueError(f"{group.name}: MODEL_URI missing or not models:/name/version")
    admin = secure.get("ALIASFLOW_ADMIN_TOKEN", "")
    tracking = plain.get("MLFLOW_TRACKING_URI") or default_tracking or ""
    requests = container["resources"]["requests"]
    desired = DesiredState(
        name=group.name,
        target_kind=TargetKind.LOCAL,
        model_name=match["name"],
        model_version=match["version"],
        run_id=None,
        image=container["image"],
        port=int(container["ports"][0]["port"]),
        cpu=float(requests["cpu"]),
        memory_gb=float(requests["memoryInGB"]),
        env=tuple(sorted((k, v) for k, v in plain.items() if k not in _RUNTIME_ENV)),
        strategy=Strategy.RECREATE,
        health_timeout_seconds=120,
        secret_env=tuple(sorted((k, v) for k, v in secure.items() if k not in _RUNTIME_ENV)),
        spec_hash=hashlib.sha256(repr(sorted(group.body.items())).encode()).hexdigest()[:16],
    )
    return desired, admin, tracking
