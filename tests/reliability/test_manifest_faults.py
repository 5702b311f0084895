"""Bad manifests beside good ones, under a running controller on the local runtime.

Invalid YAML, an unknown field, two files claiming one name, two ACI deployments
claiming one DNS label and a YAML file that is not a manifest, all at once: each is
reported in `/api/controller` naming its file and field, a valid manifest added
meanwhile still rolls out, and the deployment that was serving keeps serving the same
process. Then the directory is emptied: with `allow_empty` off, an empty set of
manifests is treated as a mistake, not as "delete everything", so nothing is pruned.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from mlflow import MlflowClient

from tests.e2e.harness import serving, start_controller
from tests.fixtures_models import IrisModels
from tests.reliability.controller_faults import (
    controller_settings,
    get_json,
    predict_version,
    serve_pids_for,
    wait_until,
    write_manifest,
)

ACI = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{name: iris, alias: champion}}
  target:
    kind: aci
    aci: {{subscriptionId: sub, resourceGroup: rg, location: westeurope, dnsNameLabel: shared}}
"""

BROKEN = {
    "broken.yaml": ("kind: [\n", "invalid YAML"),
    "unknown-field.yaml": (
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {name: iris-extra}\n"
        "spec:\n  model: {name: iris, alias: champion}\n  replicas: 3\n",
        "spec.replicas",
    ),
    "dup-1.yaml": (
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {name: iris-dup}\n"
        "spec:\n  model: {name: iris, alias: champion}\n",
        "duplicate name 'iris-dup'",
    ),
    "dup-2.yaml": (
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {name: iris-dup}\n"
        "spec:\n  model: {name: iris, alias: champion}\n",
        "duplicate name 'iris-dup'",
    ),
    "aci-1.yaml": (ACI.format(name="iris-aci-1"), "DNS label 'shared'"),
    "aci-2.yaml": (ACI.format(name="iris-aci-2"), "DNS label 'shared'"),
    "configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
        "configmap.yaml",
    ),
}


def test_bad_manifests_are_reported_and_nothing_is_pruned(
    iris_models: IrisModels, tmp_path: Path
) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    alias = f"mf{uuid.uuid4().hex[:8]}"
    MlflowClient(iris_models.tracking_uri).set_registered_model_alias(iris_models.name, alias, "1")
    write_manifest(manifests, "iris-good", iris_models.name, alias)
    data_dir = tmp_path / "data"
    running = start_controller(controller_settings(manifests, data_dir, iris_models.tracking_uri))
    try:
        endpoint = running.wait_for("iris-good", serving("1"))["endpoint"]
        (pid,) = serve_pids_for(data_dir, "iris-good")

        for file, (text, _) in BROKEN.items():
            (manifests / file).write_text(text)
        write_manifest(manifests, "iris-new", iris_models.name, alias)

        def reported() -> list[str] | None:
            errors: list[str] = get_json(f"{running.url}/api/controller")["manifest_errors"]
            # One error per file, except the duplicate pair: reported once, naming both.
            return errors if len(errors) >= len(BROKEN) - 1 else None

        errors = wait_until(reported, 15, "all manifest errors reported")
        for file, (_, expected) in BROKEN.items():
            assert any(file in e and expected in e for e in errors), (file, errors)
        assert "unknown-field.yaml" in " ".join(errors)

        # The valid manifest added beside the broken ones rolls out; the others do not.
        running.wait_for("iris-new", serving("1"), timeout=60)
        rows = get_json(f"{running.url}/api/deployments")
        names = {row["name"] for row in rows if row["sync"] != "Invalid"}
        assert names == {"iris-good", "iris-new"}, names
        # Each broken manifest is a row of its own, with its file, field and message.
        invalid = {row["name"]: row for row in rows if row["sync"] == "Invalid"}
        assert invalid["iris-extra"]["manifest_errors"][0]["field"] == "spec.replicas"
        assert invalid["broken.yaml"]["reason"] == "ManifestInvalid"
        assert predict_version(endpoint) == "1"
        assert serve_pids_for(data_dir, "iris-good") == [pid]

        # An emptied directory prunes nothing: both keep serving through several polls.
        for path in manifests.iterdir():
            path.unlink()
        wait_until(
            lambda: get_json(f"{running.url}/api/controller")["manifest_errors"] == [],
            15,
            "errors cleared once the files are gone",
        )
        running.wait_for_polls()  # a whole poll with no manifests at all
        assert predict_version(endpoint) == "1"
        assert serve_pids_for(data_dir, "iris-good") == [pid]
        assert len(serve_pids_for(data_dir, "iris-new")) == 1

        # The manifests come back: adopted as they are, no rollout, no restart.
        # One file, renamed into place: a poll must not see one of them without the other.
        staging = tmp_path / "staging"
        staging.mkdir()
        both = [
            write_manifest(staging, name, iris_models.name, alias).read_text()
            for name in ("iris-good", "iris-new")
        ]
        (staging / "all.yaml").write_text("---\n".join(both))
        (staging / "all.yaml").replace(manifests / "all.yaml")
        running.wait_for_polls()
        assert running.deployment("iris-good")["endpoint"] == endpoint
        assert serve_pids_for(data_dir, "iris-good") == [pid]
        for name in ("iris-good", "iris-new"):
            actions = [h["action"] for h in running.history(name)]
            assert actions == ["create"], (name, actions)  # no delete, no recreate
    finally:
        running.stop()
        from aliasflow_cli.stack import stop_model_servers_in

        stop_model_servers_in(data_dir)
