"""Turns a manifest plus a resolved model version into the `DesiredState` the planner reads."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import orjson

from controller.errors import InvalidSpecError
from controller.manifests.model import ModelDeployment
from controller.reconcile.types import DesiredState
from controller.registry.base import ModelVersionInfo


def resolve_secrets(deployment: ModelDeployment, environ: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, ref in sorted(deployment.spec.secret_env.items()):
        if ref.from_env in environ:
            values[name] = environ[ref.from_env]
        else:
            missing.append(f"{name} (from {ref.from_env})")
    if missing:
        raise InvalidSpecError(
            "secretEnv not available in the controller's environment: " + ", ".join(missing)
        )
    return values


def target_settings(deployment: ModelDeployment) -> dict[str, str]:
    target = deployment.spec.target
    settings: dict[str, str] = {}
    if target.aci is not None:
        settings = {
            "subscriptionId": target.aci.subscription_id,
            "resourceGroup": target.aci.resource_group,
            "location": target.aci.location,
            "dnsNameLabel": deployment.dns_name_label or deployment.name,
        }
    if target.docker is not None and target.docker.network:
        settings["network"] = target.docker.network
    return settings


def spec_hash(
    deployment: ModelDeployment, secrets: Mapping[str, str], image: str | None = None
) -> str:
    """Digest of everything that shapes the workload except the model version.

    Secret values are included (ACI never returns them, so the hash is the only way to
    notice a rotated secret), but only as part of a one-way digest.
    """
    spec = deployment.spec
    shape = {
        "kind": spec.target.kind,
        "target": target_settings(deployment),
        "image": image or spec.image,
        "port": spec.port,
        "cpu": spec.resources.cpu,
        "memoryGB": spec.resources.memory_gb,
        "env": dict(sorted(spec.env.items())),
        "secretEnv": dict(sorted(secrets.items())),
    }
    return hashlib.sha256(orjson.dumps(shape, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def build_desired(
    deployment: ModelDeployment,
    version: ModelVersionInfo,
    environ: Mapping[str, str],
    image: str | None = None,
) -> DesiredState:
    """`image` overrides the manifest's tag, e.g. with the registry digest it resolved to."""
    spec = deployment.spec
    secrets = resolve_secrets(deployment, environ)
    return DesiredState(
        name=deployment.name,
        target_kind=spec.target.kind,
        model_name=spec.model.name,
        model_version=version.version,
        run_id=version.run_id,
        image=image or spec.image,
        port=spec.port,
        cpu=spec.resources.cpu,
        memory_gb=spec.resources.memory_gb,
        env=tuple(sorted(spec.env.items())),
        strategy=spec.rollout.strategy,
        health_timeout_seconds=spec.rollout.health_timeout_seconds,
        self_heal=spec.sync_policy.self_heal,
        automated=spec.sync_policy.automated,
        alias=spec.model.alias,
        secret_env=tuple(sorted(secrets.items())),
        spec_hash=spec_hash(deployment, secrets, image),
        target_settings=tuple(sorted(target_settings(deployment).items())),
    )
