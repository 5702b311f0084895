"""Reads a directory of manifests into deployments plus every error found.

Loading never stops at the first problem: a platform engineer wants the whole list,
and the controller must keep reconciling the valid manifests while it reports the bad
ones. `ManifestSnapshot.complete` tells the reconciler whether pruning is safe. An error
names the deployment its document names, when it names one, so status can show it there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from controller.core.manifest import (
    LoadedManifest,
    ManifestError,
    ManifestSnapshot,
    ModelDeployment,
)
from controller.core.types import TargetKind

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MANIFEST_SUFFIXES = (".yaml", ".yml")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class _Parsed:
    stamp: tuple[int, int, int]  # (inode, size, mtime_ns): a changed file has a new stamp
    manifests: list[LoadedManifest]
    errors: list[ManifestError]


class ParseCache:
    """Parsed files by path, re-parsed only when their stamp changes.

    A poll re-reads the directory of a thousand manifests every few seconds; parsing and
    validating every file each time was most of a steady pass. Checks across files
    (duplicate names, DNS labels, local ports) still run on every read.
    """

    def __init__(self) -> None:
        self._files: dict[Path, _Parsed] = {}
        # The deployment a file held when it last parsed: a file broken so badly that it
        # names nothing (bad YAML) is still shown under the deployment it used to define.
        self._names: dict[Path, list[str]] = {}

    def parse(
        self, path: Path, shown: str, environ: Mapping[str, str]
    ) -> tuple[list[LoadedManifest], list[ManifestError]]:
        try:
            info = path.stat()
        except OSError as exc:
            return [], [ManifestError(shown, None, "", f"cannot read: {exc}")]
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        cached = self._files.get(path)
        if cached is None or cached.stamp != stamp:
            errors: list[ManifestError] = []
            manifests = _load_file(path, shown, environ, errors)
            if manifests:
                self._names[path] = [loaded.deployment.name for loaded in manifests]
            previous = self._names.get(path, [])
            if len(previous) == 1:
                errors = [e if e.name else replace(e, name=previous[0]) for e in errors]
            cached = _Parsed(stamp, manifests, errors)
            self._files[path] = cached
        return cached.manifests, cached.errors

    def keep_only(self, paths: set[Path]) -> None:
        for gone in self._files.keys() - paths:
            del self._files[gone]
            self._names.pop(gone, None)


def load_directory(
    directory: Path,
    environ: Mapping[str, str] | None = None,
    cache: ParseCache | None = None,
) -> ManifestSnapshot:
    environ = os.environ if environ is None else environ
    cache = cache or ParseCache()
    result = ManifestSnapshot()
    if not directory.is_dir():
        result.errors.append(ManifestError(str(directory), None, "", "not a directory"))
        return result
    files = sorted(p for p in directory.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
    cache.keep_only(set(files))
    seen: dict[str, LoadedManifest] = {}
    duplicates: set[str] = set()
    for path in files:
        shown = str(path.relative_to(directory))
        parsed, errors = cache.parse(path, shown, environ)
        result.errors.extend(errors)
        for loaded in parsed:
            name = loaded.deployment.name
            if name in seen:
                first = seen[name]
                result.errors.append(
                    ManifestError(
                        shown,
                        loaded.document,
                        "metadata.name",
                        f"duplicate name {name!r}, also in {first.file} (document "
                        f"{first.document}); neither is applied",
                        name,
                    )
                )
                duplicates.add(name)
                continue
            seen[name] = loaded
    for name in duplicates:
        seen.pop(name, None)
    _check_dns_labels(seen, result.errors)
    _check_local_ports(seen, result.errors)
    result.deployments = seen
    return result


def _load_file(
    path: Path, shown: str, environ: Mapping[str, str], errors: list[ManifestError]
) -> list[LoadedManifest]:
    try:
        text = path.read_text(encoding="utf-8")
        # libyaml when present: 1,000 manifests parse in a fraction of the pure-Python time.
        documents = list(yaml.load_all(text, Loader=_SAFE_LOADER))
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(ManifestError(shown, None, "", f"cannot read: {exc}"))
        return []
    except yaml.YAMLError as exc:
        errors.append(ManifestError(shown, None, "", f"invalid YAML: {_yaml_reason(exc)}"))
        return []
    loaded: list[LoadedManifest] = []
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue  # an empty document between `---` separators is not an error
        manifest = _parse_document(document, shown, index, environ, errors)
        if manifest is not None:
            loaded.append(LoadedManifest(manifest, shown, index))
    return loaded


def _parse_document(
    document: Any,
    shown: str,
    index: int,
    environ: Mapping[str, str],
    errors: list[ManifestError],
) -> ModelDeployment | None:
    if not isinstance(document, dict):
        errors.append(
            ManifestError(
                shown,
                index,
                "",
                f"expected a ModelDeployment mapping, got {type(document).__name__}",
            )
        )
        return None
    name = _declared_name(document)
    if document.get("kind") != "ModelDeployment" or "apiVersion" not in document:
        errors.append(
            ManifestError(
                shown,
                index,
                "kind",
                f"not a manifest: expected apiVersion aliasflow/v1 and kind ModelDeployment, "
                f"got kind {document.get('kind')!r}",
            )
        )
        return None
    missing = _interpolate_target(document, environ)
    if missing:
        errors.append(
            ManifestError(
                shown,
                index,
                "spec.target",
                "undefined variable(s) " + ", ".join(f"${{{v}}}" for v in sorted(missing)),
                name,
            )
        )
        return None
    try:
        return ModelDeployment.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors():
            errors.append(
                ManifestError(shown, index, _field_path(error["loc"]), _message(error), name)
            )
        return None


def _declared_name(document: dict[str, Any]) -> str | None:
    """`metadata.name` of a document that may be invalid in any other way."""
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) and name else None


def _interpolate_target(document: dict[str, Any], environ: Mapping[str, str]) -> set[str]:
    """Expand `${VAR}` / `${VAR:-default}` in spec.target only, where per-site values live."""
    spec = document.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("target"), dict):
        return set()
    missing: set[str] = set()

    def expand(value: Any) -> Any:
        if isinstance(value, str):

            def substitute(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                if name in environ:
                    return environ[name]
                if default is not None:
                    return default
                missing.add(name)
                return match.group(0)

            return _VARIABLE.sub(substitute, value)
        if isinstance(value, dict):
            return {key: expand(item) for key, item in value.items()}
        if isinstance(value, list):
            return [expand(item) for item in value]
        return value

    spec["target"] = expand(spec["target"])
    return missing


def _check_dns_labels(manifests: dict[str, LoadedManifest], errors: list[ManifestError]) -> None:
    """Two ACI deployments in one region cannot share a DNS label; refuse both."""
    claims: dict[str, list[LoadedManifest]] = {}
    for loaded in manifests.values():
        aci = loaded.deployment.spec.target.aci
        label = loaded.deployment.dns_name_label
        if aci is not None and label is not None:
            claim = f"DNS label {label!r} in {aci.location} is claimed by"
            claims.setdefault(claim, []).append(loaded)
    _refuse_shared(claims, "spec.target.aci.dnsNameLabel", "", manifests, errors)


def _check_local_ports(manifests: dict[str, LoadedManifest], errors: list[ManifestError]) -> None:
    """A local deployment is served on its `port` on this machine: one port, one deployment."""
    claims: dict[str, list[LoadedManifest]] = {}
    for loaded in manifests.values():
        spec = loaded.deployment.spec
        if spec.target.kind is TargetKind.LOCAL:
            claim = f"port {spec.port} is claimed by the local deployments"
            claims.setdefault(claim, []).append(loaded)
    hint = " (give each its own spec.port)"
    _refuse_shared(claims, "spec.port", hint, manifests, errors)


def _refuse_shared(
    claims: dict[str, list[LoadedManifest]],
    field: str,
    hint: str,
    manifests: dict[str, LoadedManifest],
    errors: list[ManifestError],
) -> None:
    """Every deployment in a claim that more than one makes is an error and not applied."""
    for claim, owners in claims.items():
        if len(owners) < 2:
            continue
        names = ", ".join(sorted(o.deployment.name for o in owners))
        for loaded in owners:
            message = f"{claim} {names}; none of them is applied{hint}"
            errors.append(
                ManifestError(loaded.file, loaded.document, field, message, loaded.deployment.name)
            )
            manifests.pop(loaded.deployment.name, None)


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(document)"


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind in ("literal_error", "enum"):
        return f"{error['msg'].lower()}, got {error['input']!r}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)
