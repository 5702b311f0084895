"""The official ACI examples, replayed through `AciRuntime` and the real SDK with respx.

Each test names the example it follows (Azure/azure-rest-api-specs,
specification/containerinstance/resource-manager/Microsoft.ContainerInstance/stable/
<api-version>/examples/<name>.json, copied under tests/data/azure). The SDK speaks
api-version 2023-05-01; the payloads are the examples' own, with our ownership tags
added where a test needs the group to be ours.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
import respx
from azure.mgmt.containerinstance import ContainerInstanceManagementClient

from controller.core.types import Action, ActualState, DesiredState, Operation, Strategy, TargetKind
from controller.reconcile.execute import execute
from controller.reconcile.plan import plan_deployment
from controller.runtimes.aci import AciRuntime, QuotaLimiter, RetryOptions
from controller.runtimes.aci.spec import CONTAINER_NAME
from controller.runtimes.probe import ServerProbe
from tests.aci_emulator.schema import violations
from tests.contract.examples import ACI_EXAMPLES, StaticToken, httpx_transport, response_body

ARM = "https://management.azure.com"
SUB = "subid"
PROVIDER = "providers/Microsoft.ContainerInstance"
GROUPS = f"{ARM}/subscriptions/{SUB}/resourceGroups/demo/{PROVIDER}/containerGroups"
OWNED = {
    "aliasflow-managed": "true",
    "aliasflow-deployment": "demo1",
    "aliasflow-spec-hash": "examplehash",
    "aliasflow-model-version": "1",
}


def body(name: str, status: str = "200", *, owned: bool = True) -> dict[str, Any]:
    payload = response_body(ACI_EXAMPLES, name, status)
    if owned:
        payload["tags"] = {**payload.get("tags", {}), **OWNED}
    return payload


def desired(version: str = "1", rg: str = "demo") -> DesiredState:
    return DesiredState(
        name="demo1",
        target_kind=TargetKind.ACI,
        model_name="iris",
        model_version=version,
        run_id=None,
        image="nginx",
        port=80,
        cpu=1.0,
        memory_gb=1.5,
        env=(),
        strategy=Strategy.HOTSWAP,
        health_timeout_seconds=10,
        spec_hash="examplehash",
        target_settings=(
            ("dnsNameLabel", "dnsnamelabel1"),
            ("location", "WestUs"),
            ("resourceGroup", rg),
            ("subscriptionId", SUB),
        ),
    )


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    # The runtime builds its SDK client itself; the transport is the only addition.
    monkeypatch.setattr(
        "controller.runtimes.aci.arm.ContainerInstanceManagementClient",
        partial(ContainerInstanceManagementClient, transport=httpx_transport()),
    )
    with respx.mock(base_url=ARM, assert_all_called=True, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def runtime(arm: respx.MockRouter) -> Iterator[AciRuntime]:
    made = AciRuntime(
        StaticToken(),
        [(SUB, "demo"), (SUB, "demoResource")],
        "admin-token",
        polling_interval=0,
        retry=RetryOptions(total=0),
        quota=QuotaLimiter(100, 300),
        probe=lambda endpoint: ServerProbe(True, "1"),
    )
    yield made
    made.close()


def _api_version(request: httpx.Request) -> str:
    return request.url.params["api-version"]


def test_list_by_resource_group_follows_next_link(
    arm: respx.MockRouter, runtime: AciRuntime
) -> None:
    """ContainerGroupsListByResourceGroup.json (2022-09-01): one owned group, one not,
    over two pages joined by `nextLink` (the operation is x-ms-pageable)."""
    ours = body("ContainerGroupsListByResourceGroup", owned=False)["value"][0]
    ours["tags"] = OWNED
    theirs = body("ContainerGroupsListByResourceGroup", owned=False)["value"][0]
    theirs["name"] = "someone-else"
    next_link = f"{GROUPS}?api-version=2023-05-01&$skipToken=1"

    def page(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("$skipToken") == "1":
            return httpx.Response(200, json={"value": [theirs]})
        return httpx.Response(200, json={"value": [ours], "nextLink": next_link})

    pages = arm.get(url__regex=r".*/resourceGroups/demo/.*/containerGroups\?.*")
    pages.side_effect = page
    arm.get(url__regex=r".*/resourceGroups/demoResource/.*").respond(200, json={"value": []})

    (owned,) = runtime.list_owned()

    assert (owned.name, owned.running, owned.ready) == ("demo1", True, True)
    assert owned.endpoint == "http://10.0.0.1:80"  # no FQDN in the example: the IP
    assert pages.call_count == 2
    assert {_api_version(call.request) for call in arm.calls} == {"2023-05-01"}


def test_get_succeeded_is_running(arm: respx.MockRouter, runtime: AciRuntime) -> None:
    """ContainerGroupsGet_Succeeded.json (2021-10-01)."""
    arm.get(url__regex=r".*/resourceGroups/demo/.*/containerGroups\?.*").respond(
        200, json={"value": [body("ContainerGroupsGet_Succeeded")]}
    )
    arm.get(url__regex=r".*/resourceGroups/demoResource/.*").respond(200, json={"value": []})
    arm.get(f"{GROUPS}/demo1").respond(200, json=body("ContainerGroupsGet_Succeeded"))

    seen = runtime.observe("demo1")

    assert seen is not None
    assert (seen.running, seen.ready, seen.served_version) == (True, True, "1")


def test_get_failed_is_not_running_and_self_heal_recreates(
    arm: respx.MockRouter, runtime: AciRuntime
) -> None:
    """ContainerGroupsGet_Failed.json (2021-10-01): Failed, container Waiting."""
    failed = body("ContainerGroupsGet_Failed")
    arm.get(url__regex=r".*/resourceGroups/demo/.*/containerGroups\?.*").respond(
        200, json={"value": [failed]}
    )
    arm.get(url__regex=r".*/resourceGroups/demoResource/.*").respond(200, json={"value": []})
    arm.get(f"{GROUPS}/demo1").respond(200, json=failed)

    seen = runtime.observe("demo1")

    assert seen is not None
    assert not seen.running
    assert "Failed" in seen.detail
    assert "Waiting" in seen.detail
    assert plan_deployment(desired(), seen).operation is Operation.RECREATE


@pytest.mark.parametrize("status", ["201", "200"])
def test_create_or_update_answered_as_the_example(
    arm: respx.MockRouter, runtime: AciRuntime, status: str
) -> None:
    """ContainerGroupsCreateOrUpdate.json (2021-10-01): 201 on create, 200 on update,
    both `Succeeded` in the body, so the poller is done without polling. What we PUT
    must itself be a valid `ContainerGroup` of the 2023-05-01 spec."""
    if status == "201":
        arm.get(f"{GROUPS}/demo1").respond(
            404, json={"error": {"code": "ResourceNotFound", "message": "not found"}}
        )
    else:
        arm.get(f"{GROUPS}/demo1").respond(200, json=body("ContainerGroupsGet_Succeeded"))
    put = arm.put(f"{GROUPS}/demo1").respond(
        int(status), json=body("ContainerGroupsCreateOrUpdate", status)
    )

    result = execute(runtime, Action(Operation.CREATE, "demo1", "test", desired()))

    assert result is not None
    assert result.running
    assert result.endpoint == "http://dnsnamelabel1.azure-container.io:80"
    sent = json.loads(put.calls.last.request.content)
    assert violations("ContainerGroup", sent) == []
    assert sent["properties"]["containers"][0]["name"] == CONTAINER_NAME


def test_update_patches_tags_only(arm: respx.MockRouter, runtime: AciRuntime) -> None:
    """ContainerGroupsUpdate.json (2022-09-01): PATCH carries a `Resource` with tags;
    the answer is the whole group. The hot swap itself goes to the server first."""
    swap = arm.post("http://dnsnamelabel1.azure-container.io:80/admin/model").respond(
        200, json={"status": "swapped"}
    )
    group = body("ContainerGroupsGet_Succeeded")
    group["properties"]["ipAddress"]["fqdn"] = "dnsnamelabel1.azure-container.io"
    arm.get(f"{GROUPS.replace('/demo/', '/demoResource/')}/demo1").respond(200, json=group)
    patch = arm.patch(f"{GROUPS.replace('/demo/', '/demoResource/')}/demo1").respond(
        200, json=body("ContainerGroupsUpdate")
    )
    current = ActualState(
        "demo1",
        "examplehash",
        "1",
        True,
        "http://dnsnamelabel1.azure-container.io:80",
        served_version="1",
        ready=True,
    )
    action = plan_deployment(desired("2", rg="demoResource"), current)
    assert action.operation is Operation.HOTSWAP

    swapped = execute(runtime, action)

    assert swap.called
    sent = json.loads(patch.calls.last.request.content)
    assert set(sent) == {"tags"}
    assert violations("Resource", sent) == []
    assert sent["tags"]["aliasflow-model-version"] == "2"
    assert swapped is not None
    assert swapped.endpoint == "http://dnsnamelabel1.azure-container.io:80"


@pytest.mark.parametrize("status", [200, 202, 204])
def test_delete_as_the_example_answers(
    arm: respx.MockRouter, runtime: AciRuntime, status: int
) -> None:
    """ContainerGroupsDelete.json (2022-09-01): 200 with the group, 202 (delete started;
    ARM adds `Azure-AsyncOperation`, which the example leaves out), 204 (not found)."""
    arm.get(url__regex=r".*/resourceGroups/demo/.*/containerGroups\?.*").respond(
        200, json={"value": [body("ContainerGroupsGet_Succeeded")]}
    )
    arm.get(url__regex=r".*/resourceGroups/demoResource/.*").respond(200, json={"value": []})
    arm.get(f"{GROUPS}/demo1").respond(200, json=body("ContainerGroupsGet_Succeeded"))
    operation = f"{ARM}/subscriptions/{SUB}/{PROVIDER}/locations/westus/operations/op1"
    if status == 200:
        arm.delete(f"{GROUPS}/demo1").respond(200, json=body("ContainerGroupsDelete"))
    elif status == 202:
        arm.delete(f"{GROUPS}/demo1").respond(
            202, headers={"Azure-AsyncOperation": f"{operation}?api-version=2023-05-01"}
        )
        arm.get(operation).respond(200, json={"status": "Succeeded"})
    else:
        arm.delete(f"{GROUPS}/demo1").respond(204)

    runtime.delete("demo1")

    assert arm.routes  # every route above was called (assert_all_called)
