"""Other clouds: the credential asks for the scope of the cloud the controller talks to.

Settings → `build_aci_runtime` / `build_acr_resolver` → the real SDKs → the emulator, whose
AAD token endpoint records every scope it is asked for (`state.token_scopes`). The
emulator issues tokens for any scope, as one Entra ID issues them for its own cloud's
audiences; what is tested is which one we ask for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.service.azure import (
    acr_audience,
    arm_audience,
    build_aci_runtime,
    build_acr_resolver,
)
from controller.service.settings import ControllerSettings
from tests.aci_emulator import CLIENT_ID, CLIENT_SECRET, TENANT, AciEmulator
from tests.controller.runtimes.aci.conftest import SUB

CHINA = "https://management.chinacloudapi.cn"


def settings(emulator: AciEmulator, tmp_path: Path, **overrides: object) -> ControllerSettings:
    values: dict[str, object] = {
        "manifests_dir": tmp_path / "manifests",
        "data_dir": tmp_path / "data",
        "aci_resource_groups": f"{SUB}/rg-a",
        "aci_arm_url": emulator.url,
        "aci_authority_host": emulator.url,
        "aci_disable_instance_discovery": True,
        "aci_ca_bundle": emulator.ca_path,
        "acr_login_server": emulator.acr_host,
        "acr_endpoint": emulator.url,
    }
    values.update(overrides)
    return ControllerSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def service_principal(monkeypatch: pytest.MonkeyPatch) -> None:
    """What DefaultAzureCredential's EnvironmentCredential reads."""
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)


def test_another_clouds_arm_and_acr_get_that_clouds_scope(
    emulator: AciEmulator, tmp_path: Path
) -> None:
    configured = settings(emulator, tmp_path, aci_audience=CHINA)
    runtime = build_aci_runtime(configured, "admin")
    resolver = build_acr_resolver(configured)
    emulator.state.push_image("aliasflow-server", "1")
    try:
        runtime.list_owned()
        arm_scopes = set(emulator.state.token_scopes)
        resolver.resolve(f"{emulator.acr_host}/aliasflow-server:1")
    finally:
        runtime.close()
        resolver.close()
    assert arm_scopes == {f"{CHINA}/.default"}
    # ACR outside the public cloud takes that cloud's ARM audience (azure-containerregistry).
    assert set(emulator.state.token_scopes) == {f"{CHINA}/.default"}


def test_the_arm_scope_follows_the_arm_endpoint_when_no_audience_is_set(
    emulator: AciEmulator, tmp_path: Path
) -> None:
    runtime = build_aci_runtime(settings(emulator, tmp_path), "admin")
    try:
        runtime.list_owned()
    finally:
        runtime.close()
    assert set(emulator.state.token_scopes) == {f"{emulator.url}/.default"}


@pytest.mark.parametrize(
    ("overrides", "arm", "acr"),
    [
        pytest.param({}, "https://management.azure.com", "https://containerregistry.azure.net"),
        pytest.param(
            {"aci_arm_url": "https://management.usgovcloudapi.net/"},
            "https://management.usgovcloudapi.net",
            "https://management.usgovcloudapi.net",
            id="us-government",
        ),
        pytest.param(
            {"aci_arm_url": CHINA, "acr_audience": "https://containerregistry.example"},
            CHINA,
            "https://containerregistry.example",
            id="acr-audience-set",
        ),
    ],
)
def test_audiences_from_settings(overrides: dict[str, str], arm: str, acr: str) -> None:
    configured = ControllerSettings(**overrides)  # type: ignore[arg-type]
    assert (arm_audience(configured), acr_audience(configured)) == (arm, acr)
