"""Fixtures for the containerapp runtime: the real SDK against the Container Apps emulator.

Counting mode has no server processes, so `LinkedReplicas` plays the servers' side of
the link the way a well-behaved server does: every replica of an active, provisioned
revision serves what the controller tells its revision and reports it. Tests silence a
revision to play servers that never report (a broken link, a crash loop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from controller.runtimes.azurearm import RetryOptions
from controller.runtimes.containerapp import ContainerAppRuntime, ServerWiring
from controller.runtimes.counters import parse_counters
from controller.runtimes.link import ServerLinks
from tests.containerapps_emulator import ContainerAppsEmulator
from tests.containerapps_emulator.state import App, Revision
from tests.controller.runtimes.containerapp.helpers import CONTROLLER_SECRET, ENV, RG, SUB

OTHER_RG = "rg-ml-2"
WIRING = ServerWiring("http://127.0.0.1:9/controller", 0.5, tracking_uri="http://mlflow:5000")


@pytest.fixture
def emulator() -> Iterator[ContainerAppsEmulator]:
    emu = ContainerAppsEmulator(page_size=2).start()
    emu.add_environment(SUB, RG, ENV)
    emu.add_environment(SUB, OTHER_RG, ENV)
    yield emu
    assert emu.violations == [], "the emulator sent bodies the spec does not allow"
    emu.stop()


class LinkedReplicas:
    def __init__(self, emulator: ContainerAppsEmulator, links: ServerLinks) -> None:
        self.emulator = emulator
        self.links = links
        #: Revisions whose replicas never report.
        self.silent: set[str] = set()
        #: Whether replicas apply (and report) the split the controller decided.
        self.split = True
        #: Prometheus text every replica reports as its counters, if any.
        self.counters: str | None = None
        #: Called (app, revision) before a replica of that revision reports.
        self.on_report: Callable[[App, Revision], None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="linked-replicas")

    def start(self) -> LinkedReplicas:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            with self.emulator.state.lock:
                apps = list(self.emulator.state.apps.values())
            for app in apps:
                for revision in list(app.revisions.values()):
                    if not revision.active or revision.provisioning != "Provisioned":
                        continue
                    desired = self.links.desired(app.name, revision.name)
                    if desired is None:
                        continue
                    if self.on_report is not None:
                        self.on_report(app, revision)
                    if revision.name in self.silent:
                        continue
                    traffic = self.links.traffic(app.name).applied() if self.split else None
                    counters = parse_counters(self.counters) if self.counters else None
                    for replica in list(revision.replicas):
                        self.links.report(
                            app.name,
                            replica.name,
                            desired.version,
                            True,
                            revision.name,
                            traffic=traffic,
                            counters=counters,
                        )


@pytest.fixture
def links() -> ServerLinks:
    return ServerLinks(report_ttl=30.0)


@pytest.fixture
def replicas(emulator: ContainerAppsEmulator, links: ServerLinks) -> Iterator[LinkedReplicas]:
    linked = LinkedReplicas(emulator, links).start()
    yield linked
    linked.stop()


RuntimeFactory = Callable[..., ContainerAppRuntime]


@pytest.fixture
def make_runtime(emulator: ContainerAppsEmulator, links: ServerLinks) -> Iterator[RuntimeFactory]:
    made: list[ContainerAppRuntime] = []

    def make(**overrides: object) -> ContainerAppRuntime:
        kwargs: dict[str, object] = {
            "base_url": emulator.url,
            "connection_verify": str(emulator.ca_path),
            "endpoint_resolver": emulator.resolve_endpoint,
            "polling_interval": 0.02,
            "retry": RetryOptions(total=10, backoff_factor=0.01, backoff_max=0.5),
            "check_interval": 0.02,
            "drain_seconds": 0.0,
            "observe_ttl": 0.0,
        }
        kwargs.update(overrides)
        runtime = ContainerAppRuntime(
            emulator.credential(),
            [(SUB, RG), (SUB, OTHER_RG)],
            CONTROLLER_SECRET,
            kwargs.pop("links", links),  # type: ignore[arg-type]
            kwargs.pop("wiring", WIRING),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()
