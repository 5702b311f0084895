"""Bake one registered MLflow model version into a directory the model server boots from.

`Dockerfile.server` runs this in a build stage when the `BAKED_MODEL_URI` build argument
is set (the original pipeline's "image with the winning model"), for sites whose
containers cannot reach MLflow. It writes the MLflow model files plus
`aliasflow-model.json` ({name, version, run_id, metrics, git_sha, model_uri, baked_at}),
which `aliasflow serve` reads when `MODEL_URI` is that directory, so `/metadata` still
reports which version it serves, and, for pipelines a kernel covers, `aliasflow-boot.npz`
(model_server/bootfile.py), from which the server answers before MLflow has loaded.

Usage: python bake_model.py models:/NAME/VERSION|models:/NAME@ALIAS OUTPUT_DIR
MLflow is found through MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_TOKEN, if it needs one).
Exit codes: 0 baked, 2 bad arguments, 3 MLflow error.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
GIT_SHA_TAGS = ("git_commit", "git_sha", "mlflow.source.git.commit")
METADATA_FILE = "aliasflow-model.json"


def bake(model_uri: str, output: Path) -> dict[str, object]:
    """Download the version and describe it; returns what was written to the JSON file."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    match = MODELS_URI.match(model_uri)
    if not match:
        raise ValueError(f"{model_uri!r}: use models:/<name>/<version> or models:/<name>@<alias>")
    client = MlflowClient()
    name = match["name"]
    if match["alias"]:
        # Resolve once, here: the image must pin a version, not follow an alias.
        found = client.get_model_version_by_alias(name, match["alias"])
    else:
        found = client.get_model_version(name, match["version"])
    version = str(found.version)
    run_id = found.run_id
    metrics: dict[str, float] = {}
    git_sha = None
    if run_id:
        run = client.get_run(run_id)
        metrics = dict(run.data.metrics)
        git_sha = next((run.data.tags[t] for t in GIT_SHA_TAGS if t in run.data.tags), None)

    output.mkdir(parents=True, exist_ok=True)
    mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version}", dst_path=str(output)
    )
    if not (output / "MLmodel").is_file():
        raise RuntimeError(f"models:/{name}/{version} downloaded without an MLmodel file")
    described: dict[str, object] = {
        "name": name,
        "version": version,
        "run_id": run_id,
        "metrics": metrics,
        "git_sha": git_sha,
        "model_uri": f"models:/{name}/{version}",
        "requested_uri": model_uri,
        "baked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (output / METADATA_FILE).write_text(json.dumps(described, indent=2) + "\n", encoding="utf-8")
    # With the image's own library versions: the server boots from it without importing
    # MLflow or scikit-learn first (model_server/bootfile.py); None when no kernel applies.
    from model_server.bootfile import write_boot_file

    boot = write_boot_file(output)
    described["boot_file"] = boot.kernel_name if boot is not None else None
    return described


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        described = bake(argv[0], Path(argv[1]))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"error: could not bake {argv[0]}: {exc}", file=sys.stderr)
        return 3
    boot = described["boot_file"] or "none (loads through MLflow)"
    print(f"baked {described['model_uri']} (run {described['run_id']}) into {argv[1]}")
    print(f"boot file: {boot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
