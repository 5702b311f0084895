"""Fixtures for the Container Apps emulator and contract tests: the real SDK, over HTTPS.

One counting-mode emulator per module; every test ends by asserting that no response
the emulator sent broke the spec's schema (the emulator checks each body it sends).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from tests.containerapps_emulator import ContainerAppsEmulator
from tests.containerapps_emulator.state import Faults

SUB = "11111111-2222-3333-4444-555555555555"
RG = "rg-ml"
ENV = "ml-prod"
SECRET = "s3cr3t-value-never-shown"


def sdk_client(emulator: ContainerAppsEmulator) -> ContainerAppsAPIClient:
    return ContainerAppsAPIClient(
        emulator.credential(),
        SUB,
        base_url=emulator.url,
        connection_verify=str(emulator.ca_path),
        polling_interval=0.02,
        retry_backoff_factor=0.01,
    )


def app_body(
    env_id: str,
    image: str = "myreg.azurecr.io/aliasflow-server:1",
    env: list[dict[str, str]] | None = None,
    min_replicas: int = 2,
    max_replicas: int = 10,
    traffic: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A container app as the containerapp runtime would PUT it."""
    ingress: dict[str, Any] = {"external": True, "targetPort": 8080, "transport": "auto"}
    if traffic is not None:
        ingress["traffic"] = traffic
    return {
        "location": "westeurope",
        "tags": {"aliasflow.owned": "true", "aliasflow.deployment": "iris"},
        "properties": {
            "environmentId": env_id,
            "configuration": {
                "activeRevisionsMode": "Multiple",
                "secrets": [{"name": "mlflow-token", "value": SECRET}],
                "ingress": ingress,
            },
            "template": {
                "containers": [
                    {
                        "name": "server",
                        "image": image,
                        "env": env
                        or [
                            {"name": "MODEL_URI", "value": "models:/iris/1"},
                            {"name": "MLFLOW_TRACKING_TOKEN", "secretRef": "mlflow-token"},
                        ],
                        "resources": {"cpu": 0.5, "memory": "1Gi"},
                    }
                ],
                "scale": {
                    "minReplicas": min_replicas,
                    "maxReplicas": max_replicas,
                    "rules": [{"name": "http", "http": {"metadata": {"concurrentRequests": "50"}}}],
                },
            },
        },
    }


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
