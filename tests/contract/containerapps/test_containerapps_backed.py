"""Backed mode: replicas are real model servers behind a weighted, round-robin ingress.

One emulator and one app for the module (few real servers on 2 cores): the ingress
spreads requests over a revision's replicas, a restarted or scaled-out replica boots
from its revision's env (so a hot swap done in place does not survive it: the rule the
containerapp runtime must design around), and the traffic split is exact.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from aliasflow_cli.devstack import MlflowServer
from controller.runtimes.hotswap import signed_headers
from tests.containerapps_emulator import ContainerAppsEmulator
from tests.contract.containerapps.helpers import RG, SUB, app_body, sdk_client

ADMIN = "admin-token-for-backed-tests"


@pytest.fixture(scope="module")
def backed() -> Iterator[ContainerAppsEmulator]:
    emulator = ContainerAppsEmulator(backed=True, ready_timeout=90).start()
    emulator.add_environment(SUB, RG, "ml-prod")
    yield emulator
    emulator.stop()


def served_version(endpoint: str) -> str:
    return str(httpx.get(f"{endpoint}/health", timeout=10).json()["model"]["version"])


def model_env(model: str, version: int, tracking_uri: str) -> list[dict[str, str]]:
    return [
        {"name": "MODEL_URI", "value": f"models:/{model}/{version}"},
        {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
        {"name": "ALIASFLOW_ADMIN_TOKEN", "secretRef": "mlflow-token"},
    ]


@pytest.fixture(scope="module")
def iris_app(
    backed: ContainerAppsEmulator, runtime_model: str, mlflow_server: MlflowServer
) -> Iterator[tuple[ContainerAppsAPIClient, str]]:
    body = app_body(
        backed.state.environments[(SUB, RG.lower(), "ml-prod")].id,
        env=model_env(runtime_model, 1, mlflow_server.url),
        min_replicas=2,
        max_replicas=3,
    )
    body["properties"]["configuration"]["secrets"][0]["value"] = ADMIN
    with sdk_client(backed) as client:
        client.container_apps.begin_create_or_update(RG, "iris", body).result()
        yield client, runtime_model
    assert backed.violations == []


def test_create_with_two_replicas_serves_through_the_ingress_round_robin(
    backed: ContainerAppsEmulator, iris_app: tuple[ContainerAppsAPIClient, str]
) -> None:
    client, _ = iris_app
    app = client.container_apps.get(RG, "iris")
    assert app.provisioning_state == "Succeeded"
    revision = client.container_apps_revisions.get_revision(RG, "iris", app.latest_revision_name)
    assert revision.replicas == 2
    assert revision.health_state == "Healthy"
    url = backed.resolve_endpoint(app.configuration.ingress.fqdn)
    assert url == backed.resolve_endpoint(app.latest_revision_fqdn)
    seen = Counter()
    for _ in range(10):
        answer = httpx.get(f"{url}/health", timeout=10)
        assert answer.status_code == 200
        assert answer.json()["model"]["version"] == "1"
        seen[answer.headers["x-aca-replica"]] += 1
    assert sorted(seen.values()) == [5, 5]


def test_restart_and_scale_out_come_back_on_the_revision_env_not_the_hot_swapped_version(
    backed: ContainerAppsEmulator, iris_app: tuple[ContainerAppsAPIClient, str]
) -> None:
    client, model = iris_app
    app = backed.find(SUB, RG, "iris")
    revision = app.revisions[app.latest]
    for replica in revision.replicas:
        assert replica.endpoint is not None
        url = f"{replica.endpoint}/admin/model"
        body = json.dumps({"model_uri": f"models:/{model}/2"}).encode()
        swap = httpx.post(
            url, headers=signed_headers(ADMIN, "POST", url, body), content=body, timeout=60
        )
        assert swap.status_code == 200, swap.text
    assert [served_version(r.endpoint or "") for r in revision.replicas] == ["2", "2"]
    backed.restart_replica(app, app.latest, 0)
    backed.scale(app, app.latest, 3)
    versions = [served_version(r.endpoint or "") for r in revision.replicas]
    assert versions == ["1", "2", "1"]  # boot-time MODEL_URI wins after a restart or scale-out
    listed = client.container_apps_revision_replicas.list_replicas(RG, "iris", app.latest).value
    assert [r.containers[0].restart_count for r in listed] == [1, 0, 0]
    backed.scale(app, app.latest, 2)


def test_a_new_revision_takes_exactly_its_traffic_weight(
    backed: ContainerAppsEmulator,
    iris_app: tuple[ContainerAppsAPIClient, str],
    mlflow_server: MlflowServer,
) -> None:
    client, model = iris_app
    first = client.container_apps.get(RG, "iris").latest_revision_name
    body = app_body(
        backed.state.environments[(SUB, RG.lower(), "ml-prod")].id,
        env=model_env(model, 2, mlflow_server.url),
        min_replicas=1,
        max_replicas=3,
        traffic=[{"revisionName": first, "weight": 100}],
    )
    body["properties"]["configuration"]["secrets"][0]["value"] = ADMIN
    second = (
        client.container_apps.begin_create_or_update(RG, "iris", body).result().latest_revision_name
    )
    assert second != first
    body["properties"]["configuration"]["ingress"]["traffic"] = [
        {"revisionName": first, "weight": 75},
        {"revisionName": second, "weight": 25},
    ]
    assert (
        client.container_apps.begin_create_or_update(RG, "iris", body).result().latest_revision_name
        == second
    )
    url = backed.resolve_endpoint(client.container_apps.get(RG, "iris").configuration.ingress.fqdn)
    by_revision = Counter()
    for _ in range(40):
        answer = httpx.get(f"{url}/health", timeout=10)
        assert answer.status_code == 200
        by_revision[answer.headers["x-aca-replica"].rsplit("-", 1)[0]] += 1
    assert by_revision == {first: 30, second: 10}
