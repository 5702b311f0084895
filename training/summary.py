"""The machine-readable result of `aliasflow train`: CI reads it instead of scraping logs.

It replaces the original pipeline's `run_id.txt`; stdout carries only this JSON.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict


class GateSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    metric: str
    threshold: float
    value: float | None
    passed: bool
    message: str


class TrainSummary(BaseModel):
    """`version` and `alias` are null when the gate kept the model unregistered."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    experiment_id: str
    model_name: str
    version: int | None
    alias: str | None
    registered: bool
    model_uri: str
    logged_model_uri: str
    metrics: dict[str, float]
    gate: GateSummary
    git_commit: str
    data_hash: str
    config_hash: str

    def to_json(self) -> str:
        return self.model_dump_json()

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
