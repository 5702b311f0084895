"""An in-memory registry for reconciler tests: same contract as the MLflow adapter."""

from __future__ import annotations

from dataclasses import replace

from controller.core.errors import AliasNotFoundError, ModelNotFoundError, RegistryUnavailableError
from controller.core.ports import AliasMaps, ModelVersionInfo


class MemoryRegistry:
    def __init__(self) -> None:
        self.versions: dict[str, dict[str, ModelVersionInfo]] = {}
        self.aliases: AliasMaps = {}
        self.available = True
        self.search_calls = 0
        #: run id -> metric -> value
        self.metrics: dict[str, dict[str, float]] = {}

    def add_version(
        self,
        model_name: str,
        version: str,
        run_id: str | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        info = ModelVersionInfo(model_name, version, run_id or f"run-{model_name}-{version}")
        self.versions.setdefault(model_name, {})[version] = info
        self.aliases.setdefault(model_name, {})
        self.metrics[str(info.run_id)] = dict(metrics or {})

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

    def run_metrics(self, run_id: str) -> dict[str, float]:
        self._check()
        return dict(self.metrics.get(run_id, {}))

    def set_version_tag(self, model_name: str, version: str, key: str, value: str) -> None:
        self._check()
        info = self.get_version(model_name, version)
        tags = {**info.tags, key: value}
        self.versions[model_name][version] = replace(info, tags=tags)

    def quarantined_versions(self, model_name: str) -> dict[str, str]:
        self._check()
        found = self.versions.get(model_name, {}).values()
        return {info.version: info.quarantined for info in found if info.quarantined}

    def delete_version_tag(self, model_name: str, version: str, key: str) -> None:
        info = self.get_version(model_name, version)
        tags = {k: v for k, v in info.tags.items() if k != key}
        self.versions[model_name][version] = replace(info, tags=tags)
