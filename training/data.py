"""Load a training data set and refuse, by name, anything the pipeline cannot take.

Every check raises DataError with a message a person can act on; nothing here lets a
pandas or scikit-learn traceback through for a problem that lives in the data.
Feature columns come out as clean identifiers (snake_case) and float64, so clients can
send records by name and any number fits the logged model signature.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training.config import CsvSource, DataSource, IrisSource
from training.errors import DataError

MIN_ROWS = 10
MIN_ROWS_PER_CLASS = 2


@dataclass(frozen=True)
class Dataset:
    features: pd.DataFrame
    target: pd.Series
    data_hash: str
    source: str


def to_identifier(name: str) -> str:
    """`sepal length (cm)` -> `sepal_length_cm`: lower snake_case, a leading digit prefixed."""
    ident = re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower()
    if not ident:
        ident = "column"
    if ident[0].isdigit():
        ident = f"f_{ident}"
    return ident


def _rename_features(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    renamed = [to_identifier(column) for column in frame.columns]
    seen: dict[str, str] = {}
    for original, new in zip(frame.columns, renamed, strict=True):
        if new in seen:
            raise DataError(
                f"{source}: columns {seen[new]!r} and {original!r} both become {new!r} "
                "as identifiers; rename one of them"
            )
        seen[new] = str(original)
    return frame.set_axis(renamed, axis="columns")


def _frame_hash(frame: pd.DataFrame) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def load_iris_dataset() -> Dataset:
    from sklearn.datasets import load_iris

    bunch = load_iris(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    features = _rename_features(frame.drop(columns="target"), "iris")
    target = frame["target"].rename("species")
    data_hash = _frame_hash(pd.concat([features, target], axis=1))
    return _checked(features, target, data_hash, "iris")


def load_csv_dataset(path: Path, target_column: str) -> Dataset:
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{source}: data file not found") from None
    except IsADirectoryError:
        raise DataError(f"{source}: is a directory, expected a CSV file") from None
    except OSError as exc:
        raise DataError(f"{source}: cannot read data file ({exc.strerror})") from exc
    if not raw.strip():
        raise DataError(f"{source}: data file is empty")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{source}: data file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: not a readable CSV file ({exc})") from exc
    if target_column not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise DataError(
            f"{source}: target column {target_column!r} not found; columns are: {columns}"
        )
    if frame.empty:
        raise DataError(f"{source}: data file has a header but no rows")
    target = frame[target_column]
    features = _rename_features(frame.drop(columns=target_column), source)
    return _checked(features, target, hashlib.sha256(raw).hexdigest(), source)


def _checked(features: pd.DataFrame, target: pd.Series, data_hash: str, source: str) -> Dataset:
    """The checks every source shares; returns features as float64."""
    if features.shape[1] == 0:
        raise DataError(f"{source}: no feature columns besides the target")
    non_numeric = [
        str(column)
        for column in features.columns
        if not (
            pd.api.types.is_numeric_dtype(features[column])
            or pd.api.types.is_bool_dtype(features[column])
        )
    ]
    if non_numeric:
        raise DataError(
            f"{source}: non-numeric feature column(s) {', '.join(non_numeric)}; the pipeline "
            "(StandardScaler + estimator) needs numbers: encode or drop them"
        )
    with_gaps = [str(column) for column in features.columns if features[column].isna().any()]
    if with_gaps:
        raise DataError(f"{source}: missing values in feature column(s) {', '.join(with_gaps)}")
    if target.isna().any():
        raise DataError(f"{source}: {int(target.isna().sum())} row(s) have no target value")
    if len(features) < MIN_ROWS:
        raise DataError(f"{source}: too few rows ({len(features)}); need at least {MIN_ROWS}")
    counts = target.value_counts()
    if len(counts) < 2:
        raise DataError(
            f"{source}: target has {len(counts)} class(es); a classifier needs at least 2"
        )
    scarce = counts[counts < MIN_ROWS_PER_CLASS]
    if not scarce.empty:
        labels = ", ".join(f"{label!r} ({count})" for label, count in scarce.items())
        raise DataError(
            f"{source}: too few rows for class(es) {labels}; a stratified holdout needs at "
            f"least {MIN_ROWS_PER_CLASS} per class"
        )
    return Dataset(features.astype("float64"), target, data_hash, source)


def load_dataset(source: DataSource) -> Dataset:
    """Dispatch on the config's data source."""
    if isinstance(source, IrisSource):
        return load_iris_dataset()
    if isinstance(source, CsvSource):
        return load_csv_dataset(source.path, source.target)
    raise DataError(f"unsupported data source {source!r}")
