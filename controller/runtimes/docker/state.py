"""The one fact Docker cannot hold for us: which version a container serves after a hot swap.

Ownership, spec hash and boot version live in container labels, but labels are fixed
at create time, and a hot swap changes the served version without a new container. We
could re-derive the version from the server's `/metadata`, but that is the *served*
version, and the planner needs the *recorded* one to tell a promotion (desired differs
from what we set) from drift (the server serves something other than what we set, e.g.
after a restart that booted the label's `MODEL_URI` again). So a small file under the
data dir records, per deployment, the current container id and the version we last set
on it. It is a cache over the labels, not the inventory: entries for a container that no
longer exists are ignored, and a lost or corrupt file only means the boot version from
the label is used, after which self-heal (or the next promotion) hot swaps again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.runtimes.statefile import JsonStateFile


@dataclass(frozen=True)
class Current:
    """The container a deployment is served by and the version the controller set on it."""

    container_id: str
    model_version: str


DockerState = dict[str, Current]


def state_file(path: Path) -> JsonStateFile[DockerState]:
    return JsonStateFile(
        path,
        parse=_parse,
        dump=_dump,
        empty=dict,
        consequence="using the versions in the container labels",
    )


def _parse(raw: dict[str, Any]) -> DockerState:
    deployments = raw.get("deployments") or {}
    if not isinstance(deployments, dict):
        raise ValueError("'deployments' is not an object")
    found: DockerState = {}
    for name, entry in deployments.items():
        if isinstance(entry, dict) and {"container_id", "model_version"} <= entry.keys():
            found[str(name)] = Current(str(entry["container_id"]), str(entry["model_version"]))
    return found


def _dump(state: DockerState) -> dict[str, Any]:
    return {
        "deployments": {
            name: {"container_id": c.container_id, "model_version": c.model_version}
            for name, c in sorted(state.items())
        }
    }
