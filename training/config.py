"""The training config: a YAML file validated strictly at the boundary.

Unknown keys are errors (a typo must not silently fall back to a default), and an error
names the file and the field path, as the manifests do.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.errors import ConfigError
from training.estimators import ESTIMATORS, unknown_params

DEFAULT_CONFIG_PATH = Path(__file__).with_name("config.yaml")

GateMetric = Literal["accuracy", "f1_macro", "roc_auc_ovr"]

# MLflow reserves these alias names: `latest` and `v<number>`.
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)
_ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")


def reserved_alias(alias: str) -> bool:
    """True for the alias names MLflow refuses (`latest`, `v1`, `V22`, ...)."""
    return bool(_RESERVED_ALIAS.match(alias))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IrisSource(_Strict):
    """scikit-learn's bundled iris data set: no download, columns renamed to snake_case."""

    kind: Literal["iris"] = "iris"


class CsvSource(_Strict):
    """A CSV file; a relative path is resolved against the config file's directory."""

    kind: Literal["csv"]
    path: Path
    target: str = Field(min_length=1)


DataSource = Annotated[IrisSource | CsvSource, Field(discriminator="kind")]


class EstimatorConfig(_Strict):
    name: str = "logistic_regression"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {name!r}; expected one of: {sorted(ESTIMATORS)}")
        return name

    @model_validator(mode="after")
    def _params_accepted(self) -> EstimatorConfig:
        unknown = unknown_params(self.name, self.params)
        if unknown:
            raise ValueError(f"{self.name} does not accept hyper-parameter(s): {unknown}")
        return self


class GateConfig(_Strict):
    """Register only when `metric >= threshold` on the holdout."""

    metric: GateMetric = "accuracy"
    threshold: float = Field(default=0.9, ge=0.0)


class TrainConfig(_Strict):
    model_name: str = Field(default="iris-classifier", min_length=1)
    alias: str = "challenger"
    experiment: str = Field(default="aliasflow-training", min_length=1)
    seed: int = 42
    test_size: float = Field(default=0.25, gt=0.0, lt=1.0)
    data: DataSource = Field(default_factory=IrisSource)
    estimator: EstimatorConfig = Field(default_factory=EstimatorConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    # skops loads without executing code; cloudpickle loads faster (skops' import scans
    # scikit-learn for trusted types, ~1-4 s) for servers chasing cold-start time.
    serialization_format: Literal["skops", "cloudpickle"] = "skops"

    @field_validator("alias")
    @classmethod
    def _alias_allowed(cls, alias: str) -> str:
        if not _ALIAS.match(alias):
            raise ValueError("alias may only contain letters, digits, '-' and '_'")
        if reserved_alias(alias):
            raise ValueError(f"alias {alias!r} is reserved by MLflow (latest, v<number>)")
        return alias

    def config_hash(self) -> str:
        """sha256 of the validated config, so equal configs hash equally whatever the YAML."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def _format_validation_error(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid training config"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def parse_config(raw: Any, source: str = "<config>", base_dir: Path | None = None) -> TrainConfig:
    """Validate an already-parsed YAML document; CSV paths are made absolute from base_dir."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise ConfigError(f"{source}: expected a mapping at the top level, got {kind}")
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from exc
    if isinstance(config.data, CsvSource) and base_dir and not config.data.path.is_absolute():
        data = config.data.model_copy(update={"path": base_dir / config.data.path})
        config = config.model_copy(update={"data": data})
    return config


def load_config(path: Path | None = None) -> TrainConfig:
    """Read and validate a config file (the shipped `training/config.yaml` by default)."""
    path = path or DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return parse_config(raw, source=str(path), base_dir=path.parent)
