"""The container-group builder, ownership tags, health rules and image parsing: pure code."""

from __future__ import annotations

from dataclasses import replace

import pytest
from azure.mgmt.containerinstance.models import (
    Container,
    ContainerGroup,
    ContainerGroupPropertiesInstanceView,
    ContainerPropertiesInstanceView,
    ContainerState,
)

from controller.runtimes.aci.acr import split_image
from controller.runtimes.aci.spec import (
    RegistryCredential,
    actual_from_group,
    build_container_group,
    default_endpoint,
    group_health,
    is_owned,
)
from tests.controller.runtimes.aci.conftest import ADMIN, SECRET, make_desired

CREDS = (RegistryCredential("myreg.azurecr.io", "puller", "pull-pass"),)


def test_builder_pins_the_version_and_hides_secrets() -> None:
    group = build_container_group(make_desired(version="7"), ADMIN, registry_credentials=CREDS)
    (container,) = group.containers
    assert container.environment_variables is not None
    assert group.tags is not None
    assert group.image_registry_credentials is not None
    env = {v.name: v for v in container.environment_variables}
    assert env["MODEL_URI"].value == "models:/iris-classifier/7"
    assert env["MLFLOW_TRACKING_TOKEN"].secure_value == SECRET
    assert env["MLFLOW_TRACKING_TOKEN"].value is None
    assert env["ALIASFLOW_ADMIN_TOKEN"].secure_value == ADMIN
    assert group.tags["aliasflow-model-version"] == "7"
    assert group.restart_policy == "Always"
    assert group.image_registry_credentials[0].server == "myreg.azurecr.io"
    assert SECRET not in repr(CREDS)
    assert "pull-pass" not in repr(CREDS)


def test_registry_credentials_only_for_their_registry() -> None:
    other = replace(make_desired(), image="ghcr.io/acme/server:1")
    assert (
        build_container_group(other, ADMIN, registry_credentials=CREDS).image_registry_credentials
        is None
    )


@pytest.mark.parametrize(
    ("tags", "owned"),
    [
        ({"aliasflow-managed": "true"}, True),
        ({"aliasflow-managed": "false"}, False),
        ({}, False),
        (None, False),
    ],
)
def test_ownership_is_the_managed_tag(tags: dict[str, str] | None, owned: bool) -> None:
    assert is_owned(tags) is owned


def _group(
    provisioning: str, container_state: str | None, group_state: str | None = None
) -> ContainerGroup:
    container = Container(name="model-server", image="x", resources=None)  # type: ignore[arg-type]
    if container_state is not None:
        current = ContainerState()
        current.__dict__["state"] = container_state
        view = ContainerPropertiesInstanceView()
        view.__dict__["current_state"] = current
        container.__dict__["instance_view"] = view
    group = ContainerGroup(
        containers=[container], os_type="Linux", tags={"aliasflow-managed": "true"}
    )
    group.__dict__["provisioning_state"] = provisioning
    if group_state is not None:
        group_view = ContainerGroupPropertiesInstanceView()
        group_view.__dict__["state"] = group_state
        group.__dict__["instance_view"] = group_view
    return group


@pytest.mark.parametrize(
    ("provisioning", "container", "group_state", "running"),
    [
        # A listing: no instance views (ContainerGroupsListByResourceGroup.json).
        ("Succeeded", None, None, True),
        ("Creating", None, None, True),
        ("Failed", None, None, False),
        ("Unhealthy", None, None, True),  # the states doc: a repair is triggered
        ("Canceled", None, None, False),
        # A GET. Waiting: init containers, or a crash-loop back-off ACI retries.
        ("Creating", "Waiting", "Pending", True),
        ("Succeeded", "Waiting", "Running", True),
        ("Succeeded", "Terminated", "Running", False),
        ("Succeeded", None, "Stopped", False),
        # ContainerGroupsGet_Failed.json: Failed, container Waiting, group Pending.
        ("Failed", "Waiting", "Pending", False),
        ("Failed", "Terminated", "Pending", False),
        # The states doc: "A failed state does not mean that the resource is removed or
        # stops attempting to succeed. The container group state will indicate the
        # current state of the group."
        ("Failed", "Running", "Running", True),
        ("Deleting", "Running", "Running", False),
    ],
)
def test_group_health_follows_the_states_aci_documents(
    provisioning: str, container: str | None, group_state: str | None, running: bool
) -> None:
    health = group_health(_group(provisioning, container, group_state))
    assert health.running is running
    if provisioning != "Succeeded" or not running:
        assert health.detail  # whatever is not plainly running says why


def test_actual_from_tags_never_claims_a_served_version() -> None:
    group = build_container_group(make_desired(version="3"), ADMIN)
    group.__dict__["provisioning_state"] = "Succeeded"
    actual = actual_from_group(group, default_endpoint)
    assert (actual.model_version, actual.served_version, actual.running) == ("3", None, True)


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        (
            "myreg.azurecr.io/aliasflow-server:1",
            ("myreg.azurecr.io", "aliasflow-server", "1", None),
        ),
        ("myreg.azurecr.io/team/server", ("myreg.azurecr.io", "team/server", None, None)),
        ("aliasflow-server:latest", ("", "aliasflow-server", "latest", None)),
        ("localhost:5000/x:2", ("localhost:5000", "x", "2", None)),
        ("r.io/x@sha256:ab", ("r.io", "x", None, "sha256:ab")),
    ],
)
def test_split_image(image: str, parts: tuple[str, str, str | None, str | None]) -> None:
    assert split_image(image) == parts
