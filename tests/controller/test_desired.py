"""The two hashes a desired state carries: which changes update in place, which replace."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.errors import InvalidSpecError
from controller.core.manifest import LoadedManifest, ModelDeployment
from controller.core.ports import ModelVersionInfo
from controller.core.serverkeys import api_keys_fingerprint
from controller.reconcile.desired import DesiredResolver, build_desired, immutable_hash, spec_hash
from controller.registry.memory import MemoryRegistry


def deployment(kind: str = "aci", location: str = "westeurope", **spec: Any) -> ModelDeployment:
    target: dict[str, Any] = {"kind": kind}
    if kind == "aci":
        target["aci"] = {"subscriptionId": "sub", "resourceGroup": "rg", "location": location}
    body = {
        "apiVersion": "aliasflow/v1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {"model": {"name": "iris", "alias": "champion"}, "target": target, **spec},
    }
    return ModelDeployment.model_validate(body)


BASE = deployment(resources={"cpu": 1.0, "memoryGB": 1.5})


@pytest.mark.parametrize(
    ("changed", "replaces"),
    [
        pytest.param(deployment(resources={"cpu": 2.0, "memoryGB": 1.5}), True, id="cpu"),
        pytest.param(deployment(resources={"cpu": 1.0, "memoryGB": 3.0}), True, id="memory"),
        pytest.param(
            deployment(resources={"cpu": 1.0, "memoryGB": 1.5}, env={"LOG_LEVEL": "debug"}),
            False,
            id="env",
        ),
        pytest.param(
            deployment(resources={"cpu": 1.0, "memoryGB": 1.5}, image="other:2"), False, id="image"
        ),
    ],
)
def test_every_change_moves_the_spec_hash_only_immutable_ones_the_other(
    changed: ModelDeployment, replaces: bool
) -> None:
    assert spec_hash(changed, {}) != spec_hash(BASE, {})
    assert (immutable_hash(changed) != immutable_hash(BASE)) is replaces


def test_a_new_location_is_a_replace_but_its_spelling_is_not() -> None:
    resources = {"cpu": 1.0, "memoryGB": 1.5}
    moved = deployment(location="northeurope", resources=resources)
    spelled = deployment(location="West Europe", resources=resources)
    assert immutable_hash(moved) != immutable_hash(BASE)
    assert immutable_hash(spelled) == immutable_hash(BASE)


@pytest.mark.parametrize("kind", ["local", "docker"])
def test_targets_that_update_everything_in_place_have_no_immutable_hash(kind: str) -> None:
    assert immutable_hash(deployment(kind)) == ""


@pytest.mark.parametrize(("kind", "pinned"), [("docker", True), ("aci", True), ("local", False)])
def test_the_registry_resolver_pins_every_image_that_runs_in_a_container(
    kind: str, pinned: bool
) -> None:
    """The ACR resolver (wiring.build_image_resolver) turns tags into digests for docker
    deployments too; the engine pulls `repo@sha256:…` (test_docker_runtime)."""
    resolver = DesiredResolver(
        MemoryRegistry(), {kind}, {}, resolve_image=lambda image: f"{image}@sha256:{'ab' * 32}"
    )
    loaded = LoadedManifest(deployment(kind, image="myreg.azurecr.io/server:1"), "m.yaml", 0)
    desired = resolver.build(loaded, ModelVersionInfo("iris", "1", None))
    assert desired.image.endswith("@sha256:" + "ab" * 32) is pinned


VERSION = ModelVersionInfo(model_name="iris", version="3", run_id="r3")
KEYED = {"auth": {"apiKeys": [{"fromEnv": "KEY_A"}, {"fromEnv": "KEY_B"}]}}


def test_api_keys_are_secret_values_outside_the_spec_hash() -> None:
    """A key change is a reload (`Operation.KEYS`), not a recreate: the hash stays."""
    keyed = deployment(kind="local", **KEYED)
    first = build_desired(keyed, VERSION, {"KEY_A": "alpha-key", "KEY_B": "beta-key"})
    rotated = build_desired(keyed, VERSION, {"KEY_A": "gamma-key", "KEY_B": "beta-key"})
    plain = build_desired(deployment(kind="local"), VERSION, {})
    assert first.api_keys == ("alpha-key", "beta-key")
    assert first.spec_hash == rotated.spec_hash == plain.spec_hash
    assert first.api_keys_fingerprint == api_keys_fingerprint(["beta-key", "alpha-key"])
    assert first.api_keys_fingerprint != rotated.api_keys_fingerprint
    assert plain.api_keys_fingerprint == ""
    assert "alpha-key" in first.secret_values
    assert "alpha-key" not in repr(first)


def test_on_container_apps_a_key_change_is_a_new_revision() -> None:
    app = {
        "subscriptionId": "sub",
        "resourceGroup": "rg",
        "environment": "env",
        "location": "westeurope",
    }
    keyed = ModelDeployment.model_validate(
        {
            "apiVersion": "aliasflow/v1",
            "kind": "ModelDeployment",
            "metadata": {"name": "iris"},
            "spec": {
                "model": {"name": "iris", "alias": "champion"},
                "target": {"kind": "containerapp", "containerapp": app},
                **KEYED,
            },
        }
    )
    first = build_desired(keyed, VERSION, {"KEY_A": "alpha-key", "KEY_B": "beta-key"})
    rotated = build_desired(keyed, VERSION, {"KEY_A": "gamma-key", "KEY_B": "beta-key"})
    assert first.spec_hash != rotated.spec_hash


@pytest.mark.parametrize(
    ("environ", "detail"),
    [
        (
            {"KEY_A": "alpha-key"},
            "auth.apiKeys not available in the controller's environment: KEY_B",
        ),
        ({"KEY_A": "a,b", "KEY_B": "b"}, "the value of KEY_A is empty or contains whitespace"),
        ({"KEY_A": "a", "KEY_B": ""}, "the value of KEY_B is empty"),
    ],
)
def test_api_keys_that_cannot_be_used_are_a_clear_spec_error(
    environ: dict[str, str], detail: str
) -> None:
    with pytest.raises(InvalidSpecError, match=detail):
        build_desired(deployment(kind="local", **KEYED), VERSION, environ)
