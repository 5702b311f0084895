"""The model's input contract, taken from its MLflow signature.

MLflow signatures name each column and its type; we turn that into an `InputSpec` the
request parser can check cheaply (type tags, positions), and compare two specs before a
hot swap so a version that expects different columns never silently takes traffic.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class ColumnKind(enum.StrEnum):
    FLOAT = "float"  # MLflow double / float
    INT = "int"  # MLflow long / integer
    BOOL = "bool"  # MLflow boolean
    STR = "str"  # MLflow string
    ANY = "any"  # binary, datetime, ...: only null is refused

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    ColumnKind.FLOAT: "a number",
    ColumnKind.INT: "an integer",
    ColumnKind.BOOL: "a boolean",
    ColumnKind.STR: "a string",
    ColumnKind.ANY: "a value",
}

_KIND_BY_MLFLOW_TYPE = {
    "double": ColumnKind.FLOAT,
    "float": ColumnKind.FLOAT,
    "long": ColumnKind.INT,
    "integer": ColumnKind.INT,
    "boolean": ColumnKind.BOOL,
    "string": ColumnKind.STR,
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    mlflow_type: str


@dataclass(frozen=True)
class InputSpec:
    """Columns in the order the model wants them (its `feature_names_in_` when it has one)."""

    columns: tuple[Column, ...]
    names: tuple[str, ...] = field(init=False)
    name_set: frozenset[str] = field(init=False)
    # True when every column is numeric: requests become one float64 matrix, no pandas.
    numeric: bool = field(init=False)
    all_float: bool = field(init=False)
    kinds: frozenset[ColumnKind] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(c.name for c in self.columns)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "name_set", frozenset(names))
        kinds = frozenset(c.kind for c in self.columns)
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(
            self, "numeric", kinds <= {ColumnKind.FLOAT, ColumnKind.INT, ColumnKind.BOOL}
        )
        object.__setattr__(self, "all_float", kinds == {ColumnKind.FLOAT})

    @property
    def width(self) -> int:
        return len(self.columns)

    def reordered(self, names: Sequence[str]) -> InputSpec:
        """The same columns in `names` order (the estimator's fitted order)."""
        by_name = {c.name: c for c in self.columns}
        return InputSpec(tuple(by_name[n] for n in names))

    def to_json(self) -> list[dict[str, str]]:
        return [{"name": c.name, "type": c.mlflow_type} for c in self.columns]


class UnsupportedSignatureError(ValueError):
    """The signature is not column-based (tensor specs), or has unnamed columns."""


def spec_from_signature(signature: Any) -> InputSpec | None:
    """Build the spec from an `mlflow.models.ModelSignature`; None when there is none."""
    if signature is None or signature.inputs is None:
        return None
    schema = signature.inputs
    if not schema.has_input_names() or schema.is_tensor_spec():
        raise UnsupportedSignatureError(
            "only column-based signatures with named columns are supported"
        )
    columns = []
    for col in schema.inputs:
        type_name = str(getattr(col.type, "name", col.type))
        columns.append(Column(col.name, kind_of(type_name), type_name))
    return InputSpec(tuple(columns))


def kind_of(mlflow_type: str) -> ColumnKind:
    return _KIND_BY_MLFLOW_TYPE.get(mlflow_type, ColumnKind.ANY)


def incompatibilities(served: InputSpec | None, candidate: InputSpec | None) -> list[str]:
    """Why `candidate` cannot take `served`'s traffic; empty when it can.

    Same column names with the same types, in any order (we build the matrix by name).
    """
    if served is None and candidate is None:
        return []
    if served is None or candidate is None:
        which = "served" if served is None else "new"
        return [f"the {which} model has no input signature"]
    problems = []
    served_types = {c.name: c.mlflow_type for c in served.columns}
    new_types = {c.name: c.mlflow_type for c in candidate.columns}
    missing = [n for n in served.names if n not in new_types]
    extra = [n for n in candidate.names if n not in served_types]
    if missing:
        problems.append("new model lacks column(s) " + ", ".join(repr(n) for n in missing))
    if extra:
        problems.append("new model requires extra column(s) " + ", ".join(repr(n) for n in extra))
    for name in served.names:
        if name in new_types and new_types[name] != served_types[name]:
            problems.append(
                f"column {name!r} changes type from {served_types[name]} to {new_types[name]}"
            )
    return problems
