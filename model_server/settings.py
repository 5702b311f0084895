"""Model-server settings, read once from the environment by `aliasflow serve`.

The server is a generic container image: everything that differs between deployments
(which model, which MLflow, the admin token, limits) arrives as environment variables,
so a bad value must fail at boot with a message that names the variable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    """What one model-server process needs to know; built in `run_serve`, never at import."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    model_uri: str = Field(validation_alias=AliasChoices("MODEL_URI", "model_uri"), min_length=1)
    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "tracking_uri")
    )
    admin_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ALIASFLOW_ADMIN_TOKEN", "admin_token")
    )
    # Client keys for the prediction routes, comma-separated (model_server/apikeys.py).
    api_keys: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ALIASFLOW_API_KEYS", "api_keys")
    )
    # Only needed to label a model whose URI does not name it (runs:/..., a bare directory).
    model_name: str | None = Field(
        default=None, validation_alias=AliasChoices("ALIASFLOW_MODEL_NAME", "model_name")
    )
    model_version: str | None = Field(
        default=None, validation_alias=AliasChoices("ALIASFLOW_MODEL_VERSION", "model_version")
    )
    max_batch_rows: int = Field(
        default=10_000,
        gt=0,
        validation_alias=AliasChoices("ALIASFLOW_MAX_BATCH_ROWS", "max_batch_rows"),
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        validation_alias=AliasChoices("ALIASFLOW_MAX_BODY_BYTES", "max_body_bytes"),
    )
    # Micro-batching: how long the batcher may hold a request to gather company (0 = only
    # batch what is already queued, which adds no latency when idle), and the row cap.
    batch_max_wait_ms: float = Field(
        default=0.0,
        ge=0.0,
        le=50.0,
        validation_alias=AliasChoices("ALIASFLOW_BATCH_MAX_WAIT_MS", "batch_max_wait_ms"),
    )
    batch_max_rows: int = Field(
        default=256,
        gt=0,
        validation_alias=AliasChoices("ALIASFLOW_BATCH_MAX_ROWS", "batch_max_rows"),
    )
    # Requests waiting to be mirrored to the shadow version; past this, mirrors are dropped
    # (and counted) so that a slow shadow never holds memory or the primary's clients.
    shadow_queue_size: int = Field(
        default=64,
        gt=0,
        le=100_000,
        validation_alias=AliasChoices("ALIASFLOW_SHADOW_QUEUE_SIZE", "shadow_queue_size"),
    )
    # The inference POSTs skip FastAPI's routing (fastlane.py); off only to compare.
    fast_lane: bool = Field(
        default=True, validation_alias=AliasChoices("ALIASFLOW_FAST_LANE", "fast_lane")
    )
    log_format: Literal["plain", "json"] = Field(
        default="plain", validation_alias=AliasChoices("ALIASFLOW_LOG_FORMAT", "log_format")
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", validation_alias=AliasChoices("LOG_LEVEL", "log_level")
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_keys")
    @classmethod
    def _usable_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        for position, key in enumerate(value.get_secret_value().split(",")):
            if key.strip() and any(c.isspace() for c in key.strip()):
                # The message must not echo the key itself.
                raise ValueError(f"key {position} contains whitespace")
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        # An empty ALIASFLOW_ADMIN_TOKEN must disable the endpoint, not accept "Bearer ".
        if isinstance(value, str) and not value.strip():
            return None
        return value
