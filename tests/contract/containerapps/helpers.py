"""What the Container Apps tests share besides fixtures: ids and the body a runtime PUTs."""

from __future__ import annotations

from typing import Any

from azure.mgmt.appcontainers import ContainerAppsAPIClient

from tests.containerapps_emulator import ContainerAppsEmulator

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
