"""Turns a manifest plus a resolved model version into the `DesiredState` the planner reads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping

import orjson

from controller.core.errors import AliasNotFoundError, InvalidSpecError, ModelNotFoundError
from controller.core.manifest import LoadedManifest, ModelDeployment
from controller.core.ports import AliasMaps, ModelVersionInfo, Registry
from controller.core.serverkeys import api_keys_fingerprint
from controller.core.types import DesiredState, TargetKind


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


def resolve_api_keys(deployment: ModelDeployment, environ: Mapping[str, str]) -> tuple[str, ...]:
    """`spec.auth.apiKeys` from the controller's environment, in manifest order."""
    auth = deployment.spec.auth
    if auth is None:
        return ()
    missing = [ref.from_env for ref in auth.api_keys if ref.from_env not in environ]
    if missing:
        raise InvalidSpecError(
            "auth.apiKeys not available in the controller's environment: " + ", ".join(missing)
        )
    unusable = [
        ref.from_env
        for ref in auth.api_keys
        if not environ[ref.from_env] or any(c.isspace() or c == "," for c in environ[ref.from_env])
    ]
    if unusable:
        raise InvalidSpecError(
            "auth.apiKeys: the value of " + ", ".join(unusable) + " is empty or contains "
            "whitespace or a comma, which a key cannot"
        )
    return tuple(environ[ref.from_env] for ref in auth.api_keys)


def target_settings(deployment: ModelDeployment) -> dict[str, str]:
    target = deployment.spec.target
    settings: dict[str, str] = {}
    if target.aci is not None:
        settings = {
            "subscriptionId": target.aci.subscription_id,
            "resourceGroup": target.aci.resource_group,
            "location": target.aci.location,
        }
        # Only when set, so that existing deployments keep their spec hash.
        if target.aci.subnet_id is not None:
            settings["subnetId"] = target.aci.subnet_id
        else:
            settings["dnsNameLabel"] = deployment.dns_name_label or deployment.name
        if target.aci.tls is not None:
            settings["tls"] = "sidecar"
    if target.docker is not None and target.docker.network:
        settings["network"] = target.docker.network
    app = target.containerapp
    if app is not None:
        settings = {
            "subscriptionId": app.subscription_id,
            "resourceGroup": app.resource_group,
            "environment": app.environment,
            "location": app.location,
            "minReplicas": str(app.replicas.min),
            "maxReplicas": str(app.replicas.max),
            "concurrentRequests": str(app.scale.concurrent_requests),
        }
    return settings


def resolve_tls(deployment: ModelDeployment, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The TLS sidecar's certificate and key, from the controller's environment."""
    aci = deployment.spec.target.aci
    if aci is None or aci.tls is None:
        return None
    missing = [
        ref.from_env for ref in (aci.tls.certificate, aci.tls.key) if ref.from_env not in environ
    ]
    if missing:
        raise InvalidSpecError(
            "target.aci.tls: not available in the controller's environment: " + ", ".join(missing)
        )
    return environ[aci.tls.certificate.from_env], environ[aci.tls.key.from_env]


def spec_hash(
    deployment: ModelDeployment, secrets: Mapping[str, str], image: str | None = None
) -> str:
    """Digest of everything that shapes the workload except the model version.

    Secret values are included (ACI never returns them, so the hash is the only way to
    notice a rotated secret), but only as part of a one-way digest.
    """
    spec = deployment.spec
    shape = {
        "kind": spec.target.kind.value,
        "target": target_settings(deployment),
        "image": image or spec.image,
        "port": spec.port,
        "cpu": spec.resources.cpu,
        "memoryGB": spec.resources.memory_gb,
        "env": dict(sorted(spec.env.items())),
        "secretEnv": dict(sorted(secrets.items())),
    }
    return _digest(shape)


def immutable_hash(deployment: ModelDeployment) -> str:
    """Digest of what the target cannot change on an existing workload; "" when it can.

    ACI refuses a PUT that changes OS type, CPU, memory, GPU, restart policy or network
    profile (`InvalidContainerGroupUpdate`; "Update containers in Azure Container
    Instances", learn.microsoft.com/azure/container-instances/container-instances-update,
    "Properties that require container delete") or zones, and ARM refuses a new location
    for an existing resource (`InvalidResourceLocation`, "Troubleshoot common Azure
    deployment errors"). Of those the manifest sets CPU, memory and location; the runtime
    fixes the rest (Linux, restart policy Always, no subnet, no zone, no GPU). A manifest
    field that reaches any of them belongs here too.
    """
    spec = deployment.spec
    if spec.target.aci is None:
        return ""
    shape = {
        "cpu": spec.resources.cpu,
        "memoryGB": spec.resources.memory_gb,
        # ARM takes "West Europe" and "westeurope" for one region.
        "location": spec.target.aci.location.replace(" ", "").lower(),
    }
    if spec.target.aci.subnet_id is not None:
        # The network profile (only when set, so that existing hashes stay what they were).
        shape["subnet"] = spec.target.aci.subnet_id
    return _digest(shape)


def _digest(shape: Mapping[str, object]) -> str:
    return hashlib.sha256(orjson.dumps(shape, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def build_desired(
    deployment: ModelDeployment,
    version: ModelVersionInfo,
    environ: Mapping[str, str],
    image: str | None = None,
    shadow_version: str | None = None,
) -> DesiredState:
    """`image` overrides the manifest's tag, e.g. with the registry digest it resolved to;
    `shadow_version` is what the manifest's shadow alias points at (None: no shadow)."""
    spec = deployment.spec
    secrets = resolve_secrets(deployment, environ)
    tls = resolve_tls(deployment, environ)
    api_keys = resolve_api_keys(deployment, environ)
    # The TLS material shapes the workload too; hashed with the secrets (only when set).
    hashed = secrets if tls is None else {**secrets, "tls.certificate": tls[0], "tls.key": tls[1]}
    if api_keys and spec.target.kind is TargetKind.CONTAINERAPP:
        # Replicas behind an ingress cannot each be told: a key change is a new revision.
        # Elsewhere the keys stay out of the hash: a change is a reload, not a recreate.
        hashed = {**hashed, "auth.apiKeys": ",".join(api_keys)}
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
        prune=spec.sync_policy.prune,
        alias=spec.model.alias,
        secret_env=tuple(sorted(secrets.items())),
        spec_hash=spec_hash(deployment, hashed, image),
        target_settings=tuple(sorted(target_settings(deployment).items())),
        quarantined=version.quarantined,
        keep_previous=spec.rollout.analysis is not None,
        immutable_hash=immutable_hash(deployment),
        steps=tuple((step.weight, step.seconds) for step in spec.rollout.steps),
        shadow_version=shadow_version if spec.shadow is not None else None,
        shadow_percent=spec.shadow.percent if spec.shadow is not None and shadow_version else 0,
        tls=tls,
        api_keys=api_keys,
        api_keys_fingerprint=api_keys_fingerprint(api_keys),
    )


class DesiredResolver:
    """From a loaded manifest to its `DesiredState`: the alias resolved (or the pinned
    version checked) in the registry, secrets from the environment, the image's digest."""

    def __init__(
        self,
        registry: Registry,
        enabled_kinds: Collection[str],
        environ: Mapping[str, str],
        resolve_image: Callable[[str], str] | None = None,
    ) -> None:
        self.registry = registry
        self.enabled_kinds = enabled_kinds
        self.environ = environ
        self.resolve_image = resolve_image

    def resolve(self, loaded: LoadedManifest) -> DesiredState:
        """Asks the registry: raises AliasNotFoundError, ModelNotFoundError, ..."""
        model = loaded.deployment.spec.model
        if model.alias is not None:
            version = self.registry.resolve_alias(model.name, model.alias)
        else:
            version = self.registry.get_version(model.name, str(model.version))
        return self.build(loaded, version, self.shadow_of(loaded))

    def from_maps(self, loaded: LoadedManifest, alias_maps: AliasMaps) -> DesiredState:
        """From one search's alias maps, without a registry call per deployment.

        Raises the error the per-deployment pipeline would raise for a missing model or
        alias, so both paths tell the same story.
        """
        model = loaded.deployment.spec.model
        aliases = alias_maps.get(model.name)
        if aliases is None:
            raise ModelNotFoundError(f"registered model {model.name!r} not found")
        if model.alias is None:
            return self.build(loaded, ModelVersionInfo(model.name, str(model.version), None))
        version = aliases.get(model.alias)
        if version is None:
            raise AliasNotFoundError(f"alias {model.alias!r} of model {model.name!r} is not set")
        shadow = loaded.deployment.spec.shadow
        shadow_version = aliases.get(shadow.alias) if shadow is not None else None
        return self.build(loaded, ModelVersionInfo(model.name, version, None), shadow_version)

    def shadow_of(self, loaded: LoadedManifest) -> str | None:
        """The shadow alias's version; an unset shadow alias mirrors nothing (not an error:
        the challenger may not exist yet)."""
        shadow = loaded.deployment.spec.shadow
        if shadow is None:
            return None
        try:
            return self.registry.resolve_alias(
                loaded.deployment.spec.model.name, shadow.alias
            ).version
        except AliasNotFoundError:
            return None

    def build(
        self,
        loaded: LoadedManifest,
        version: ModelVersionInfo,
        shadow_version: str | None = None,
    ) -> DesiredState:
        deployment = loaded.deployment
        if deployment.spec.target.kind.value not in self.enabled_kinds:
            raise InvalidSpecError(
                f"target.kind {deployment.spec.target.kind.value!r} is not enabled on this "
                f"controller (enabled: {', '.join(sorted(self.enabled_kinds))})"
            )
        image = None
        if self.resolve_image is not None and deployment.spec.target.kind is not TargetKind.LOCAL:
            image = self.resolve_image(deployment.spec.image)
        return build_desired(deployment, version, self.environ, image, shadow_version)
