"""The emulator's rules, driven through the real `azure-mgmt-appcontainers` SDK.

Each test is the driver a runtime will be: ContainerAppsAPIClient over HTTPS with a
real ClientSecretCredential. The rules under test cite their sources in
tests/containerapps_emulator/state.py; the fixture checks every response's schema.
"""

from __future__ import annotations

import copy
import json

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from tests.containerapps_emulator import ContainerAppsEmulator
from tests.contract.containerapps.helpers import RG, SECRET, SUB, app_body


def create(client: ContainerAppsAPIClient, name: str, body: dict) -> object:
    return client.container_apps.begin_create_or_update(RG, name, body).result()


def test_environment_resolves_by_name_to_its_resource_id(
    client: ContainerAppsAPIClient, env_id: str
) -> None:
    env = client.managed_environments.get(RG, "ml-prod")
    assert env.id == env_id
    assert env.provisioning_state == "Succeeded"
    with pytest.raises(ResourceNotFoundError):
        client.managed_environments.get(RG, "no-such-env")


def test_create_makes_one_revision_named_app_dash_dash_suffix(
    client: ContainerAppsAPIClient, env_id: str
) -> None:
    app = create(client, "create-1", app_body(env_id))
    assert app.provisioning_state == "Succeeded"
    assert app.running_status == "Running"
    assert app.latest_revision_name.startswith("create-1--")
    assert app.latest_ready_revision_name == app.latest_revision_name
    assert app.configuration.ingress.fqdn.startswith("create-1.")
    assert app.latest_revision_fqdn.startswith(app.latest_revision_name + ".")
    revisions = list(client.container_apps_revisions.list_revisions(RG, "create-1"))
    assert [r.name for r in revisions] == [app.latest_revision_name]
    assert revisions[0].active
    assert revisions[0].replicas == 2
    assert revisions[0].traffic_weight == 100
    replicas = client.container_apps_revision_replicas.list_replicas(
        RG, "create-1", revisions[0].name
    )
    assert len(replicas.value) == 2
    assert all(r.running_state == "Running" for r in replicas.value)


def test_secret_values_never_come_back_from_get_only_from_list_secrets(
    emulator: ContainerAppsEmulator, client: ContainerAppsAPIClient, env_id: str
) -> None:
    create(client, "secret-1", app_body(env_id))
    sent_before = len(emulator.state.sent)
    app = client.container_apps.get(RG, "secret-1")
    listed = list(client.container_apps.list_by_resource_group(RG))
    assert [s.name for s in app.configuration.secrets] == ["mlflow-token"]
    assert app.configuration.secrets[0].value is None
    assert all(SECRET.encode() not in body for body in emulator.state.sent[sent_before:])
    assert listed
    secrets = client.container_apps.list_secrets(RG, "secret-1").value
    assert [(s.name, s.value) for s in secrets] == [("mlflow-token", SECRET)]


def test_a_template_change_makes_a_new_revision_and_a_traffic_or_secret_change_does_not(
    client: ContainerAppsAPIClient, env_id: str
) -> None:
    first = create(client, "rev-1", app_body(env_id)).latest_revision_name
    # Traffic and secrets are application-scope: no new revision (docs: revisions).
    body = app_body(env_id, traffic=[{"revisionName": first, "weight": 100}])
    body["properties"]["configuration"]["secrets"][0]["value"] = "rotated"
    assert create(client, "rev-1", body).latest_revision_name == first
    patched = client.container_apps.begin_update(RG, "rev-1", {"tags": {"team": "ds"}}).result()
    assert patched.latest_revision_name == first
    assert patched.tags["team"] == "ds"
    # An image change is revision-scope: a new revision, the old one stays (Multiple mode).
    body = app_body(
        env_id,
        image="myreg.azurecr.io/aliasflow-server:2",
        traffic=[{"revisionName": first, "weight": 100}],
    )
    second = create(client, "rev-1", body).latest_revision_name
    assert second != first
    assert second.startswith("rev-1--")
    by_name = {r.name: r for r in client.container_apps_revisions.list_revisions(RG, "rev-1")}
    assert set(by_name) == {first, second}
    assert by_name[first].traffic_weight == 100
    assert by_name[second].traffic_weight == 0
    assert by_name[first].active
    assert by_name[second].active
    # Shifting traffic is again no new revision.
    split = [{"revisionName": first, "weight": 80}, {"revisionName": second, "weight": 20}]
    app = create(
        client,
        "rev-1",
        {
            **body,
            "properties": {
                **body["properties"],
                "configuration": {
                    **body["properties"]["configuration"],
                    "ingress": {"external": True, "targetPort": 8080, "traffic": split},
                },
            },
        },
    )
    assert app.latest_revision_name == second
    weights = {
        r.name: r.traffic_weight
        for r in client.container_apps_revisions.list_revisions(RG, "rev-1")
    }
    assert weights == {first: 80, second: 20}


def test_revision_suffix_names_the_revision_and_cannot_be_reused(
    client: ContainerAppsAPIClient, env_id: str
) -> None:
    body = app_body(env_id)
    body["properties"]["template"]["revisionSuffix"] = "v1"
    assert create(client, "suffix-1", body).latest_revision_name == "suffix-1--v1"
    body["properties"]["template"]["containers"][0]["image"] = "other:2"
    with pytest.raises(HttpResponseError) as caught:
        create(client, "suffix-1", body)
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ([{"latestRevision": True, "weight": 60}], "must add up to 100, got 60"),
        (
            [{"latestRevision": True, "weight": 100}, {"revisionName": "nope--x", "weight": 0}],
            "does not exist",
        ),
    ],
)
def test_bad_traffic_is_refused_with_a_clear_error(
    client: ContainerAppsAPIClient, env_id: str, traffic: list, message: str
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        create(client, "traffic-bad", app_body(env_id, traffic=traffic))
    assert caught.value.status_code == 400
    assert message in str(caught.value)
    with pytest.raises(ResourceNotFoundError):
        client.container_apps.get(RG, "traffic-bad")


@pytest.mark.parametrize(("minimum", "maximum"), [(-1, 10), (0, 0), (0, 1001), (5, 3)])
def test_scale_limits_follow_the_docs(
    client: ContainerAppsAPIClient, env_id: str, minimum: int, maximum: int
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        create(client, "scale-bad", app_body(env_id, min_replicas=minimum, max_replicas=maximum))
    assert caught.value.status_code == 400


def test_scale_to_zero_and_one_thousand_replicas_are_allowed(
    client: ContainerAppsAPIClient, env_id: str
) -> None:
    app = create(client, "scale-ok", app_body(env_id, min_replicas=0, max_replicas=1000))
    assert app.template.scale.min_replicas == 0
    assert app.template.scale.max_replicas == 1000
    assert (
        client.container_apps_revisions.get_revision(
            RG, "scale-ok", app.latest_revision_name
        ).replicas
        == 0
    )


def test_scale_hook_sets_replicas_between_min_and_max(
    emulator: ContainerAppsEmulator, client: ContainerAppsAPIClient, env_id: str
) -> None:
    revision = create(
        client, "scale-hook", app_body(env_id, min_replicas=1, max_replicas=3)
    ).latest_revision_name
    app = emulator.find(SUB, RG, "scale-hook")
    emulator.scale(app, revision, 3)
    assert (
        len(client.container_apps_revision_replicas.list_replicas(RG, "scale-hook", revision).value)
        == 3
    )
    with pytest.raises(ValueError, match="outside"):
        emulator.scale(app, revision, 4)


def test_deactivate_activate_and_restart_a_revision(
    emulator: ContainerAppsEmulator, client: ContainerAppsAPIClient, env_id: str
) -> None:
    revision = create(client, "lifecycle", app_body(env_id)).latest_revision_name
    ops = client.container_apps_revisions
    ops.restart_revision(RG, "lifecycle", revision)
    replicas = client.container_apps_revision_replicas.list_replicas(
        RG, "lifecycle", revision
    ).value
    assert all(r.containers[0].restart_count == 1 for r in replicas)
    ops.deactivate_revision(RG, "lifecycle", revision)
    got = ops.get_revision(RG, "lifecycle", revision)
    assert not got.active
    assert got.running_state == "Stopped"
    assert got.replicas == 0
    ops.activate_revision(RG, "lifecycle", revision)
    assert ops.get_revision(RG, "lifecycle", revision).replicas == 2


def test_single_mode_keeps_only_the_latest_revision_active(
    client: ContainerAppsAPIClient, env_id: str
) -> None:
    body = app_body(env_id)
    body["properties"]["configuration"]["activeRevisionsMode"] = "Single"
    first = create(client, "single", body).latest_revision_name
    body["properties"]["template"]["containers"][0]["image"] = "img:2"
    second = create(client, "single", body).latest_revision_name
    active = {
        r.name: r.active for r in client.container_apps_revisions.list_revisions(RG, "single")
    }
    assert active == {first: False, second: True}


def test_list_by_resource_group_follows_next_link(
    client: ContainerAppsAPIClient, env_id: str
) -> None:
    for index in range(5):
        create(client, f"page-{index}", app_body(env_id, min_replicas=0))
    names = [a.name for a in client.container_apps.list_by_resource_group(RG)]
    assert {f"page-{i}" for i in range(5)} <= set(names)
    assert len(names) == len(set(names))


def test_delete_is_a_long_running_operation_and_then_the_app_is_gone(
    emulator: ContainerAppsEmulator, client: ContainerAppsAPIClient, env_id: str
) -> None:
    create(client, "gone", app_body(env_id))
    client.container_apps.begin_delete(RG, "gone").result()
    with pytest.raises(ResourceNotFoundError):
        client.container_apps.get(RG, "gone")
    client.container_apps.begin_delete(RG, "gone").result()  # 204: already absent


def test_a_write_while_an_operation_runs_is_a_409(
    emulator: ContainerAppsEmulator, client: ContainerAppsAPIClient, env_id: str
) -> None:
    emulator.state.faults.provisioning_delay = 30
    poller = client.container_apps.begin_create_or_update(RG, "busy", app_body(env_id))
    with pytest.raises(HttpResponseError) as caught:
        client.container_apps.begin_update(RG, "busy", {"tags": {"a": "b"}}).result()
    assert caught.value.status_code == 409
    assert client.container_apps.get(RG, "busy").provisioning_state == "InProgress"
    emulator.state.faults.provisioning_delay = 0
    operation = emulator.find(SUB, RG, "busy").operation
    assert operation is not None
    operation.done_at = 0
    assert poller.result().provisioning_state == "Succeeded"


def test_throttling_and_server_errors_are_retried_by_the_sdk(
    emulator: ContainerAppsEmulator, client: ContainerAppsAPIClient, env_id: str
) -> None:
    create(client, "storm", app_body(env_id))
    emulator.state.reset_counters()
    # azure-core retries a status at most 3 times by default (retry_status=3).
    emulator.state.throttle(count=1, retry_after=0)
    emulator.state.faults.errors_500 = 2
    assert client.container_apps.get(RG, "storm").name == "storm"
    assert sum(emulator.state.throttled.values()) == 1
    assert sum(emulator.state.failed.values()) == 2
    assert emulator.state.calls[("GET", "app")] == 4


def test_failed_provisioning_ends_the_operation_failed(
    emulator: ContainerAppsEmulator, client: ContainerAppsAPIClient, env_id: str
) -> None:
    emulator.state.faults.fail_provisioning.add("broken")
    with pytest.raises(HttpResponseError):
        create(client, "broken", app_body(env_id))
    app = client.container_apps.get(RG, "broken")
    assert app.provisioning_state == "Failed"
    revision = client.container_apps_revisions.get_revision(RG, "broken", app.latest_revision_name)
    assert revision.provisioning_state == "Failed"
    assert revision.health_state == "Unhealthy"


def test_arm_refuses_missing_tokens_wrong_api_versions_and_bad_bodies(
    emulator: ContainerAppsEmulator, client: ContainerAppsAPIClient, env_id: str
) -> None:
    url = f"{emulator.url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App"
    url += "/containerApps"
    with httpx.Client(verify=str(emulator.ca_path)) as http:
        assert http.get(url, params={"api-version": "2026-07-01"}).status_code == 401
        token = emulator.credential().get_token("https://management.azure.com/.default").token
        auth = {"Authorization": f"Bearer {token}"}
        old = http.get(url, params={"api-version": "2023-05-01"}, headers=auth)
        assert old.status_code == 400
        assert old.json()["error"]["code"] == "NoRegisteredProviderFound"
        assert http.get(url, headers=auth).status_code == 400
        bad = copy.deepcopy(app_body(env_id))
        bad["properties"]["template"]["scale"]["minReplicas"] = "two"
        answer = http.put(
            f"{url}/bad-body",
            params={"api-version": "2026-07-01"},
            headers=auth,
            content=json.dumps(bad),
        )
        assert answer.status_code == 400
        assert "minReplicas" in answer.json()["error"]["message"]
        unknown = http.get(
            f"{url}/x/authConfigs", params={"api-version": "2026-07-01"}, headers=auth
        )
        assert unknown.status_code == 404
