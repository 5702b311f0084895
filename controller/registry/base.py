"""The seam between the controller and the model registry (MLflow in production)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ModelVersionInfo:
    model_name: str
    version: str
    run_id: str | None
    status: str = "READY"


# model name -> alias -> version
AliasMaps = dict[str, dict[str, str]]


class Registry(Protocol):
    def resolve_alias(self, model_name: str, alias: str) -> ModelVersionInfo:
        """Raises AliasNotFoundError, ModelNotFoundError or RegistryUnavailableError."""
        ...

    def get_version(self, model_name: str, version: str) -> ModelVersionInfo:
        """Raises ModelNotFoundError or RegistryUnavailableError."""
        ...

    def alias_maps(self) -> AliasMaps:
        """Every registered model's aliases, one search call per page of 1000 models."""
        ...

    def set_alias(self, model_name: str, alias: str, version: str) -> None: ...
