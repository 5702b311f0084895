"""Environment settings for the training job, read when the command runs (never at import)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from training.errors import ConfigError


class TrainSettings(BaseSettings):
    """MLflow's own variable name, so CI configures MLflow and us in one place."""

    model_config = SettingsConfigDict(extra="ignore")

    mlflow_tracking_uri: str | None = None

    def require_tracking_uri(self) -> str:
        # No silent fallback to a local ./mlruns: a CI job that logs nowhere is a bug.
        if not self.mlflow_tracking_uri:
            raise ConfigError(
                "MLFLOW_TRACKING_URI is not set; point it at the MLflow server "
                "(e.g. http://127.0.0.1:5000)"
            )
        return self.mlflow_tracking_uri
