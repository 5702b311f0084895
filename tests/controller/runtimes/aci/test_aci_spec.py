"""The container-group builder, ownership tags, health rules and image parsing: pure code."""

from __future__ import annotations

from dataclasses import replace

import pytest
from azure.mgmt.containerinstance.models import (
    Container,
    ContainerGroup,
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


def _group(provisioning: str, container_state: str | None) -> ContainerGroup:
    view = ContainerPropertiesInstanceView()
    container = Container(name="model-server", image="x", resources=None)
    if container_state is not None:
        view.__dict__["current_state"] = ContainerState()
        view.current_state.__dict__["state"] = container_state
        container.__dict__["instance_view"] = view
    group = ContainerGroup(
        containers=[container], os_type="Linux", tags={"aliasflow-managed": "true"}
    )
    group.__dict__["provisioning_state"] = provisioning
    return group


@pytest.mark.parametrize(
    ("provisioning", "container", "running", "undecided"),
    [
        ("Succeeded", None, True, False),
        ("Creating", None, True, False),
        ("Creating", "Waiting", True, False),  # pulling the image: on its way up
        # ContainerGroupsGet_Failed.json: Failed with the container Waiting is not running.
        ("Failed", "Waiting", False, False),
        ("Failed", None, False, False),
        ("Failed", "Terminated", False, False),
        ("Succeeded", "Terminated", False, False),
        ("Deleting", "Running", False, False),
    ],
)
def test_group_health(
    provisioning: str, container: str | None, running: bool, undecided: bool
) -> None:
    health = group_health(_group(provisioning, container))
    assert (health.running, health.needs_instance_view) == (running, undecided)


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
