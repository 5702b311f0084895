"""The spec's swagger definitions as JSON Schema, so every emulator response can be checked.

Swagger 2.0 definitions are nearly JSON Schema draft 4; what differs is handled here:
`$ref`s into other files (common-types) are rewritten to local definitions, `format`s
like `arm-id` or `int32` are not checked (jsonschema ignores unknown formats), and a
definition marked `x-not-transcribed` (see the data file) accepts anything. `allOf`
works as in JSON Schema: a `ContainerApp` must satisfy `TrackedResource` too.
Enums are kept strict even where the spec says `modelAsString`: the emulator must only
ever send values the spec lists.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

API_VERSION = "2026-07-01"
DATA = Path(__file__).resolve().parent.parent / "data" / "azure"
APP_DEFINITIONS = DATA / "app" / API_VERSION / "definitions.json"
COMMON_DEFINITIONS = DATA / "common-types" / "resource-management" / "v5" / "types.json"


def _rewrite(node: Any) -> Any:
    """Point every `$ref` at the merged local `definitions`; drop untranscribed nodes."""
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-not-transcribed"):
        return {}
    out = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = "#/definitions/" + value.rsplit("/", 1)[-1]
        elif key.startswith("x-") or key == "default":
            continue
        else:
            out[key] = _rewrite(value)
    return out


@cache
def _definitions() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in (COMMON_DEFINITIONS, APP_DEFINITIONS):
        merged.update(json.loads(path.read_text())["definitions"])
    return {name: _rewrite(schema) for name, schema in merged.items()}


@cache
def _validator(definition: str) -> jsonschema.Draft4Validator:
    definitions = _definitions()
    if definition not in definitions:
        raise KeyError(f"no definition {definition!r} in the transcribed spec")
    schema = {"$ref": f"#/definitions/{definition}", "definitions": definitions}
    return jsonschema.Draft4Validator(schema)


def errors(definition: str, body: Any) -> list[str]:
    """Every way `body` breaks the spec's `definition` ([] when it conforms)."""
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in _validator(definition).iter_errors(body)
    ]


def check(definition: str, body: Any) -> None:
    problems = errors(definition, body)
    if problems:
        raise AssertionError(f"not a valid {definition} ({API_VERSION}): " + "; ".join(problems))
