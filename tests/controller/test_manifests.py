"""Manifest loading: every error named by file, document and field; valid ones survive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.core.manifest import ModelDeployment, json_schema
from controller.manifests.loader import load_directory

DATA = Path(__file__).resolve().parent.parent / "data" / "manifests"


def test_valid_directory_loads_every_document_with_interpolation() -> None:
    result = load_directory(DATA / "valid", environ={"AZURE_SUBSCRIPTION_ID": "sub-123"})
    assert result.errors == []
    assert result.complete
    assert sorted(result.deployments) == ["iris-aci", "iris-pinned", "iris-prod"]
    aci = result.deployments["iris-aci"].deployment.spec.target.aci
    assert aci is not None
    assert (aci.subscription_id, aci.resource_group) == ("sub-123", "rg-models")
    assert result.deployments["iris-aci"].document == 2
    assert result.deployments["iris-pinned"].deployment.spec.model.version == 1
    prod = result.deployments["iris-prod"].deployment
    assert prod.spec.secret_env["MLFLOW_TRACKING_TOKEN"].from_env == "MLFLOW_TOKEN"


def test_undefined_variable_in_target_is_an_error_naming_it() -> None:
    result = load_directory(DATA / "valid", environ={})
    assert [str(e) for e in result.errors] == [
        "multi.yaml (document 2): spec.target: undefined variable(s) ${AZURE_SUBSCRIPTION_ID}"
    ]
    assert "iris-aci" not in result.deployments
    assert not result.complete


def test_invalid_directory_lists_every_error_and_keeps_the_valid_one() -> None:
    result = load_directory(DATA / "invalid", environ={})
    messages = sorted(str(e) for e in result.errors)
    assert "typo.yaml (document 1): spec.rollout.healthTimeoutSecond: unknown field" in messages
    assert any(
        m.startswith("both.yaml (document 1): metadata.name: 'Not_A_Label' is not a DNS label")
        for m in messages
    )
    assert "both.yaml (document 1): spec.model: set exactly one of 'alias' or 'version'" in (
        messages
    )
    assert any(m.startswith("broken.yaml: invalid YAML:") and "line" in m for m in messages)
    assert any(
        m.startswith("not-a-manifest.yaml (document 1): kind: not a manifest") for m in messages
    )
    assert list(result.deployments) == ["still-good"]
    assert not result.complete


def test_duplicate_names_apply_neither(tmp_path: Path) -> None:
    doc = (
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {name: same}\n"
        "spec: {model: {name: m, alias: champion}}\n"
    )
    (tmp_path / "a.yaml").write_text(doc)
    (tmp_path / "b.yml").write_text(doc)
    result = load_directory(tmp_path)
    assert result.deployments == {}
    assert [str(e) for e in result.errors] == [
        "b.yml (document 1): metadata.name: duplicate name 'same', also in a.yaml "
        "(document 1); neither is applied"
    ]


def test_two_deployments_claiming_one_dns_label(tmp_path: Path) -> None:
    template = (
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {{name: {name}}}\n"
        "spec:\n  model: {{name: m, alias: champion}}\n  target:\n    kind: aci\n"
        "    aci: {{subscriptionId: s, resourceGroup: rg, location: westeurope, "
        "dnsNameLabel: shared}}\n"
    )
    (tmp_path / "one.yaml").write_text(template.format(name="one"))
    (tmp_path / "two.yaml").write_text(template.format(name="two"))
    result = load_directory(tmp_path)
    assert result.deployments == {}
    assert len(result.errors) == 2
    assert all(
        "DNS label 'shared' in westeurope is claimed by one, two" in str(e) for e in result.errors
    )


@pytest.mark.parametrize(
    ("spec_yaml", "expected"),
    [
        ("model: {name: m}", "spec.model: set exactly one of 'alias' or 'version'"),
        ("model: {name: m, alias: latest}", "spec.model.alias: alias 'latest' is reserved"),
        ("model: {name: m, version: 0}", "spec.model.version: Input should be greater than"),
        ("model: {name: m, alias: a}\n  port: 70000", "spec.port: Input should be less than"),
        ("model: {name: m, alias: a}\n  env: {MODEL_URI: x}", "env 'MODEL_URI' is set by"),
        (
            "model: {name: m, alias: a}\n  secretEnv: {ALIASFLOW_ADMIN_TOKEN: {fromEnv: T}}",
            "env 'ALIASFLOW_ADMIN_TOKEN' is set by",
        ),
        (
            "model: {name: m, alias: a}\n  env: {ALIASFLOW_SERVER_PORT: '1'}",
            "env 'ALIASFLOW_SERVER_PORT' is set by",
        ),
        ("model: {name: m, alias: a}\n  target: {kind: aci}", "needs an 'aci' block"),
        ("model: {name: m, alias: a}\n  target: {kind: k8s}", "spec.target.kind: input should"),
        ("model: {name: m, alias: a}\n  rollout: {strategy: bluegreen}", "spec.rollout.strategy"),
        ("model: {name: m, alias: a}\n  rollout: {strategy: canary}", "canary' needs 'steps'"),
        (
            "model: {name: m, alias: a}\n  rollout: {strategy: canary, steps: "
            "[{weight: 50, seconds: 1}, {weight: 10, seconds: 1}]}",
            "weights must increase, got [50, 10]",
        ),
        (
            "model: {name: m, alias: a}\n  rollout: {steps: [{weight: 10, seconds: 1}]}",
            "'steps' only apply to strategy 'canary'",
        ),
        ("model: {name: m, alias: a}\n  shadow: {alias: latest}", "alias 'latest' is reserved"),
        (
            "model: {name: m, alias: a}\n  auth: {apiKeys: []}",
            "spec.auth.apiKeys: List should have at least 1 item",
        ),
        (
            "model: {name: m, alias: a}\n  auth: {apiKeys: [K]}",
            "spec.auth.apiKeys[0]: Input should be a valid dictionary",
        ),
        (
            "model: {name: m, alias: a}\n  auth: {apiKeys: [{fromEnv: K}, {fromEnv: K}]}",
            "spec.auth.apiKeys: the same variable is listed twice: K",
        ),
        (
            "model: {name: m, alias: a}\n  auth: {apiKeys: [{fromEnv: 'no such'}]}",
            "spec.auth.apiKeys[0].fromEnv: 'no such' is not a valid environment",
        ),
        (
            "model: {name: m, alias: a}\n  auth: {keys: [{fromEnv: K}]}",
            "spec.auth.keys: unknown field",
        ),
        (
            "model: {name: m, alias: a}\n  secretEnv: {ALIASFLOW_API_KEYS: {fromEnv: K}}",
            "env 'ALIASFLOW_API_KEYS' is set by",
        ),
    ],
)
def test_field_errors_name_the_path(tmp_path: Path, spec_yaml: str, expected: str) -> None:
    (tmp_path / "m.yaml").write_text(
        f"apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {{name: m}}\n"
        f"spec:\n  {spec_yaml}\n"
    )
    result = load_directory(tmp_path)
    assert result.deployments == {}
    assert any(expected in str(e) for e in result.errors), [str(e) for e in result.errors]


def test_empty_directory_is_complete_but_empty(tmp_path: Path) -> None:
    result = load_directory(tmp_path)
    assert result.deployments == {}
    assert result.complete


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    result = load_directory(tmp_path / "nope")
    assert not result.complete


def test_json_schema_is_serialisable_and_uses_manifest_field_names() -> None:
    schema = json_schema()
    text = json.dumps(schema)
    assert '"apiVersion"' in text
    assert '"healthTimeoutSeconds"' in text
    assert '"memoryGB"' in text


def test_exposure_is_named_and_plain_public_http_is_warned_about(tmp_path: Path) -> None:
    from aliasflow_cli.tables import format_status_table
    from controller.api.schemas import exposure

    def deployment(aci: str) -> ModelDeployment:
        (tmp_path / "d.yaml").write_text(
            "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {name: d}\n"
            "spec:\n  model: {name: m, alias: a}\n  target:\n    kind: aci\n"
            f"    aci: {{subscriptionId: s, resourceGroup: r, location: westeurope{aci}}}\n"
        )
        loaded = load_directory(tmp_path)
        assert not loaded.errors, loaded.errors
        return loaded.deployments["d"].deployment

    subnet = ", subnetId: /subscriptions/s/resourceGroups/n/providers/x/virtualNetworks/v/subnets/a"
    tls = ", tls: {certificate: {fromEnv: CERT}, key: {fromEnv: KEY}}"
    assert exposure(deployment("")) == "public-http"
    assert exposure(deployment(subnet)) == "private"
    assert exposure(deployment(tls)) == "tls"
    assert deployment(subnet).dns_name_label is None  # a private group has no DNS name
    row = {"name": "d", "sync": "Synced", "health": "Healthy", "exposure": "public-http"}
    assert "warning: plain HTTP on a public IP" in format_status_table([row])
