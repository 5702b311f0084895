"""Official example responses replayed through the real SDK with respx.

Each test names the example it follows (azure-rest-api-specs, specification/app/
resource-manager/Microsoft.App/ContainerApps/stable/<api-version>/examples/...). The
SDK talks httpx through azure-core's httpx transport (`tests/contract/examples.py`), so
respx answers at the last hop while auth, LRO polling and deserialisation stay the SDK's
own. Each example body is also checked
against the transcribed schema, so the schema and the examples keep each other honest.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from azure.mgmt.appcontainers import ContainerAppsAPIClient
from azure.mgmt.appcontainers.models import ContainerApp

from tests.containerapps_emulator import schema
from tests.contract.examples import StaticToken, httpx_transport

EXAMPLES = schema.DATA / "app"
ARM = "https://management.azure.com"
SUB = "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345"
APP_URL = f"{ARM}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.App/containerApps"


def example(name: str, version: str = "2026-07-01") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / version / "examples" / name).read_text())
    return loaded


def without_nulls(body: Any) -> Any:
    """Autorest reads `null` as absent; JSON Schema does not (Revisions_List has nextLink null)."""
    if isinstance(body, dict):
        return {k: without_nulls(v) for k, v in body.items() if v is not None}
    if isinstance(body, list):
        return [without_nulls(v) for v in body]
    return body


@pytest.fixture
def client() -> ContainerAppsAPIClient:
    return ContainerAppsAPIClient(
        StaticToken(), SUB, transport=httpx_transport(), polling_interval=0
    )


@pytest.mark.parametrize(
    ("name", "version", "status", "definition"),
    [
        ("ContainerApps_Get.json", "2026-07-01", "200", "ContainerApp"),
        ("ContainerApps_CreateOrUpdate.built.json", "2026-07-01", "200", "ContainerApp"),
        ("ContainerApps_CreateOrUpdate.built.json", "2026-07-01", "201", "ContainerApp"),
        ("ContainerApps_Patch.built.json", "2026-07-01", "200", "ContainerApp"),
        ("ContainerApps_ListSecrets.json", "2026-07-01", "200", "SecretsCollection"),
        ("Revisions_List.json", "2026-07-01", "200", "RevisionCollection"),
        ("ManagedEnvironments_Get.json", "2026-07-01", "200", "ManagedEnvironment"),
    ],
)
def test_every_example_body_fits_the_transcribed_schema(
    name: str, version: str, status: str, definition: str
) -> None:
    body = example(name, version)["responses"][status]["body"]
    assert schema.errors(definition, without_nulls(body)) == []


@respx.mock
def test_get_follows_containerapps_get_example(client: ContainerAppsAPIClient) -> None:
    """examples/ContainerApps_Get.json (2026-07-01)."""
    body = example("ContainerApps_Get.json")["responses"]["200"]["body"]
    route = respx.get(f"{APP_URL}/testcontainerApp0").mock(
        return_value=httpx.Response(200, json=body)
    )
    app = client.container_apps.get("rg", "testcontainerApp0")
    assert route.calls.last.request.url.params["api-version"] == "2026-07-01"
    assert route.calls.last.request.headers["authorization"] == "Bearer replay-token"
    assert app.provisioning_state == "Succeeded"
    assert app.latest_ready_revision_name == "testcontainerApp0-pjxhsye"
    assert app.template.scale.rules[0].http.metadata == {"concurrentRequests": "50"}
    assert app.configuration.ingress.traffic[1].label == "staging"


@respx.mock
def test_create_follows_containerapps_createorupdate_example(
    client: ContainerAppsAPIClient,
) -> None:
    """examples/ContainerApps_CreateOrUpdate.json (2026-07-01): 201 InProgress, then Succeeded."""
    responses = example("ContainerApps_CreateOrUpdate.built.json")["responses"]
    status_url = f"{ARM}/subscriptions/{SUB}/providers/Microsoft.App/locations/eastus"
    status_url += "/containerappOperationStatuses/op1"
    respx.put(f"{APP_URL}/testcontainerApp0").mock(
        return_value=httpx.Response(
            201,
            json=responses["201"]["body"],
            headers={"Azure-AsyncOperation": status_url, "Retry-After": "0"},
        )
    )
    status = respx.get(status_url).mock(
        return_value=httpx.Response(200, json={"status": "Succeeded"})
    )
    final = respx.get(f"{APP_URL}/testcontainerApp0").mock(
        return_value=httpx.Response(200, json=responses["200"]["body"])
    )
    poller = client.container_apps.begin_create_or_update(
        "rg", "testcontainerApp0", ContainerApp({"location": "East US"})
    )
    app = poller.result()
    assert status.called
    assert final.called
    assert app.provisioning_state == "Succeeded"
    assert app.running_status == "Running"


@respx.mock
def test_patch_follows_containerapps_patch_example(client: ContainerAppsAPIClient) -> None:
    """examples/ContainerApps_Patch.json (2026-07-01): 202 with azure-asyncoperation."""
    responses = example("ContainerApps_Patch.built.json")["responses"]
    status_url = responses["202"]["headers"]["azure-asyncoperation"]
    respx.patch(f"{APP_URL}/testcontainerApp0").mock(
        return_value=httpx.Response(
            202, headers={"azure-asyncoperation": status_url, "Retry-After": "0"}
        )
    )
    respx.get(status_url).mock(return_value=httpx.Response(200, json={"status": "Succeeded"}))
    respx.get(f"{APP_URL}/testcontainerApp0").mock(
        return_value=httpx.Response(200, json=responses["200"]["body"])
    )
    app = client.container_apps.begin_update(
        "rg", "testcontainerApp0", ContainerApp({"tags": {"tag1": "value1"}})
    ).result()
    assert app.template.containers[0].image == "repo/testcontainerApp0:v4"


@pytest.mark.parametrize("status", [200, 202, 204])
@respx.mock
def test_delete_follows_containerapps_delete_example(
    client: ContainerAppsAPIClient, status: int
) -> None:
    """examples/ContainerApps_Delete.json (2025-07-01; 2026-07-01 has none): 200, 202 or 204."""
    responses = example("ContainerApps_Delete.json", "2025-07-01")["responses"]
    headers = dict(responses[str(status)].get("headers", {}))
    if headers:
        headers["Retry-After"] = "0"
        respx.get(headers["azure-asyncoperation"]).mock(
            return_value=httpx.Response(200, json={"status": "Succeeded"})
        )
    respx.delete(f"{APP_URL}/testworkerapp0").mock(
        return_value=httpx.Response(status, headers=headers)
    )
    assert client.container_apps.begin_delete("rg", "testworkerapp0").result() is None


@respx.mock
def test_list_secrets_follows_containerapps_listsecrets_example(
    client: ContainerAppsAPIClient,
) -> None:
    """examples/ContainerApps_ListSecrets.json (2026-07-01)."""
    body = example("ContainerApps_ListSecrets.json")["responses"]["200"]["body"]
    respx.post(f"{APP_URL}/testcontainerApp0/listSecrets").mock(
        return_value=httpx.Response(200, json=body)
    )
    assert [
        s.name for s in client.container_apps.list_secrets("rg", "testcontainerApp0").value
    ] == ["secret1", "secret2"]


@respx.mock
def test_revisions_list_follows_revisions_list_example(client: ContainerAppsAPIClient) -> None:
    """examples/Revisions_List.json (2026-07-01): nextLink null ends the paging."""
    body = example("Revisions_List.json")["responses"]["200"]["body"]
    route = respx.get(f"{APP_URL}/testcontainerApp0/revisions").mock(
        return_value=httpx.Response(200, json=body)
    )
    revisions = list(client.container_apps_revisions.list_revisions("rg", "testcontainerApp0"))
    assert route.call_count == 1
    assert [(r.name, r.active, r.replicas, r.traffic_weight) for r in revisions] == [
        ("testcontainerApp0-pjxhsye", True, 1, 80)
    ]


@respx.mock
def test_environment_get_follows_managedenvironments_get_example(
    client: ContainerAppsAPIClient,
) -> None:
    """examples/ManagedEnvironments_Get.json (2026-07-01)."""
    body = example("ManagedEnvironments_Get.json")["responses"]["200"]["body"]
    url = f"{ARM}/subscriptions/{SUB}/resourceGroups/examplerg/providers/Microsoft.App"
    url += "/managedEnvironments/jlaw-demo1"
    respx.get(url).mock(return_value=httpx.Response(200, json=body))
    env = client.managed_environments.get("examplerg", "jlaw-demo1")
    assert env.id is not None
    assert env.id.endswith("/managedEnvironments/jlaw-demo1")
    assert env.default_domain == "jlaw-demo1.k4apps.io"
