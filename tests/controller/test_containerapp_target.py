"""The containerapp target as a user writes and enables it: manifest validation with
errors that name the field, the settings that turn it on, and what reaches the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.ports import ModelVersionInfo
from controller.manifests.loader import load_directory
from controller.reconcile.desired import build_desired
from controller.service.settings import SettingsError, load_settings
from controller.service.wiring import build_runtimes

TARGET = (
    "target:\n"
    "    kind: containerapp\n"
    "    containerapp: {{subscriptionId: s, resourceGroup: rg, environment: ml-prod, "
    "location: westeurope{extra}}}"
)


def manifest(tmp_path: Path, name: str = "iris", extra: str = "", spec: str = "") -> Path:
    (tmp_path / f"{name}.yaml").write_text(
        f"apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {{name: {name}}}\n"
        f"spec:\n  model: {{name: m, alias: champion}}\n  {TARGET.format(extra=extra)}\n{spec}"
    )
    return tmp_path


def test_a_containerapp_manifest_loads_with_defaults_for_replicas_and_scale(
    tmp_path: Path,
) -> None:
    result = load_directory(manifest(tmp_path))
    assert result.errors == []
    app = result.deployments["iris"].deployment.spec.target.containerapp
    assert app is not None
    assert (app.replicas.min, app.replicas.max, app.scale.concurrent_requests) == (1, 10, 50)
    desired = build_desired(
        result.deployments["iris"].deployment, ModelVersionInfo("m", "3", None), {}
    )
    assert dict(desired.target_settings) == {
        "subscriptionId": "s",
        "resourceGroup": "rg",
        "environment": "ml-prod",
        "location": "westeurope",
        "minReplicas": "1",
        "maxReplicas": "10",
        "concurrentRequests": "50",
    }
    assert desired.immutable_hash == ""  # a new revision can change everything it covers


@pytest.mark.parametrize(
    ("name", "extra", "spec", "expected"),
    [
        ("iris", ", replicas: {min: 4, max: 2}", "", "min (4) must not exceed max (2)"),
        ("iris", ", replicas: {min: 0, max: 1001}", "", "less than or equal to 1000"),
        ("iris", ", scale: {concurrentRequests: 0}", "", "greater than or equal to 1"),
        ("iris", ", dnsNameLabel: x", "", "unknown field"),
        ("a-very-long-deployment-name-over-32", "", "", "cannot name a container app"),
        ("iris--blue", "", "", "without '--'"),
        ("7iris", "", "", "starting with a letter"),
        ("iris", "", "  env: {ALIASFLOW_CONTROLLER_URL: x}\n", "is set by the controller"),
    ],
)
def test_what_container_apps_cannot_take_is_refused_naming_the_field(
    tmp_path: Path, name: str, extra: str, spec: str, expected: str
) -> None:
    result = load_directory(manifest(tmp_path, name, extra, spec))
    assert result.deployments == {}
    assert any(expected in str(e) for e in result.errors), [str(e) for e in result.errors]


def test_the_kind_needs_its_block_and_no_other(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {name: a}\n"
        "spec:\n  model: {name: m, alias: c}\n  target: {kind: containerapp}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {name: b}\n"
        "spec:\n  model: {name: m, alias: c}\n"
        "  target: {kind: aci, aci: {subscriptionId: s, resourceGroup: r, location: l},\n"
        "    containerapp: {subscriptionId: s, resourceGroup: r, environment: e, location: l}}\n"
    )
    errors = " | ".join(str(e) for e in load_directory(tmp_path).errors)
    assert "target.kind 'containerapp' needs a 'containerapp' block" in errors
    assert "a 'containerapp' block does not apply to target.kind 'aci'" in errors


def test_the_target_needs_an_address_the_servers_reach_the_controller_at(
    tmp_path: Path,
) -> None:
    with pytest.raises(SettingsError, match=r"ALIASFLOW_CONTAINERAPP_RESOURCE_GROUPS.*PUBLIC_URL"):
        load_settings(data_dir=tmp_path, containerapp_resource_groups="sub/rg")
    settings = load_settings(
        data_dir=tmp_path,
        containerapp_resource_groups="rg-a, sub-b/rg-b",
        aci_subscription_id="sub-a",
        public_url="https://aliasflow.example.com",
    )
    assert settings.containerapp_groups == [("sub-a", "rg-a"), ("sub-b", "rg-b")]
    assert settings.containerapp_controller == "https://aliasflow.example.com"
    # Building the runtime contacts nothing: the controller starts while Azure is away.
    runtimes = build_runtimes(settings, "controller-secret")
    assert set(runtimes) == {"local", "containerapp"}
    runtime = runtimes["containerapp"]
    assert runtime.wiring.controller_url == "https://aliasflow.example.com"  # type: ignore[attr-defined]
    own = load_settings(
        data_dir=tmp_path,
        containerapp_resource_groups="sub/rg",
        public_url="https://public.example.com",
        containerapp_controller_url="http://10.0.0.4:8000/",
    )
    assert own.containerapp_controller == "http://10.0.0.4:8000"


def test_a_canary_and_a_shadow_are_taken_on_containerapp(tmp_path: Path) -> None:
    spec = (
        "  rollout:\n"
        "    strategy: canary\n"
        "    steps: [{weight: 10, seconds: 60}, {weight: 50, seconds: 60}]\n"
        "  shadow: {alias: challenger, percent: 25}\n"
    )
    result = load_directory(manifest(tmp_path, spec=spec))
    assert result.errors == []
    desired = build_desired(
        result.deployments["iris"].deployment,
        ModelVersionInfo("m", "3", None),
        {},
        shadow_version="4",
    )
    assert desired.steps == ((10, 60), (50, 60))
    assert (desired.shadow_version, desired.shadow_percent) == ("4", 25)
