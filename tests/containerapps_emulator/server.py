"""A loopback HTTPS Container Apps emulator the real `azure-mgmt-appcontainers` SDK talks to.

HTTPS with a `trustme` CA made per emulator, because azure-core's bearer-token policy
refuses plain http; the SDK gets the CA as `connection_verify`. One host serves ARM and
the AAD token endpoint that `ClientSecretCredential` (MSAL) uses. In backed mode each
app gets an `Ingress`; an app's FQDN does not resolve here, so `resolve_endpoint`
maps it (and each revision's FQDN) to that ingress, like the ACI emulator's resolver.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import trustme
import uvicorn
from azure.identity import ClientSecretCredential

from controller.runtimes.netutil import free_port
from tests.containerapps_emulator.app import create_app
from tests.containerapps_emulator.backed import Ingress, ReplicaProcesses
from tests.containerapps_emulator.state import App, EmulatorState, Environment, Revision

TENANT = "00000000-0000-0000-0000-00000000cccc"
CLIENT_ID = "00000000-0000-0000-0000-00000000dddd"
CLIENT_SECRET = "containerapps-emulator-client-secret"


class ContainerAppsEmulator:
    def __init__(
        self,
        *,
        backed: bool = False,
        page_size: int | None = None,
        port: int | None = None,
        ready_timeout: float = 60.0,
        check_schema: bool = True,
    ) -> None:
        self.state = EmulatorState()
        #: Every way a response broke the spec's schema; tests assert it stays empty.
        self.violations: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="containerapps-emulator-")
        tmp = Path(self._tmp.name)
        ca = trustme.CA()
        self.cert_path = tmp / "server.pem"
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            str(self.cert_path)
        )
        self.ca_path = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self.port = port or free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.backed = backed
        self._ingresses: dict[tuple[str, str, str], Ingress] = {}
        self._lock = threading.Lock()
        self.replicas: ReplicaProcesses | None = None
        if backed:
            self.replicas = ReplicaProcesses(self.state, ready_timeout)
            self.state.on_revision = self._on_revision
            self.state.on_stop = self.replicas.stop_revision
            self.state.on_restart = self.replicas.restart_revision
        # check_schema=False only for scale runs: the schema check of every body costs
        # more than the listing it checks.
        app = create_app(
            self.state,
            lambda: self.url,
            self.violations,
            page_size=page_size,
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
            # The SDK keeps connections alive: waiting for them to close only delays a stop.
            timeout_graceful_shutdown=0.1,  # type: ignore[arg-type]
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="aca-arm")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ContainerAppsEmulator:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("Container Apps emulator did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.replicas is not None:
            self.replicas.stop_all()
        for ingress in list(self._ingresses.values()):
            ingress.stop()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._tmp.cleanup()

    # -- what a runtime under test is given --------------------------------------------------

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

    def add_environment(
        self, subscription: str, resource_group: str, name: str, location: str = "westeurope"
    ) -> Environment:
        return self.state.add_environment(subscription, resource_group, name, location)

    def resolve_endpoint(self, fqdn: str) -> str:
        """Backed mode: the ingress URL behind an app's (or revision's) FQDN; else a dead one."""
        with self.state.lock:
            for app in self.state.apps.values():
                names = {app.fqdn(), *(app.fqdn(r) for r in app.revisions)}
                if fqdn in names and app.key in self._ingresses:
                    return self._ingresses[app.key].url
        return f"http://127.0.0.1:9/{fqdn}"

    # -- test hooks --------------------------------------------------------------------------

    def find(self, subscription: str, resource_group: str, name: str) -> App:
        app = self.state.app(subscription, resource_group, name)
        if app is None:
            raise KeyError(f"no container app {name}")
        return app

    def scale(self, app: App, revision: str, replicas: int) -> None:
        """Stand-in for HTTP-concurrency autoscaling: set a revision's replica count."""
        target = app.revisions[revision]
        self.state.scale(app, target, replicas)
        if self.replicas is not None:
            self.replicas.scale(app, target, replicas)

    def restart_replica(self, app: App, revision: str, index: int = 0) -> None:
        """A replica's container exits and its process comes back from the revision env."""
        target = app.revisions[revision]
        if self.replicas is None:
            target.replicas[index].restarts += 1
        else:
            self.replicas.restart_replica(app, target, target.replicas[index])

    # -- backed mode ---------------------------------------------------------------------------

    def _on_revision(self, app: App, revision: Revision) -> None:
        assert self.replicas is not None
        with self._lock:
            ingress = self._ingresses.get(app.key)
            if ingress is None:
                self._ingresses[app.key] = Ingress(self.state, app.key)
        self.replicas.provision(app, revision)
