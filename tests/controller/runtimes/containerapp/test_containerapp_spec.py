"""The pure half of the containerapp runtime: the app it PUTs, and what it reads back.

The body must fit the spec's `ContainerApp` schema (the same check the emulator runs on
every PUT), carry secrets only as secret references, and name a revision that moves with
exactly what a replica would see.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from controller.core.errors import InvalidSpecError
from controller.runtimes.containerapp.spec import (
    KEY_SECRET_NAME,
    TAG_RUNTIME_HASH,
    AppView,
    RegistryAccess,
    ReplicaView,
    ServerWiring,
    actual_from_app,
    app_view,
    build_app,
    is_digest_of,
    owned_tags,
    placement_of,
    served_by_replicas,
    served_by_reports,
    suffix_for,
)
from controller.runtimes.link import DesiredModel, ReplicaReport
from tests.containerapps_emulator import schema
from tests.controller.runtimes.containerapp.helpers import SECRET, make_desired

ENV_ID = "/subscriptions/s/resourceGroups/rg-ml/providers/Microsoft.App/managedEnvironments/e"
KEY = "server-key-of-iris"
WIRING = ServerWiring("https://controller.example.com", 10.0, tracking_uri="https://mlflow")
V2 = DesiredModel("models:/iris-classifier/2", "2")


def body_for(**changes: Any) -> tuple[dict[str, Any], str]:
    desired = make_desired(**changes)
    app = build_app(
        desired,
        placement=placement_of(desired),
        environment_id=ENV_ID,
        key=KEY,
        wiring=WIRING,
    )
    return app.body, app.suffix_digest


def test_the_app_fits_the_spec_and_secrets_travel_only_as_references() -> None:
    body, _ = body_for()
    assert schema.errors("ContainerApp", body) == []
    config = body["properties"]["configuration"]
    assert config["activeRevisionsMode"] == "Multiple"
    assert config["ingress"]["external"] is True
    assert config["ingress"]["targetPort"] == 8080
    container = body["properties"]["template"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["MODEL_URI"]["value"] == "models:/iris-classifier/1"
    assert env["ALIASFLOW_CONTROLLER_URL"]["value"] == "https://controller.example.com"
    assert env["ALIASFLOW_DEPLOYMENT"]["value"] == "iris"
    assert env["ALIASFLOW_CONTROLLER_POLL_SECONDS"]["value"] == "10"
    assert env["ALIASFLOW_ADMIN_TOKEN"] == {
        "name": "ALIASFLOW_ADMIN_TOKEN",
        "secretRef": KEY_SECRET_NAME,
    }
    assert env["MLFLOW_TRACKING_TOKEN"] == {
        "name": "MLFLOW_TRACKING_TOKEN",
        "secretRef": "env-mlflow-tracking-token",
    }
    template = json.dumps(body["properties"]["template"])
    assert SECRET not in template
    assert KEY not in template
    assert {s["name"]: s["value"] for s in config["secrets"]} == {
        KEY_SECRET_NAME: KEY,
        "env-mlflow-tracking-token": SECRET,
    }
    scale = body["properties"]["template"]["scale"]
    assert (scale["minReplicas"], scale["maxReplicas"]) == (2, 5)
    assert scale["rules"][0]["http"]["metadata"] == {"concurrentRequests": "20"}
    assert container["resources"] == {"cpu": 0.5, "memory": "1Gi"}


@pytest.mark.parametrize(
    ("change", "moves"),
    [
        ({}, False),
        ({"env": (("LOG_LEVEL", "debug"),)}, True),
        ({"image": "myreg.azurecr.io/aliasflow-server:2"}, True),
        ({"cpu": 1.0}, True),
        ({"secret": "rotated"}, True),  # a replica reads secrets at start: a new one
        ({"version": "2"}, True),  # MODEL_URI: the version a replica boots on
        ({"replicas": (1, 5)}, True),
    ],
)
def test_the_revision_moves_with_what_a_replica_would_see(
    change: dict[str, Any], moves: bool
) -> None:
    _, before = body_for()
    _, after = body_for(**change)
    assert (before != after) is moves


def test_a_spec_changed_back_gets_a_fresh_suffix_and_a_retry_keeps_its_own() -> None:
    digest = "0123456789"
    assert suffix_for(digest, [], "iris", None) == "r0123456789"
    # The latest revision already is this spec: the same (a retried rollout).
    assert suffix_for(digest, ["iris--r0123456789"], "iris", "iris--r0123456789") == ("r0123456789")
    # Taken by an older revision (spec A -> B -> A): ARM refuses a used suffix.
    taken = ["iris--r0123456789", "iris--rabcdef0123"]
    assert suffix_for(digest, taken, "iris", "iris--rabcdef0123") == "r0123456789-2"
    assert is_digest_of("iris--r0123456789-2", "iris", digest)
    assert not is_digest_of("iris--rabcdef0123", "iris", digest)


def test_registry_access_by_identity_or_by_a_password_secret() -> None:
    desired = make_desired()
    identity = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/"
        "userAssignedIdentities/pull"
    )
    by_identity = build_app(
        desired,
        placement=placement_of(desired),
        environment_id=ENV_ID,
        key=KEY,
        wiring=replace(WIRING, registry=RegistryAccess("myreg.azurecr.io", identity=identity)),
    ).body
    assert by_identity["identity"] == {
        "type": "UserAssigned",
        "userAssignedIdentities": {identity: {}},
    }
    assert by_identity["properties"]["configuration"]["registries"] == [
        {"server": "myreg.azurecr.io", "identity": identity}
    ]
    by_password = build_app(
        desired,
        placement=placement_of(desired),
        environment_id=ENV_ID,
        key=KEY,
        wiring=replace(
            WIRING,
            registry=RegistryAccess("myreg.azurecr.io", username="puller", password="pull-pw"),
        ),
    ).body
    registries = by_password["properties"]["configuration"]["registries"]
    assert registries[0]["username"] == "puller"
    assert "pull-pw" not in json.dumps(registries)
    assert schema.errors("ContainerApp", by_identity) == []
    assert schema.errors("ContainerApp", by_password) == []
    other = build_app(
        replace(desired, image="docker.io/library/aliasflow-server:1"),
        placement=placement_of(desired),
        environment_id=ENV_ID,
        key=KEY,
        wiring=replace(WIRING, registry=RegistryAccess("myreg.azurecr.io", identity=identity)),
    ).body
    assert "registries" not in other["properties"]["configuration"]


def test_secret_env_names_that_collide_once_lowercased_are_refused() -> None:
    desired = replace(make_desired(), secret_env=(("TOKEN", "a"), ("token", "b")))
    with pytest.raises(InvalidSpecError, match="lowercase"):
        build_app(
            desired,
            placement=placement_of(desired),
            environment_id=ENV_ID,
            key=KEY,
            wiring=WIRING,
        )


def replicas(*states: tuple[str, bool]) -> list[ReplicaView]:
    return [ReplicaView(name, "iris--r1", running) for name, running in states]


def report(
    name: str, version: str | None, ready: bool = True, detail: str | None = None
) -> ReplicaReport:
    return ReplicaReport(name, version, ready, 0.0, "iris--r1", detail)


@pytest.mark.parametrize(
    ("listed", "reports", "min_replicas", "version", "ready", "detail"),
    [
        # every running replica reports the desired version: serving it
        ([("a", True), ("b", True)], [report("a", "2"), report("b", "2")], 1, "2", True, ""),
        # one has not reported yet (booting, or its link is broken): unknown, not ready
        ([("a", True), ("b", True)], [report("a", "2")], 1, None, False, "1 of 2 replicas"),
        # one reports not ready
        ([("a", True)], [report("a", None, ready=False)], 1, None, False, "1 of 1 replicas"),
        # one is on another version (it restarted while the link was down): drift
        (
            [("a", True), ("b", True)],
            [report("a", "2"), report("b", "1", detail="no mlflow")],
            1,
            "1",
            True,
            "b serves 1: no mlflow",
        ),
        # a replica ARM no longer lists (scaled in) does not count, its report lingers
        ([("a", True)], [report("a", "2"), report("gone", "1")], 1, "2", True, ""),
        # a replica that is not running yet is not asked about
        ([("a", True), ("b", False)], [report("a", "2")], 1, "2", True, ""),
        # nothing runs: serving nothing...
        ([], [], 1, None, False, "no replica is running"),
        # ... unless the app scales to zero: the next replica boots on the desired version
        ([], [], 0, "2", True, "scaled to zero"),
    ],
)
def test_served_version_truth_across_replicas(
    listed: list[tuple[str, bool]],
    reports: list[ReplicaReport],
    min_replicas: int,
    version: str | None,
    ready: bool,
    detail: str,
) -> None:
    served = served_by_replicas(
        replicas(*listed), {r.replica: r for r in reports}, V2, min_replicas
    )
    assert (served.version, served.ready) == (version, ready)
    assert detail in served.detail


def test_the_full_pass_reads_reports_only_and_treats_silence_as_no_news() -> None:
    assert served_by_reports({}, V2, running=True).version is None
    assert served_by_reports({}, V2, running=True).ready
    agreed = {r.replica: r for r in (report("a", "2"), report("b", "2"))}
    assert served_by_reports(agreed, V2, running=True).version == "2"
    drift = {r.replica: r for r in (report("a", "2"), report("b", "1"))}
    assert served_by_reports(drift, V2, running=True).version == "1"


def app_json(**tags: str) -> dict[str, Any]:
    body, _ = body_for()
    body["name"] = "iris"
    body["tags"] = {
        **owned_tags(make_desired(), WIRING, KEY),
        **tags,
    }
    props = body["properties"]
    props["provisioningState"] = "Succeeded"
    props["latestRevisionName"] = props["latestReadyRevisionName"] = "iris--r1"
    props["configuration"]["ingress"]["fqdn"] = "iris.ml-prod.westeurope.azurecontainerapps.io"
    return body


def test_an_app_reads_back_as_its_tags_and_replicas_say() -> None:
    view = app_view(app_json())
    assert isinstance(view, AppView)
    assert view.model_name == "iris-classifier"
    assert view.weights() == {"iris--r1": 100}
    runtime_hash = view.tags[TAG_RUNTIME_HASH]
    actual = actual_from_app(
        view, lambda fqdn: f"https://{fqdn}", served_by_replicas([], {}, V2, 0), runtime_hash
    )
    assert actual.spec_hash == make_desired().spec_hash
    assert actual.model_version == "1"
    assert actual.running
    assert actual.ready
    assert actual.endpoint == "https://iris.ml-prod.westeurope.azurecontainerapps.io"
    # Servers given another controller URL, key or registry: a spec to roll out again.
    moved = actual_from_app(view, lambda fqdn: fqdn, served_by_replicas([], {}, V2, 0), "other")
    assert moved.spec_hash == ""
