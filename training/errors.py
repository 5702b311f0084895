"""The training job's error tree, so the CLI maps each failure to one exit code.

    TrainingError            base; never raised directly
    ├── ConfigError          the YAML config is missing or invalid          -> exit 2
    ├── DataError            the data cannot be trained on (named problem)  -> exit 2
    └── TrackingError        MLflow is unreachable or refused a call        -> exit 3

A failed metric gate is not an error: it is a normal outcome reported in the summary
(exit 1), because the run is still logged for the record.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_TRACKING = 3


class TrainingError(Exception):
    """Base class: every subclass carries the exit code the CLI returns for it."""

    exit_code: int = EXIT_USAGE


class ConfigError(TrainingError):
    """The config file is missing, not YAML, or fails validation."""


class DataError(TrainingError):
    """The data set cannot be trained on; the message names the problem."""


class TrackingError(TrainingError):
    """MLflow could not be reached or rejected a request."""

    exit_code = EXIT_TRACKING
