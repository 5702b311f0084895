"""Fixtures for the Container Apps emulator and contract tests: the real SDK, over HTTPS.

One counting-mode emulator per module; every test ends by asserting that no response
the emulator sent broke the spec's schema (the emulator checks each body it sends).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from tests.containerapps_emulator import ContainerAppsEmulator
from tests.containerapps_emulator.state import Faults
from tests.contract.containerapps.helpers import ENV, RG, SUB, sdk_client


@pytest.fixture(scope="module")
def emulator() -> Iterator[ContainerAppsEmulator]:
    emulator = ContainerAppsEmulator(page_size=2).start()
    emulator.add_environment(SUB, RG, ENV)
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emulator: ContainerAppsEmulator) -> Iterator[ContainerAppsAPIClient]:
    emulator.state.faults = Faults()  # no fault leaks from one test into the next
    with sdk_client(emulator) as client:
        yield client
    assert emulator.violations == [], "the emulator sent bodies the spec does not allow"


@pytest.fixture
def env_id(emulator: ContainerAppsEmulator) -> str:
    return emulator.state.environments[(SUB, RG.lower(), ENV)].id
