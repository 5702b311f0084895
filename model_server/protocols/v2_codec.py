"""Open Inference Protocol V2 tensors <-> our payloads and predictions (no HTTP here).

Sources: kserve/open-inference-protocol `specification/protocol/inference_rest.md`
(request/response objects, "Tensor Data Types", errors as `{"error": ...}`) and Triton's
binary tensor data extension (`docs/protocol/extension_binary_data.md` in
triton-inference-server/server): the JSON header is the first
`Inference-Header-Content-Length` bytes of the body, followed by each binary tensor's raw
little-endian bytes in input order, sized by its `parameters.binary_data_size`; a BYTES
element is a 4-byte little-endian length and the bytes. Outputs are sent the same way when
the request asks for `binary_data` (per output) or `binary_data_output` (all outputs).

Input tensors become the columnar `{"inputs": {column: [...]}}` payload (one tensor per
signature column, shape [n] or [n, 1]) or the `{"instances": rows}` payload (one 2-D
tensor [n, width] in signature column order); `inputs.parse_payload` then checks them
like any other body. Only the declared datatype against the column type is checked here.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from model_server.errors import InputError, MalformedBodyError
from model_server.inputs import decode_json
from model_server.predictors import Output
from model_server.signature import ColumnKind, InputSpec

HEADER_LENGTH = "inference-header-content-length"
# MLServer's name for a model's single output (mlserver.codecs.utils.DefaultOutputPrefix
# + "1"), so clients moving from MLServer's MLflow runtime read the same tensor.
PREDICTIONS_OUTPUT = "output-1"

_FLOATS = ("FP16", "FP32", "FP64")
_INTS = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("bool"),
    **{name: np.dtype(name.lower()).newbyteorder("<") for name in _INTS},
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
ACCEPTED: dict[ColumnKind, tuple[str, ...]] = {
    ColumnKind.FLOAT: (*_FLOATS, *_INTS),
    ColumnKind.INT: _INTS,
    ColumnKind.BOOL: ("BOOL",),
    ColumnKind.STR: ("BYTES",),
}
# What a signature column is described as in model metadata (MLServer's MLflow runtime:
# mlserver_mlflow.metadata._MLflowToContentType).
DATATYPE_OF_MLFLOW = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
}


@dataclass
class InferRequest:
    payload: dict[str, Any]  # for `inputs.parse_payload`
    id: str | None
    outputs: list[str] = field(default_factory=list)  # requested output names, in order
    binary: set[str] = field(default_factory=set)  # outputs to send as binary
    binary_default: bool = False


def decode_request(body: bytes, header_length: str | None, spec: InputSpec | None) -> InferRequest:
    """Split, decode and map one V2 request body; `InputError`/`MalformedBodyError`."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise MalformedBodyError(
                f"Inference-Header-Content-Length {header_length!r} does not fit a body of "
                f"{len(body)} bytes"
            )
        cut = int(header_length)
        body, binary = body[:cut], body[cut:]
    request = decode_json(body)
    if type(request) is not dict:
        raise InputError("a V2 inference request must be a JSON object with 'inputs'")
    request_id = request.get("id")
    if request_id is not None and type(request_id) is not str:
        raise InputError("'id' must be a string")
    params = _parameters(request.get("parameters"), "parameters")
    inputs = request.get("inputs")
    if type(inputs) is not list or not inputs:
        raise InputError("'inputs' must be a non-empty list of tensors")
    tensors, used = {}, 0
    for i, tensor in enumerate(inputs):
        name, values, used = _decode_tensor(i, tensor, binary, used)
        if name in tensors:
            raise InputError(f"input {name!r} is given twice")
        tensors[name] = values
    if used != len(binary):
        raise MalformedBodyError(
            f"{len(binary) - used} bytes of binary data are not claimed by any input"
        )
    result = InferRequest(_payload(tensors, spec), request_id)
    result.binary_default = params.get("binary_data_output") is True
    outputs = request.get("outputs")
    if outputs is not None:
        if type(outputs) is not list:
            raise InputError("'outputs' must be a list of {'name': ...} objects")
        for j, out in enumerate(outputs):
            if type(out) is not dict or type(out.get("name")) is not str:
                raise InputError(f"outputs[{j}] must be an object with a string 'name'")
            result.outputs.append(out["name"])
            out_params = _parameters(out.get("parameters"), f"outputs[{j}].parameters")
            if out_params.get("binary_data", result.binary_default) is True:
                result.binary.add(out["name"])
    return result


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise InputError(f"'{where}' must be an object")
    return value


def _decode_tensor(
    i: int, tensor: Any, binary: bytes, used: int
) -> tuple[str, tuple[list[int], str, list[Any]], int]:
    if type(tensor) is not dict:
        raise InputError(f"inputs[{i}] must be an object with name, shape, datatype and data")
    name = tensor.get("name")
    if type(name) is not str:
        raise InputError(f"inputs[{i}].name must be a string")
    shape = tensor.get("shape")
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise InputError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    datatype = tensor.get("datatype")
    if datatype not in DTYPES and datatype != "BYTES":
        raise InputError(
            f"input {name!r}: unknown datatype {datatype!r}; expected one of "
            f"{', '.join([*DTYPES, 'BYTES'])}"
        )
    count = math.prod(shape)
    params = _parameters(tensor.get("parameters"), f"input {name!r} parameters")
    size = params.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0 or used + size > len(binary):
            raise MalformedBodyError(
                f"input {name!r}: binary_data_size {size!r} is more than the binary data left"
            )
        raw = binary[used : used + size]
        used += size
        values = _from_binary(name, datatype, raw, count)
    else:
        data = tensor.get("data")
        if type(data) is not list:
            raise InputError(f"input {name!r}: 'data' must be a list (or binary_data_size set)")
        values = _flatten(data)
    if len(values) != count:
        raise InputError(
            f"input {name!r}: shape {shape} holds {count} values, but {len(values)} were given"
        )
    return name, (shape, datatype, values), used


def _from_binary(name: str, datatype: str, raw: bytes, count: int) -> list[Any]:
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise MalformedBodyError(f"input {name!r}: truncated BYTES element length")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise MalformedBodyError(f"input {name!r}: truncated BYTES element")
            items.append(_text(name, raw[offset : offset + length]))
            offset += length
        return items
    dtype = DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise MalformedBodyError(
            f"input {name!r}: {len(raw)} bytes of binary data for {count} {datatype} values "
            f"({count * dtype.itemsize} bytes expected)"
        )
    return np.frombuffer(raw, dtype=dtype).tolist()  # type: ignore[no-any-return]


def _text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"input {name!r}: BYTES element is not UTF-8 text") from None


def _flatten(data: list[Any]) -> list[Any]:
    """Row-major values of a tensor given flat or nested (inference_rest.md, Tensor Data).

    The first element tells which: a list mixing both is refused later, by the validator,
    as a value of the wrong type."""
    if not data or type(data[0]) is not list:
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _payload(
    tensors: dict[str, tuple[list[int], str, list[Any]]], spec: InputSpec | None
) -> dict[str, Any]:
    if spec is not None and set(tensors) == spec.name_set:
        columns: dict[str, list[Any]] = {}
        for column in spec.columns:
            shape, datatype, values = tensors[column.name]
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
                raise InputError(f"input {column.name!r}: shape {shape}; a column is [n] or [n, 1]")
            _check_datatype(column.name, column.kind, datatype)
            columns[column.name] = values
        return {"inputs": columns}
    if len(tensors) == 1:
        ((name, (shape, datatype, values)),) = tensors.items()
        width = spec.width if spec is not None else (shape[1] if len(shape) == 2 else 1)
        if len(shape) != 2 or shape[1] != width:
            raise InputError(_expected(spec, f"input {name!r} has shape {shape}"))
        if spec is not None:
            for kind in spec.kinds:
                _check_datatype(name, kind, datatype)
        rows = [values[r * width : (r + 1) * width] for r in range(shape[0])]
        return {"instances": rows}
    raise InputError(_expected(spec, f"got inputs {', '.join(repr(n) for n in tensors)}"))


def _expected(spec: InputSpec | None, got: str) -> str:
    if spec is None:
        return f"expected one 2-D tensor [rows, columns]; {got}"
    return (
        f"expected one input per column ({', '.join(spec.names)}), each of shape [n] or "
        f"[n, 1], or one 2-D input of shape [n, {spec.width}]; {got}"
    )


def _check_datatype(name: str, kind: ColumnKind, datatype: str) -> None:
    accepted = ACCEPTED.get(kind)
    if accepted is not None and datatype not in accepted:
        raise InputError(
            f"input {name!r}: datatype {datatype} does not fit a {kind.value} column "
            f"(expected {', '.join(accepted)})"
        )


_PREFIX_BY_KIND = {"i": "INT", "u": "UINT", "f": "FP"}


def datatype_of(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind == "b":
        return "BOOL"
    prefix = _PREFIX_BY_KIND.get(kind)
    return f"{prefix}{array.dtype.itemsize * 8}" if prefix else "BYTES"


def as_tensor(output: Output) -> np.ndarray:
    """A prediction output as an array with the batch dimension first, at least 2-D."""
    array = output if isinstance(output, np.ndarray) else np.asarray(output)
    if array.dtype.kind not in "biuf":
        array = np.array([str(v) for v in array.ravel()], dtype=object).reshape(array.shape)
    return array.reshape(-1, 1) if array.ndim == 1 else array


def encode_response(
    model_name: str,
    model_version: str | None,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
) -> tuple[bytes, dict[str, str]]:
    """The response body and headers: JSON, or JSON + binary tensors when asked for."""
    described: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array),
            "shape": list(array.shape),
        }
        if name in request.binary or (not request.outputs and request.binary_default):
            raw = _to_binary(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array.ravel().tolist()
        described.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "outputs": described}
    if model_version is not None:
        response["model_version"] = model_version
    if request.id is not None:
        response["id"] = request.id
    header = orjson.dumps(response)
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def _to_binary(array: np.ndarray) -> bytes:
    if array.dtype.kind in "biuf":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in array.ravel():
        raw = str(value).encode()
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)
