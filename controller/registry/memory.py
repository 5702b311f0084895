"""An in-memory registry for reconciler tests: same contract as the MLflow adapter."""

from __future__ import annotations

from controller.core.errors import AliasNotFoundError, ModelNotFoundError, RegistryUnavailableError
from controller.core.ports import AliasMaps, ModelVersionInfo


class MemoryRegistry:
    def __init__(self) -> None:
        self.versions: dict[str, dict[str, ModelVersionInfo]] = {}
        self.aliases: AliasMaps = {}
        self.available = True
        self.search_calls = 0

    def add_version(self, model_name: str, version: str, run_id: str | None = None) -> None:
        info = ModelVersionInfo(model_name, version, run_id or f"run-{model_name}-{version}")
        self.versions.setdefault(model_name, {})[version] = info
        self.aliases.setdefault(model_name, {})

    def _check(self) -> None:
        if not self.available:
            raise RegistryUnavailableError("registry unavailable (test)")

    def resolve_alias(self, model_name: str, alias: str) -> ModelVersionInfo:
        self._check()
        if model_name not in self.versions:
            raise ModelNotFoundError(f"registered model {model_name!r} not found")
        version = self.aliases.get(model_name, {}).get(alias)
        if version is None:
            raise AliasNotFoundError(f"alias {alias!r} of model {model_name!r} is not set")
        return self.versions[model_name][version]

    def get_version(self, model_name: str, version: str) -> ModelVersionInfo:
        self._check()
        try:
            return self.versions[model_name][version]
        except KeyError:
            raise ModelNotFoundError(f"model {model_name!r} version {version} not found") from None

    def alias_maps(self) -> AliasMaps:
        self._check()
        self.search_calls += 1
        return {name: dict(aliases) for name, aliases in self.aliases.items()}

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        self._check()
        self.get_version(model_name, version)
        self.aliases.setdefault(model_name, {})[alias] = version
