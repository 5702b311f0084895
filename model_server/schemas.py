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


class ReadyResponse(BaseModel):
    status: str = "ready"
    model: ModelSummary


class PredictResponse(BaseModel):
    predictions: list[Any]
    model: ModelRef


class MetadataResponse(BaseModel):
    name: str | None
    version: str | None
    run_id: str | None
    model_uri: str
    source: str = Field(description='"registry", "baked" or "local"')
    flavor: str
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


class SwapResponse(BaseModel):
    status: Literal["swapped", "unchanged"] = Field(
        default="swapped",
        description='"unchanged" when the requested URI was already served (nothing reloaded)',
    )
    model: MetadataResponse
    previous: ModelSummary | None = Field(description="what was served before; null if unchanged")


class ErrorResponse(BaseModel):
    detail: str
