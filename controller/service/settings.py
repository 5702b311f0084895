"""Controller settings: environment (`ALIASFLOW_*`) first, flags of `aliasflow controller` on top.

Built by a factory, never at import. A bad value stops start-up with a message that
names the setting (see `load_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A setting has a bad value; the message names it."""


class ControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ALIASFLOW_", extra="ignore", populate_by_name=True
    )

    manifests_dir: Path = Field(
        Path("manifests"), description="Directory of ModelDeployment manifests."
    )
    host: str = Field("127.0.0.1", description="Address the controller's HTTP server binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the controller's HTTP server.")
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "ALIASFLOW_MLFLOW_TRACKING_URI"),
        description="MLflow tracking server (read from MLFLOW_TRACKING_URI).",
    )
    mlflow_ui_url: str | None = Field(None, description="Base URL for links to the MLflow UI.")
    data_dir: Path = Field(
        Path(".aliasflow"), description="State of the local runtime, sqlite history."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the history store; sqlite in the data dir if unset."
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Secret MLflow signs webhook deliveries with; webhooks are refused without it.",
    )
    public_url: str | None = Field(
        None, description="Address MLflow should call the controller at."
    )
    register_webhook: bool = Field(False, description="Create/update the MLflow webhook on start.")
    poll_interval_seconds: float = Field(
        30.0, gt=0, le=3600, description="How often to poll MLflow's aliases (the safety net)."
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token for state-changing endpoints; unset disables them."
    )
    server_admin_token: SecretStr | None = Field(
        None,
        description=(
            "Secret every deployment's server admin key derives from (one key per "
            "deployment, signing /admin/* requests); generated in the data dir if unset."
        ),
    )
    git_url: str | None = Field(
        None, description="Git remote holding the manifests; pulled on an interval."
    )
    git_branch: str = Field("main", description="Branch of the git remote to follow.")
    git_interval_seconds: float = Field(60.0, gt=0, le=86400, description="Git pull interval.")
    git_webhook_secret: SecretStr | None = Field(
        None, description="Secret for GitHub push webhooks."
    )
    analysis_interval_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often promotions being watched (rollout.analysis) are judged.",
    )
    notify_webhook_url: str | None = Field(
        None, description="Send promotion and health events as signed JSON to this URL."
    )
    notify_webhook_secret: SecretStr | None = Field(
        None, description="Signs the generic notification webhook (X-Aliasflow-Signature)."
    )
    notify_teams_url: SecretStr | None = Field(
        None, description="Microsoft Teams Workflows webhook URL (an Adaptive Card per event)."
    )
    notify_slack_url: SecretStr | None = Field(None, description="Slack incoming-webhook URL.")
    dashboard_auth: bool = Field(
        False, description="Require the API token for the dashboard and read-only API too."
    )
    allow_empty: bool = Field(
        False, description="Allow pruning everything when no manifests exist."
    )
    prune: bool = Field(True, description="Delete owned workloads that have no manifest any more.")
    webhook_max_bytes: int = Field(1_000_000, ge=1024, description="Largest webhook body accepted.")
    webhook_max_age_seconds: int = Field(
        300, ge=1, description="Oldest webhook timestamp accepted."
    )
    log_format: Literal["json", "human"] = Field("human", description="Log line format.")
    workers: int = Field(4, ge=1, le=64, description="Reconciles that may run at once.")
    aci_tls_image: str = Field(
        "nginx:1.27-alpine",
        description="Image of the TLS sidecar for target.aci.tls (nginx, as Azure's guide).",
    )
    aci_resource_groups: str = Field(
        "",
        description="Comma-separated resource groups the aci target manages, each "
        "`resourceGroup` or `subscriptionId/resourceGroup`; empty disables the aci target.",
    )
    aci_subscription_id: str | None = Field(
        None,
        validation_alias=AliasChoices("ALIASFLOW_ACI_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID"),
        description="Subscription of resource groups listed without one "
        "(read from AZURE_SUBSCRIPTION_ID too).",
    )
    aci_arm_url: str = Field(
        "https://management.azure.com",
        description="Azure Resource Manager endpoint (another cloud, or the test emulator).",
    )
    aci_audience: str | None = Field(
        None,
        description="Token audience for ARM (`<audience>/.default` is the scope asked for); "
        "unset uses ALIASFLOW_ACI_ARM_URL, which is the audience in every Azure cloud.",
    )
    aci_authority_host: str | None = Field(
        None,
        description="Microsoft Entra authority for the Azure credential; unset uses "
        "AZURE_AUTHORITY_HOST or the public cloud.",
    )
    aci_disable_instance_discovery: bool = Field(
        False, description="Skip Entra instance discovery (an authority it does not know)."
    )
    aci_ca_bundle: Path | None = Field(
        None, description="CA bundle for TLS to ARM, Entra and ACR; unset uses the system's."
    )
    aci_polling_interval_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Long-running operation poll interval when ARM sends no Retry-After.",
    )
    aci_retry_total: int = Field(
        10, ge=0, le=30, description="Retries of ARM 408/429/5xx answers (Retry-After honoured)."
    )
    aci_quota_limit: int = Field(
        100, ge=1, description="Container group creates plus deletes allowed per quota window."
    )
    aci_quota_window_seconds: float = Field(
        300.0, gt=0, description="ACI's create/delete quota window."
    )
    containerapp_controller_url: str | None = Field(
        None,
        description="Address the containerapp target's model servers reach the controller at "
        "(they ask it which version to serve); unset uses ALIASFLOW_PUBLIC_URL.",
    )
    containerapp_link_poll_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="How often containerapp model servers ask the controller which version "
        "to serve (a hot swap reaches every replica within it); their reports are kept for "
        "three of these.",
    )
    containerapp_drain_seconds: float = Field(
        10.0,
        ge=0,
        le=600,
        description="Pause between shifting all traffic to a new revision and deactivating "
        "the old ones, for requests in flight.",
    )
    containerapp_registry_identity: str | None = Field(
        None,
        description="Managed identity the container apps pull from ALIASFLOW_ACR_LOGIN_SERVER "
        "with: a user-assigned identity's resource id, or `system`; unset uses "
        "ALIASFLOW_ACR_USERNAME / ALIASFLOW_ACR_PASSWORD when set.",
    )
    containerapp_resource_groups: str = Field(
        "",
        description="Comma-separated resource groups the containerapp target manages, each "
        "`resourceGroup` or `subscriptionId/resourceGroup`; empty disables the target. ARM "
        "access (URL, authority, CA, retries) uses the ALIASFLOW_ACI_* settings.",
    )
    acr_login_server: str | None = Field(
        None,
        description="Registry whose image tags are resolved to digests, e.g. myreg.azurecr.io.",
    )
    acr_endpoint: str | None = Field(
        None, description="ACR API URL if not https://<login server> (tests)."
    )
    acr_audience: str | None = Field(
        None,
        description="Token audience for ACR; unset uses https://containerregistry.azure.net "
        "in the public cloud and the ARM audience in any other.",
    )
    acr_username: str | None = Field(
        None, description="Pull user ACI uses for images on the ACR login server."
    )
    acr_password: SecretStr | None = Field(
        None, description="Pull password ACI uses for images on the ACR login server."
    )
    docker_enabled: bool = Field(
        False, description="Enable target.kind docker (containers on a Docker engine)."
    )
    docker_host: str | None = Field(
        None,
        description="Docker engine address, e.g. unix:///var/run/docker.sock; "
        "DOCKER_HOST and the default socket if unset.",
    )
    docker_tracking_uri: str | None = Field(
        None,
        description="MLflow as docker containers reach it, e.g. http://host.docker.internal:5000; "
        "the controller's tracking URI if unset.",
    )

    @field_validator(
        "mlflow_tracking_uri",
        "public_url",
        "mlflow_ui_url",
        "docker_tracking_uri",
        "containerapp_controller_url",
    )
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "file:", "sqlite:")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else value

    @field_validator("containerapp_resource_groups")
    @classmethod
    def _servers_reach_the_controller(cls, value: str, info: ValidationInfo) -> str:
        if value.strip() and not (
            info.data.get("containerapp_controller_url") or info.data.get("public_url")
        ):
            raise ValueError(
                "the containerapp target needs ALIASFLOW_PUBLIC_URL (or "
                "ALIASFLOW_CONTAINERAPP_CONTROLLER_URL): its model servers ask the controller "
                "which version to serve, at an address they can reach"
            )
        return value

    @property
    def aci_groups(self) -> list[tuple[str, str]]:
        """(subscription id, resource group) pairs from `aci_resource_groups`."""
        return self._groups(self.aci_resource_groups, "ALIASFLOW_ACI_RESOURCE_GROUPS")

    @property
    def containerapp_groups(self) -> list[tuple[str, str]]:
        """(subscription id, resource group) pairs from `containerapp_resource_groups`."""
        return self._groups(
            self.containerapp_resource_groups, "ALIASFLOW_CONTAINERAPP_RESOURCE_GROUPS"
        )

    @property
    def containerapp_controller(self) -> str:
        """Where containerapp model servers reach the controller."""
        return self.containerapp_controller_url or self.public_url or ""

    def _groups(self, raw: str, setting: str) -> list[tuple[str, str]]:
        groups: list[tuple[str, str]] = []
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            subscription, _, group = item.rpartition("/")
            subscription = subscription or self.aci_subscription_id or ""
            if not subscription:
                raise SettingsError(
                    f"{setting}: {item!r} names no subscription and "
                    "ALIASFLOW_ACI_SUBSCRIPTION_ID (or AZURE_SUBSCRIPTION_ID) is not set"
                )
            groups.append((subscription, group))
        return groups

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'aliasflow.db'}"


def load_settings(**overrides: Any) -> ControllerSettings:
    """Build settings from env plus CLI flags; turn validation errors into one clear message."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return ControllerSettings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "settings"
            env = (
                f"ALIASFLOW_{field.upper()}"
                if field != "mlflow_tracking_uri"
                else "MLFLOW_TRACKING_URI"
            )
            problems.append(f"{env}: {error['msg'].removeprefix('Value error, ')}")
        raise SettingsError("invalid setting(s): " + "; ".join(problems)) from None
