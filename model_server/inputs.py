"""Turn a request body into a checked batch, fast: the one validator of every protocol.

`/predict`, MLflow's `/invocations` and V2's `/infer` all end in `parse_payload`: the
V2 decoder rewrites its tensors into the columnar `inputs` shape below, so a column,
type or shape rule lives here once.

The hot path is: orjson → a cheap whole-batch type check → one `np.array(..., float64)`
in the model's column order. Only when that cheap check fails do we walk the rows again
to say exactly which record and column is wrong; the common case pays for no messages.

Accepted shapes (one top-level key):
    {"instances": [[...], ...]}            rows in signature column order (or objects)
    {"records": [{...}, ...]}              one object per row
    {"dataframe_split": {"columns": [...], "data": [[...]]}}   MLflow
    {"dataframe_records": [{...}, ...]}    MLflow
    {"inputs": [[...]] | [{...}] | {"col": [...], ...}}        MLflow
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from model_server.errors import BatchTooLargeError, InputError, MalformedBodyError
from model_server.signature import ColumnKind, InputSpec

FORMATS = ("instances", "records", "dataframe_split", "dataframe_records", "inputs")
# The subset `mlflow models serve` accepts (mlflow.pyfunc.scoring_server.SUPPORTED_FORMATS).
MLFLOW_FORMATS = ("instances", "dataframe_split", "dataframe_records", "inputs")
_NUMBER_TYPES = frozenset({int, float})
_FLOAT_ONLY = frozenset({float})


@dataclass(slots=True)
class Batch:
    """Checked rows: `matrix` (float64, n x width) for numeric models, else `rows`."""

    n_rows: int
    matrix: np.ndarray | None = None
    rows: list[Sequence[Any]] | None = None
    columns: tuple[str, ...] = ()


def decode_json(body: bytes) -> Any:
    if not body:
        raise MalformedBodyError("malformed JSON: empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBodyError(f"malformed JSON: {exc}") from None


def parse_payload(
    payload: Any, spec: InputSpec | None, max_rows: int, *, exact: bool = False
) -> Batch:
    """Check `payload` against `spec` and build the batch; raises `InputError` saying why.

    `exact` accepts only bodies MLflow would turn into the very same float64 frame without
    a conversion (named columns, every value a JSON float for an all-double signature; the
    differential tests against `mlflow models serve` pin each rule):
    `/invocations` hands anything else to MLflow's own handler, so its answer stays MLflow's.
    """
    if type(payload) is not dict:
        raise InputError(
            f"expected a JSON object with one of the keys {', '.join(FORMATS)}; "
            f"got {_json_type(payload)}"
        )
    keys = [k for k in payload if k in FORMATS]
    others = [k for k in payload if k not in FORMATS]
    if len(keys) != 1 or others:
        if others:
            raise InputError(
                f"unknown top-level key(s) {', '.join(repr(k) for k in others)}; "
                f"expected exactly one of {', '.join(FORMATS)}"
            )
        raise InputError(
            f"expected exactly one of {', '.join(FORMATS)}; got {', '.join(keys) or 'none'}"
        )
    fmt = keys[0]
    value = payload[fmt]
    if spec is None:
        if exact:
            raise InputError("no signature: only MLflow can say how it reads this body")
        return _unchecked(fmt, value, max_rows)
    if exact and (
        not spec.all_float
        or (fmt == "dataframe_split" and type(value) is dict and "columns" not in value)
    ):
        raise InputError("not a body MLflow reads as the same float64 frame")
    if fmt == "dataframe_split":
        rows, label = _split_rows(value, spec), "row"
    elif fmt in ("records", "dataframe_records"):
        rows, label = _records_rows(fmt, value, spec, max_rows), "record"
    else:
        rows, label = _list_or_columns(fmt, value, spec, max_rows)
        if exact and label == "row" and type(value) is list:
            # MLflow names list rows 0..n-1, which no column-based signature matches.
            raise InputError("unnamed rows: MLflow's rules apply")
    return _build(rows, spec, label, max_rows, exact)


def _list_or_columns(
    fmt: str, value: Any, spec: InputSpec, max_rows: int
) -> tuple[list[Sequence[Any]], str]:
    if fmt == "inputs" and type(value) is dict:
        return _columnar_rows(value, spec), "row"
    if type(value) is not list:
        raise InputError(f"'{fmt}' must be a list of rows; got {_json_type(value)}")
    if value and type(value[0]) is dict:
        return _records_rows(fmt, value, spec, max_rows), "record"
    return value, "row"


def _check_count(n: int, max_rows: int) -> None:
    if n == 0:
        raise InputError("empty batch: no rows to predict")
    if n > max_rows:
        raise BatchTooLargeError(f"batch has {n} rows, over the limit of {max_rows}")


def _records_rows(fmt: str, records: Any, spec: InputSpec, max_rows: int) -> list[Sequence[Any]]:
    if type(records) is not list:
        raise InputError(f"'{fmt}' must be a list of objects; got {_json_type(records)}")
    _check_count(len(records), max_rows)
    names, name_set = spec.names, spec.name_set
    getter = itemgetter(*names)
    rows: list[Sequence[Any]] = []
    for i, record in enumerate(records):
        if type(record) is not dict:
            raise InputError(f"record {i}: expected an object, got {_json_type(record)}")
        if record.keys() != name_set:
            missing = [n for n in names if n not in record]
            if missing:
                raise InputError(f"record {i}: missing column {missing[0]!r}")
            extra = sorted(k for k in record if k not in name_set)
            raise InputError(f"record {i}: unexpected column {extra[0]!r}")
        got = getter(record)
        rows.append(got if spec.width > 1 else (got,))
    return rows


def _split_rows(value: Any, spec: InputSpec) -> list[Sequence[Any]]:
    if type(value) is not dict:
        raise InputError(
            "'dataframe_split' must be an object with 'columns' and 'data'; "
            f"got {_json_type(value)}"
        )
    unknown = sorted(k for k in value if k not in ("columns", "data", "index"))
    if unknown:
        raise InputError(f"'dataframe_split' has unknown key {unknown[0]!r}")
    data = value.get("data")
    if type(data) is not list:
        raise InputError(f"'dataframe_split.data' must be a list of rows; got {_json_type(data)}")
    columns = value.get("columns")
    if columns is None or columns == list(spec.names):
        return data
    if type(columns) is not list or any(type(c) is not str for c in columns):
        raise InputError("'dataframe_split.columns' must be a list of column names")
    if len(set(columns)) != len(columns):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise InputError(f"'dataframe_split.columns' names {dup!r} twice")
    missing = [n for n in spec.names if n not in columns]
    if missing:
        raise InputError(f"missing column {missing[0]!r}")
    extra = [c for c in columns if c not in spec.name_set]
    if extra:
        raise InputError(f"unexpected column {extra[0]!r}")
    # Same set, other order: reorder each row to the model's order.
    order = [columns.index(n) for n in spec.names]
    width = len(columns)
    reordered: list[Sequence[Any]] = []
    for i, row in enumerate(data):
        if type(row) is not list or len(row) != width:
            _raise_row_shape(i, row, width, "row", spec)
        reordered.append([row[j] for j in order])
    return reordered


def _columnar_rows(value: dict[str, Any], spec: InputSpec) -> list[Sequence[Any]]:
    missing = [n for n in spec.names if n not in value]
    if missing:
        raise InputError(f"missing column {missing[0]!r}")
    extra = sorted(k for k in value if k not in spec.name_set)
    if extra:
        raise InputError(f"unexpected column {extra[0]!r}")
    lengths = set()
    for name in spec.names:
        column = value[name]
        if type(column) is not list:
            raise InputError(
                f"column {name!r}: expected a list of values, got {_json_type(column)}"
            )
        lengths.add(len(column))
    if len(lengths) > 1:
        raise InputError(f"columns have different lengths: {sorted(lengths)}")
    return [list(r) for r in zip(*(value[n] for n in spec.names), strict=True)]


def _build(rows: Any, spec: InputSpec, label: str, max_rows: int, exact: bool = False) -> Batch:
    _check_count(len(rows), max_rows)
    width = spec.width
    for i, row in enumerate(rows):
        if type(row) not in (list, tuple) or len(row) != width:
            _raise_row_shape(i, row, width, label, spec)
    # One pass over every value; numbers only (bool is not int here: type() is exact).
    types = {type(v) for row in rows for v in row}
    if exact and types != _FLOAT_ONLY:
        # MLflow refuses an int64 column for a double (all 0/1 excepted): let it decide.
        raise InputError("integers in a double column: MLflow's rules apply")
    if spec.all_float and types <= _NUMBER_TYPES:
        try:
            matrix = np.array(rows, dtype=np.float64)
        except OverflowError:
            matrix = None
        if matrix is not None and np.isfinite(matrix).all():
            return Batch(len(rows), matrix=matrix, columns=spec.names)
    _diagnose(rows, spec, label)  # raises on the first bad value; returns when all good
    if spec.numeric:
        matrix = np.array(rows, dtype=np.float64)
        return Batch(len(rows), matrix=matrix, columns=spec.names)
    return Batch(len(rows), rows=list(rows), columns=spec.names)


def _raise_row_shape(i: int, row: Any, width: int, label: str, spec: InputSpec) -> None:
    if type(row) not in (list, tuple):
        raise InputError(f"{label} {i}: expected a list of {width} values, got {_json_type(row)}")
    raise InputError(
        f"{label} {i}: expected {width} values ({', '.join(spec.names)}), got {len(row)}"
    )


def _diagnose(rows: Sequence[Sequence[Any]], spec: InputSpec, label: str) -> None:
    for i, row in enumerate(rows):
        for column, value in zip(spec.columns, row, strict=True):
            problem = _value_problem(value, column.kind)
            if problem:
                raise InputError(
                    f"{label} {i}: column {column.name!r} expects {column.kind.description} "
                    f"({column.mlflow_type}), got {problem}"
                )


def _value_problem(value: Any, kind: ColumnKind) -> str | None:
    t = type(value)
    if value is None:
        return "null"
    if kind is ColumnKind.FLOAT:
        if t is float:
            return None if math.isfinite(value) else f"non-finite {value}"
        if t is int:
            return None if _fits_float(value) else "an integer too large for a double"
        return _describe(value)
    if kind is ColumnKind.INT:
        if t is int:
            return None
        if t is float and value.is_integer():
            return None
        return _describe(value)
    if kind is ColumnKind.BOOL:
        return None if t is bool else _describe(value)
    if kind is ColumnKind.STR:
        return None if t is str else _describe(value)
    return None


def _fits_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _describe(value: Any) -> str:
    kind = _json_type(value)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return f"{kind} {shown}"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    return kind


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _unchecked(fmt: str, value: Any, max_rows: int) -> Batch:
    """No signature: accept rows or records as they are; the model decides."""
    if fmt == "dataframe_split":
        if type(value) is not dict or type(value.get("data")) is not list:
            raise InputError("'dataframe_split' must be an object with a 'data' list")
        rows = value["data"]
        _check_count(len(rows), max_rows)
        cols = value.get("columns")
        columns = tuple(str(c) for c in cols) if type(cols) is list else ()
        return Batch(len(rows), rows=rows, columns=columns)
    if type(value) is dict:
        raise InputError("columnar 'inputs' need a model signature")
    if type(value) is not list:
        raise InputError(f"'{fmt}' must be a list; got {_json_type(value)}")
    _check_count(len(value), max_rows)
    return Batch(len(value), rows=value)
