"""The ACI 2023-05-01 swagger definitions as JSON Schema, to check every body we send.

The definitions are the spec's own (tests/data/azure/containerinstance/2023-05-01/
definitions.json, see tests/data/azure/README.md); swagger 2.0 schemas are JSON Schema
draft 4 plus `x-ms-*` annotations, which a draft-4 validator ignores, and `$ref`s
resolve inside the same document.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator

DEFINITIONS = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "azure"
    / "containerinstance"
    / "2023-05-01"
    / "definitions.json"
)


@cache
def _definitions() -> dict[str, Any]:
    definitions: dict[str, Any] = json.loads(DEFINITIONS.read_text())["definitions"]
    return definitions


@cache
def _validator(definition: str) -> Draft4Validator:
    defs = _definitions()
    if definition not in defs:
        raise KeyError(f"{definition} is not a definition of the ACI 2023-05-01 spec")
    return Draft4Validator({"$ref": f"#/definitions/{definition}", "definitions": defs})


def violations(definition: str, body: Any) -> list[str]:
    """Every way `body` breaks the spec's `definition` (empty when it conforms)."""
    return [
        f"{definition}: {'/'.join(str(p) for p in error.absolute_path) or '<root>'}: "
        f"{error.message}"
        for error in _validator(definition).iter_errors(body)
    ]


def secret_paths() -> frozenset[tuple[str, str]]:
    """(definition, property) pairs the spec marks `x-ms-secret`: ARM never returns them."""
    return frozenset(
        (name, prop)
        for name, schema in _definitions().items()
        for prop, spec in (schema.get("properties") or {}).items()
        if isinstance(spec, dict) and spec.get("x-ms-secret")
    )
