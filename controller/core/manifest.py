"""The `ModelDeployment` v1 manifest, as platform engineers write it in git, and the
snapshot of a manifest directory the rest of the controller reads.

Every model forbids unknown keys: a typo such as `healthTimeoutSecond` must be an error,
not a silently ignored field that leaves a deployment on a default nobody chose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controller.core.requirements import Requirement, parse_requirement
from controller.core.types import OnFailure, Strategy, TargetKind

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$")
# The runtimes set these on every workload (which model it boots, which key admits a hot
# swap, where it binds); a manifest overriding them would break that contract. This is
# the one list: validation refuses them, so no runtime has to check again.
RESERVED_ENV = frozenset(
    {
        "MODEL_URI",
        "ALIASFLOW_ADMIN_TOKEN",
        # `spec.auth.apiKeys`: set from the controller's secrets, never by hand.
        "ALIASFLOW_API_KEYS",
        "ALIASFLOW_SERVER_HOST",
        "ALIASFLOW_SERVER_PORT",
        # The server -> controller link (docs/server-contract.md).
        "ALIASFLOW_CONTROLLER_URL",
        "ALIASFLOW_DEPLOYMENT",
        "ALIASFLOW_CONTROLLER_POLL_SECONDS",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


def _dns_label(value: str) -> str:
    if not DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS label: lowercase letters, digits and '-', "
            "1-63 characters, starting and ending with a letter or digit"
        )
    return value


def _env_name(value: str) -> str:
    if not ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid environment variable name")
    return value


DnsLabel = Annotated[str, Field(min_length=1, max_length=63)]


class Metadata(_Strict):
    name: DnsLabel = Field(description="Deployment name: a DNS label, unique across manifests.")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels.")

    _check_name = field_validator("name")(_dns_label)


class ModelRef(_Strict):
    name: str = Field(min_length=1, description="Registered model name in MLflow.")
    alias: str | None = Field(default=None, description="Follow this alias (e.g. champion).")
    version: int | None = Field(default=None, ge=1, description="Or pin this version.")

    @field_validator("alias")
    @classmethod
    def _alias_not_reserved(cls, value: str | None) -> str | None:
        if value is not None and RESERVED_ALIAS.match(value):
            raise ValueError(f"alias {value!r} is reserved by MLflow (latest, v<number>)")
        return value

    @model_validator(mode="after")
    def _exactly_one_selector(self) -> ModelRef:
        if (self.alias is None) == (self.version is None):
            raise ValueError("set exactly one of 'alias' or 'version'")
        return self


class SecretRef(_Strict):
    from_env: str = Field(alias="fromEnv", description="Controller environment variable.")

    _check_name = field_validator("from_env")(_env_name)


class Auth(_Strict):
    api_keys: list[SecretRef] = Field(
        alias="apiKeys",
        min_length=1,
        max_length=16,
        description="Keys clients must send to the prediction routes (`Authorization: Bearer "
        "<key>` or `X-Api-Key`), each from a controller environment variable; probes, "
        "metadata and /metrics stay open. A change is applied without a restart.",
    )

    @field_validator("api_keys")
    @classmethod
    def _distinct(cls, refs: list[SecretRef]) -> list[SecretRef]:
        names = [ref.from_env for ref in refs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"the same variable is listed twice: {', '.join(repeated)}")
        return refs


class AciTls(_Strict):
    certificate: SecretRef = Field(
        description="PEM certificate chain, from the controller's environment."
    )
    key: SecretRef = Field(description="PEM private key, from the controller's environment.")


class AciTarget(_Strict):
    subscription_id: str = Field(
        alias="subscriptionId", min_length=1, description="Azure subscription id."
    )
    resource_group: str = Field(
        alias="resourceGroup", min_length=1, description="Resource group of the container group."
    )
    location: str = Field(min_length=1, description="Azure region, e.g. westeurope.")
    dns_name_label: str | None = Field(
        default=None, alias="dnsNameLabel", description="Defaults to metadata.name."
    )
    subnet_id: str | None = Field(
        default=None,
        alias="subnetId",
        description="Run in this virtual-network subnet (its resource id): a private IP only, "
        "reached by a controller inside the network; no public address, no DNS label.",
    )
    tls: AciTls | None = Field(
        default=None,
        description="Terminate TLS in a sidecar (Azure's 'Enable a TLS endpoint in a sidecar "
        "container'): only port 443 is exposed, the model server stays on localhost.",
    )

    @field_validator("dns_name_label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return None if value is None else _dns_label(value)

    @field_validator("subnet_id")
    @classmethod
    def _subnet(cls, value: str | None) -> str | None:
        if value is not None and "/subnets/" not in value:
            raise ValueError(
                f"{value!r} is not a subnet resource id (/subscriptions/.../virtualNetworks/"
                "<vnet>/subnets/<subnet>)"
            )
        return value

    @model_validator(mode="after")
    def _private_has_no_label(self) -> AciTarget:
        if self.subnet_id is not None and self.dns_name_label is not None:
            raise ValueError("a container group in a subnet has no DNS name label: drop one")
        return self


class DockerTarget(_Strict):
    network: str | None = Field(default=None, description="Docker network to attach.")


# Container Apps' limits: "Scale limit" table of learn.microsoft.com/azure/container-apps/
# scale-app (min 0-1000, max 1-1000); the spec (Scale, 2026-07-01) has no bounds.
MAX_REPLICAS = 1000
# An app name: lowercase letters, digits and '-', starting with a letter, ending with a
# letter or digit, no '--' (it separates app and revision names), at most 32 characters
# (ARM's answer to a longer or malformed name, ContainerAppInvalidName).
CONTAINER_APP_NAME = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,30}[a-z0-9]$")


class Replicas(_Strict):
    min: int = Field(
        default=1,
        ge=0,
        le=MAX_REPLICAS,
        description="Replicas always running; 0 lets the app scale to zero when idle.",
    )
    max: int = Field(
        default=10, ge=1, le=MAX_REPLICAS, description="Most replicas the app scales out to."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class ContainerAppScale(_Strict):
    concurrent_requests: int = Field(
        default=50,
        alias="concurrentRequests",
        ge=1,
        description="HTTP scale rule: concurrent requests per replica before another is added.",
    )


class ContainerAppTarget(_Strict):
    subscription_id: str = Field(
        alias="subscriptionId", min_length=1, description="Azure subscription id."
    )
    resource_group: str = Field(
        alias="resourceGroup", min_length=1, description="Resource group of the container app."
    )
    environment: str = Field(
        min_length=1,
        description="The Container Apps environment: its name (in the resource group) or "
        "its resource id.",
    )
    location: str = Field(min_length=1, description="Azure region of the environment.")
    replicas: Replicas = Field(default_factory=Replicas, description="Replica bounds.")
    scale: ContainerAppScale = Field(
        default_factory=ContainerAppScale, description="When to add replicas."
    )


class Target(_Strict):
    kind: TargetKind = Field(default=TargetKind.LOCAL, description="Where the model server runs.")
    aci: AciTarget | None = Field(default=None, description="Required when kind is aci.")
    docker: DockerTarget | None = Field(default=None, description="Optional for kind docker.")
    containerapp: ContainerAppTarget | None = Field(
        default=None, description="Required when kind is containerapp."
    )

    @model_validator(mode="after")
    def _settings_match_kind(self) -> Target:
        kind = self.kind.value
        blocks = {TargetKind.ACI: self.aci, TargetKind.CONTAINERAPP: self.containerapp}
        for owner, block in blocks.items():
            article = "an" if owner.value[0] in "aeiou" else "a"
            if self.kind is owner and block is None:
                raise ValueError(f"target.kind {kind!r} needs {article} {kind!r} block")
            if self.kind is not owner and block is not None:
                raise ValueError(
                    f"{article} {owner.value!r} block does not apply to target.kind {kind!r}"
                )
        if self.kind is not TargetKind.DOCKER and self.docker is not None:
            raise ValueError(f"a 'docker' block does not apply to target.kind {kind!r}")
        return self


class Resources(_Strict):
    cpu: float = Field(default=1.0, gt=0, le=4, description="CPU cores (not enforced locally).")
    memory_gb: float = Field(
        default=1.5, alias="memoryGB", gt=0, le=16, description="Memory in GB."
    )


class Analysis(_Strict):
    """How a new version is judged while it takes traffic, against the one it replaced."""

    min_requests: int = Field(
        default=50,
        alias="minRequests",
        ge=1,
        description="Requests the new version must answer before any verdict; fewer is "
        "'not enough data yet', never a pass.",
    )
    max_error_rate: float | None = Field(
        default=0.01,
        alias="maxErrorRate",
        ge=0,
        le=1,
        description="Highest share of requests the new version may fail (5xx).",
    )
    max_latency_p99_ms: float | None = Field(
        default=None,
        alias="maxLatencyP99Ms",
        gt=0,
        description="Highest p99 latency of /predict on the new version, in milliseconds.",
    )
    max_prediction_shift: float | None = Field(
        default=None,
        alias="maxPredictionShift",
        ge=0,
        le=1,
        description="Largest distance (total variation, 0-1) between the new and the "
        "previous version's distribution of predictions.",
    )
    bake_seconds: int = Field(
        default=600,
        alias="bakeSeconds",
        ge=1,
        le=86400,
        description="How long the controller keeps watching after the switch.",
    )


class CanaryStep(_Strict):
    weight: int = Field(ge=1, le=99, description="Share of requests (%) the new version gets.")
    seconds: int = Field(
        ge=1, le=86400, description="How long the step lasts (at least), judged by the analysis."
    )


class Rollout(_Strict):
    strategy: Strategy = Field(
        default=Strategy.HOTSWAP,
        description="hotswap: the running server loads the new version beside the old one; "
        "recreate: a new workload replaces the old one.",
    )
    health_timeout_seconds: int = Field(
        default=120,
        alias="healthTimeoutSeconds",
        ge=1,
        le=3600,
        description="Time for the new version to be ready and serving, or the rollout fails.",
    )
    analysis: Analysis | None = Field(
        default=None,
        description="Watch a new version after it takes traffic; roll back when it fails.",
    )
    steps: list[CanaryStep] = Field(
        default_factory=list,
        description="canary: the steps the new version's share of requests walks through "
        "before it takes all of them (weights increasing, 1-99).",
    )

    @model_validator(mode="after")
    def _steps_fit_the_strategy(self) -> Rollout:
        if self.strategy is Strategy.CANARY and not self.steps:
            raise ValueError("strategy 'canary' needs 'steps', e.g. [{weight: 10, seconds: 60}]")
        if self.strategy is not Strategy.CANARY and self.steps:
            raise ValueError(
                f"'steps' only apply to strategy 'canary', not {self.strategy.value!r}"
            )
        weights = [step.weight for step in self.steps]
        if weights != sorted(set(weights)):
            raise ValueError(f"canary step weights must increase, got {weights}")
        return self


class Promotion(_Strict):
    require: list[str] = Field(
        default_factory=list,
        description="Checked by the controller on the new version's MLflow run metrics, "
        "e.g. 'accuracy>=served' (served: the version this deployment serves) or 'f1>=0.9'.",
    )
    on_failure: OnFailure = Field(
        default=OnFailure.REVERT,
        alias="onFailure",
        description="revert: move the alias back to the served version; hold: keep the "
        "alias, do not roll the version out.",
    )

    @field_validator("require")
    @classmethod
    def _parseable(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_requirement(text)
        return value

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        return tuple(parse_requirement(text) for text in self.require)


class Shadow(_Strict):
    alias: str = Field(min_length=1, description="Mirror requests to the version of this alias.")
    percent: int = Field(default=100, ge=1, le=100, description="Share of requests mirrored (%).")

    @field_validator("alias")
    @classmethod
    def _alias_not_reserved(cls, value: str) -> str:
        if RESERVED_ALIAS.match(value):
            raise ValueError(f"alias {value!r} is reserved by MLflow (latest, v<number>)")
        return value


class SyncPolicy(_Strict):
    automated: bool = Field(
        default=True, description="Apply changes without a person asking (Sync now)."
    )
    self_heal: bool = Field(
        default=True,
        alias="selfHeal",
        description="Bring back a killed workload and swap back a server that drifted.",
    )
    prune: bool = Field(default=True, description="Let the controller delete what it owns.")


class Spec(_Strict):
    model: ModelRef = Field(description="The registered model and which version to serve.")
    target: Target = Field(default_factory=Target, description="Where it runs.")
    image: str = Field(
        default="aliasflow-server:latest",
        min_length=1,
        description="Model-server image (docker, aci); ignored by the local target.",
    )
    resources: Resources = Field(default_factory=Resources, description="CPU and memory.")
    port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        description="Port the server listens on; the local target serves on 127.0.0.1 at "
        "this port, one local deployment per port.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Plain environment.")
    secret_env: dict[str, SecretRef] = Field(
        default_factory=dict,
        alias="secretEnv",
        description="Secret environment; values come from the controller's environment.",
    )
    auth: Auth | None = Field(
        default=None, description="Require client API keys on the prediction routes."
    )
    rollout: Rollout = Field(default_factory=Rollout, description="How a change rolls out.")
    promotion: Promotion = Field(
        default_factory=Promotion, description="What a new version must prove to roll out."
    )
    shadow: Shadow | None = Field(
        default=None,
        description="Mirror a share of requests to another alias's version; its answers are "
        "never returned, only compared.",
    )
    sync_policy: SyncPolicy = Field(
        default_factory=SyncPolicy, alias="syncPolicy", description="What happens automatically."
    )

    @model_validator(mode="after")
    def _env_names(self) -> Spec:
        for name in [*self.env, *self.secret_env]:
            _env_name(name)
            if name in RESERVED_ENV:
                raise ValueError(f"env {name!r} is set by the controller and cannot be overridden")
        both = set(self.env) & set(self.secret_env)
        if both:
            raise ValueError(f"{sorted(both)} set in both env and secretEnv")
        return self


class ModelDeployment(_Strict):
    api_version: Literal["aliasflow/v1"] = Field(alias="apiVersion", description="aliasflow/v1")
    kind: Literal["ModelDeployment"] = Field(description="ModelDeployment")
    metadata: Metadata = Field(description="Name and labels.")
    spec: Spec = Field(description="What to serve, where and how.")

    @model_validator(mode="after")
    def _container_app_name(self) -> ModelDeployment:
        if self.spec.target.kind is TargetKind.CONTAINERAPP and not CONTAINER_APP_NAME.match(
            self.metadata.name
        ):
            raise ValueError(
                f"metadata.name {self.metadata.name!r} cannot name a container app: at most 32 "
                "lowercase letters, digits and '-', starting with a letter, ending with a "
                "letter or digit, without '--'"
            )
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def dns_name_label(self) -> str | None:
        aci = self.spec.target.aci
        if aci is None or aci.subnet_id is not None:
            return None  # a private group has no DNS name
        return aci.dns_name_label or self.name


def json_schema() -> dict[str, Any]:
    schema = ModelDeployment.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "aliasflow ModelDeployment v1"
    return _inline_enums(schema)


def _inline_enums(schema: dict[str, Any]) -> dict[str, Any]:
    """Enum fields as `{"enum": [...]}` in place, not `$ref`s to one-line definitions:
    editors then offer the values where the field is, as they did for literals."""
    defs = schema.get("$defs", {})
    enums = {name: node for name, node in defs.items() if "enum" in node}

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in enums:
                inlined = dict(enums[ref.rsplit("/", 1)[-1]])
                inlined.pop("title", None)
                return {**inlined, **{k: v for k, v in node.items() if k != "$ref"}}
            return {key: visit(value) for key, value in node.items()}
        if isinstance(node, list):
            return [visit(item) for item in node]
        return node

    result: dict[str, Any] = visit(schema)
    result["$defs"] = {k: v for k, v in result.get("$defs", {}).items() if k not in enums}
    return result


@dataclass(frozen=True)
class ManifestError:
    file: str
    document: int | None
    path: str
    message: str
    # The deployment the document names, when it names one: its status row shows the error.
    name: str | None = None

    def __str__(self) -> str:
        where = self.file if self.document is None else f"{self.file} (document {self.document})"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True)
class LoadedManifest:
    deployment: ModelDeployment
    file: str
    document: int


@dataclass
class ManifestSnapshot:
    """Every valid deployment of one revision of the manifests, and every error found."""

    deployments: dict[str, LoadedManifest] = field(default_factory=dict)
    errors: list[ManifestError] = field(default_factory=list)
    revision: str | None = None

    @property
    def complete(self) -> bool:
        """True only when every file parsed: the one condition under which pruning is safe."""
        return not self.errors

    def following(self, model_name: str, alias: str) -> list[str]:
        """Deployments that follow `alias` of `model_name`."""
        return sorted(
            name
            for name, loaded in self.deployments.items()
            if loaded.deployment.spec.model.name == model_name
            and loaded.deployment.spec.model.alias == alias
        )
