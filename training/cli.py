"""`aliasflow train`: a thin main() over the pure steps and the one MLflow boundary.

settings -> config -> data -> split -> fit -> evaluate -> gate -> log (+ register) -> summary.
Exit codes: 0 registered, 1 gate failed (run logged, nothing registered), 2 config or data
error, 3 MLflow unreachable or refusing. Human lines go to stderr; stdout is the JSON.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from training.errors import EXIT_GATE_FAILED, EXIT_OK, TrainingError
from training.summary import GateSummary, TrainSummary

log = logging.getLogger("training")


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now, so CliRunner and redirects see the lines."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _configure_logging() -> None:
    if not any(isinstance(h, _CurrentStderrHandler) for h in log.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def train(config_path: Path | None) -> TrainSummary:
    """Run the whole job and return its summary; raises TrainingError subclasses."""
    from training.config import load_config
    from training.data import load_dataset
    from training.model import check_gate, evaluate, fit, split
    from training.settings import TrainSettings
    from training.tracking import log_and_register

    tracking_uri = TrainSettings().require_tracking_uri()
    config = load_config(config_path)
    dataset = load_dataset(config.data)
    log.info("data %s: %d rows, %d features", dataset.source, *dataset.features.shape)
    data = split(dataset, config.test_size, config.seed)
    pipeline = fit(config.estimator, data, config.seed)
    metrics = evaluate(pipeline, data.x_test, data.y_test)
    gate = check_gate(metrics, config.gate.metric, config.gate.threshold)
    log.info("holdout metrics %s; gate: %s", metrics, gate.message)
    record = log_and_register(
        tracking_uri=tracking_uri,
        config=config,
        dataset=dataset,
        data=data,
        pipeline=pipeline,
        metrics=metrics,
        gate=gate,
    )
    registered = record.version is not None
    return TrainSummary(
        run_id=record.run_id,
        experiment_id=record.experiment_id,
        model_name=config.model_name,
        version=record.version,
        alias=config.alias if registered else None,
        registered=registered,
        model_uri=(
            f"models:/{config.model_name}/{record.version}"
            if registered
            else record.logged_model_uri
        ),
        logged_model_uri=record.logged_model_uri,
        metrics=metrics,
        gate=GateSummary(
            metric=gate.metric,
            threshold=gate.threshold,
            value=gate.value,
            passed=gate.passed,
            message=gate.message,
        ),
        git_commit=record.tags["git_commit"],
        data_hash=record.tags["data_hash"],
        config_hash=record.tags["config_hash"],
    )


def run_train(config: Path | None, summary_file: Path | None) -> int:
    """CLI entry: prints the JSON summary on stdout, returns the process exit code."""
    _configure_logging()
    try:
        summary = train(config)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summary.to_json(), flush=True)
    if summary_file is not None:
        summary.write(summary_file)
    if not summary.registered:
        print(
            f"gate failed: {summary.gate.message}; {summary.model_name} not registered "
            f"(run {summary.run_id})",
            file=sys.stderr,
        )
        return EXIT_GATE_FAILED
    log.info("done: %s", summary.model_uri)
    return EXIT_OK
