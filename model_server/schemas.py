"""Request and response bodies of the HTTP API, kept apart from the domain types.

`/predict` bodies are parsed by `inputs.py` straight from bytes (pydantic would cost more
than the model); its schemas here document the shape for OpenAPI and clients.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelRef(BaseModel):
    name: str | None
    version: str | None


class ModelSummary(ModelRef):
    run_id: str | None


class HealthResponse(BaseModel):
    status: str = "ok"
    model: ModelSummary


class CanaryState(BaseModel):
    version: str | None
    weight: int


class ShadowState(BaseModel):
    version: str | None
    percent: int


class TrafficState(BaseModel):
    canary: CanaryState | None
    shadow: ShadowState | None
    previous: str | None = Field(description="the version kept loaded for a rollback")


class ReadyResponse(BaseModel):
    status: str = "ready"
    model: ModelSummary
    traffic: TrafficState
    api_keys: str = Field(
        default="",
        description="Fingerprint of the client API keys the prediction routes require "
        '("" when none): the controller compares it with the keys it wants.',
    )


class PredictRequest(BaseModel):
    """Body of `POST /predict`: exactly one of the five input keys, plus "outputs"."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Any] | None = Field(default=None, description="rows in column order")
    records: list[dict[str, Any]] | None = Field(default=None, description="one object per row")
    dataframe_split: dict[str, Any] | None = Field(
        default=None, description='MLflow: {"columns": [...], "data": [[...]]}'
    )
    dataframe_records: list[dict[str, Any]] | None = Field(
        default=None, description="MLflow: one object per row"
    )
    inputs: list[Any] | dict[str, list[Any]] | None = Field(
        default=None, description="MLflow: rows, records, or {column: [values]}"
    )
    outputs: list[Literal["probabilities", "labels"]] | None = Field(
        default=None,
        description="extra outputs of a scikit-learn classifier beside MLflow's predictions: "
        '"probabilities" (one row per input, columns in the order of "classes") and "labels" '
        "(the predicted class of each row)",
    )


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(
        description="exactly what MLflow's pyfunc predicts for the input "
        "(probabilities for a model logged with pyfunc_predict_fn='predict_proba')"
    )
    model: ModelRef
    probabilities: list[list[float]] | None = Field(
        default=None, description='only when "probabilities" was asked for'
    )
    classes: list[Any] | None = Field(
        default=None, description="the class of each probabilities column"
    )
    labels: list[Any] | None = Field(default=None, description='only when "labels" was asked for')


class MetadataResponse(BaseModel):
    name: str | None
    version: str | None
    run_id: str | None
    model_uri: str
    source: str = Field(description='"registry", "baked" or "local"')
    flavor: str = Field(description='"sklearn" (native estimator call) or "pyfunc"')
    predict_fn: str = Field(description="the model's pyfunc_predict_fn, honoured on every path")
    fallback_reason: str | None = Field(
        description="why the model is served through mlflow.pyfunc (null when native)"
    )
    kernel: str | None = Field(
        description="the bit-exact shortcut for this scikit-learn pipeline, when one is used"
    )
    outputs: list[str] = Field(description="extra outputs /predict can add for this model")
    signature: dict[str, Any] | None
    input_columns: list[dict[str, str]] | None
    metrics: dict[str, float]
    git_sha: str | None
    loaded_at: datetime


class SwapRequest(BaseModel):
    """Body of `POST /admin/model`."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str = Field(min_length=1, examples=["models:/iris-classifier/4"])
    force: bool = Field(default=False, description="swap even when the input signature differs")
    deadline_seconds: float | None = Field(
        default=None,
        gt=0,
        description="give up (422, the old version keeps serving) if loading, warming and "
        "checking the new version takes longer; the controller sends its health timeout "
        "minus a margin, so a version it gave up on never appears later",
    )
    keep_previous: bool = Field(
        default=False,
        description="keep the replaced version loaded (not serving) as `previous`, so a "
        "swap back to it is instant; without it no version is kept",
    )


class CanaryRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_uri: str = Field(min_length=1, examples=["models:/iris-classifier/5"])
    weight: int = Field(ge=0, le=100, description="% of prediction requests it answers")


class ShadowRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_uri: str = Field(min_length=1, examples=["models:/iris-classifier/5"])
    percent: int = Field(ge=0, le=100, description="% of the primary's requests mirrored")


class TrafficRequest(BaseModel):
    """Body of `PUT /admin/traffic`: the whole split (a role left null is removed)."""

    model_config = ConfigDict(extra="forbid")

    canary: CanaryRoute | None = Field(description="null: no canary")
    shadow: ShadowRoute | None = Field(description="null: no shadow")
    deadline_seconds: float | None = Field(
        default=None,
        gt=0,
        description="give up (422, the split is unchanged) if loading the new versions "
        "takes longer, as for a swap",
    )


class TrafficResponse(BaseModel):
    """The version in each role; null when the role is absent."""

    primary: str | None
    canary: str | None
    shadow: str | None
    previous: str | None


class ApiKeysRequest(BaseModel):
    """Body of `PUT /admin/api-keys`: the whole list; empty lifts the requirement."""

    model_config = ConfigDict(extra="forbid")

    keys: list[str] = Field(max_length=64, description="the client keys, replacing all others")


class ApiKeysResponse(BaseModel):
    required: bool
    count: int
    api_keys: str = Field(description="the new keys' fingerprint, as /readyz reports it")


class SwapResponse(BaseModel):
    status: Literal["swapped", "unchanged"] = Field(
        default="swapped",
        description='"unchanged" when the requested URI was already served (nothing reloaded)',
    )
    model: MetadataResponse
    previous: ModelSummary | None = Field(description="what was served before; null if unchanged")


class ErrorResponse(BaseModel):
    detail: str


class V2Tensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(BaseModel):
    """Open Inference Protocol inference request (inference_rest.md)."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor]
    outputs: list[V2RequestedOutput] | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[V2Tensor]


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2ServerLive(BaseModel):
    live: bool


class V2ServerReady(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]
