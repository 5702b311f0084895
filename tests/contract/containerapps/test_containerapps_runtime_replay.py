"""Official example responses replayed through the containerapp runtime's own ARM layer.

The runtime reads apps as ARM's JSON (`ContainerAppsArm` + `spec.app_view`); these check
that reading against what Azure documents, through the real SDK pipeline, with respx
answering at the last hop (azure-core's httpx transport, `tests/contract/examples.py`).
Each test names the example it follows.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import respx

from controller.runtimes.azurearm import ArmClients, RetryOptions
from controller.runtimes.containerapp.arm import ContainerAppsArm
from controller.runtimes.containerapp.spec import app_view
from tests.containerapps_emulator import schema
from tests.contract.examples import StaticToken, httpx_transport

ARM = "https://management.azure.com"
SUB = "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345"
APPS = f"{ARM}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.App/containerApps"


def example(name: str, version: str = "2026-07-01") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (schema.DATA / "app" / version / "examples" / name).read_text()
    )
    return loaded


def arm() -> ContainerAppsArm:
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    def client(credential: Any, subscription: str, **kwargs: Any) -> ContainerAppsAPIClient:
        return ContainerAppsAPIClient(
            credential, subscription, transport=httpx_transport(), **kwargs
        )

    clients = ArmClients(
        client,
        StaticToken(),
        base_url=ARM,
        audience=ARM,
        retry=RetryOptions(total=0),
        polling_interval=0,
    )
    return ContainerAppsArm(clients, polling_interval=0)


@respx.mock
def test_a_listing_reads_as_the_listbyresourcegroup_example_says() -> None:
    """examples/ContainerApps_ListByResourceGroup.json (2025-07-01; the same payload in
    2026-07-01): no latestRevisionName, no environmentId (managedEnvironmentId only),
    `nextLink: null` ending the paging, a traffic split with a label."""
    body = example("ContainerApps_ListByResourceGroup.json", "2025-07-01")["responses"]["200"]
    route = respx.get(APPS).mock(return_value=httpx.Response(200, json=body["body"]))
    (item,) = arm().list_apps((SUB, "rg"))
    assert route.call_count == 1
    assert route.calls.last.request.url.params["api-version"] == "2026-07-01"
    view = app_view(item)
    assert view.name == "testcontainerapp0"
    assert view.running
    assert view.latest_revision is None
    assert view.latest_ready_revision == "testcontainerapp0-pjxhsye"
    assert view.environment_id is not None
    assert view.environment_id.endswith("/managedEnvironments/demokube")
    assert view.weights() == {"testcontainerapp0-ab1234": 80, "testcontainerapp0-ab4321": 20}
    assert view.min_replicas == 1
    assert view.tags == {}  # not ours: the runtime leaves it alone


@respx.mock
def test_a_get_reads_as_the_containerapps_get_example_says() -> None:
    """examples/ContainerApps_Get.json (2026-07-01)."""
    body = example("ContainerApps_Get.json")["responses"]["200"]["body"]
    respx.get(f"{APPS}/testcontainerApp0").mock(return_value=httpx.Response(200, json=body))
    found = arm().get_app((SUB, "rg"), "testcontainerApp0")
    assert found is not None
    view = app_view(found)
    assert view.latest_ready_revision == "testcontainerApp0-pjxhsye"
    assert view.fqdn == body["properties"]["configuration"]["ingress"]["fqdn"]
    assert view.provisioning_state == "Succeeded"
    assert view.running_status == "Running"


@respx.mock
def test_revisions_read_as_the_revisions_list_example_says() -> None:
    """examples/Revisions_List.json (2026-07-01)."""
    body = example("Revisions_List.json")["responses"]["200"]["body"]
    respx.get(f"{APPS}/testcontainerApp0/revisions").mock(
        return_value=httpx.Response(200, json=body)
    )
    (revision,) = arm().revisions((SUB, "rg"), "testcontainerApp0")
    assert (revision.name, revision.active, revision.replicas) == (
        "testcontainerApp0-pjxhsye",
        True,
        1,
    )
    # The example leaves provisioningState out: unknown, so never taken for Provisioned.
    assert revision.provisioning_state == "Unknown"


@respx.mock
def test_an_environment_name_resolves_as_the_managedenvironments_get_example_says() -> None:
    """examples/ManagedEnvironments_Get.json (2026-07-01)."""
    body = example("ManagedEnvironments_Get.json")["responses"]["200"]["body"]
    url = f"{ARM}/subscriptions/{SUB}/resourceGroups/examplerg/providers/Microsoft.App"
    respx.get(f"{url}/managedEnvironments/jlaw-demo1").mock(
        return_value=httpx.Response(200, json=body)
    )
    respx.get(f"{url}/managedEnvironments/missing").mock(
        return_value=httpx.Response(
            404, json={"error": {"code": "ResourceNotFound", "message": "not found"}}
        )
    )
    found = arm().environment_id((SUB, "examplerg"), "jlaw-demo1")
    assert found == body["id"]
    assert arm().environment_id((SUB, "examplerg"), "missing") is None
