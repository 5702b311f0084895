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

Secrets never enter this file. One controller per data dir; writes are atomic
(temp file + `os.replace`) under a thread lock.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATE_FORMAT = 1


@dataclass(frozen=True)
class Current:
    """The container a deployment is served by and the version the controller set on it."""

    container_id: str
    model_version: str


class DockerState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        #: Why the file could not be read last time; None when it read fine.
        self.error: str | None = None

    def read(self) -> dict[str, Current]:
        with self._lock:
            return self._read()

    def update(self, change: Callable[[dict[str, Current]], None]) -> None:
        """Re-read, change in place, write back atomically, all under the lock."""
        with self._lock:
            current = self._read()
            change(current)
            self._write(current)

    def _read(self) -> dict[str, Current]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            return self._unreadable(str(exc))
        if not isinstance(raw, dict) or raw.get("format") != STATE_FORMAT:
            return self._unreadable("unknown format")
        found: dict[str, Current] = {}
        for name, entry in (raw.get("deployments") or {}).items():
            if isinstance(entry, dict) and {"container_id", "model_version"} <= entry.keys():
                found[str(name)] = Current(str(entry["container_id"]), str(entry["model_version"]))
        self.error = None
        return found

    def _unreadable(self, problem: str) -> dict[str, Current]:
        self.error = f"{self.path}: {problem}; using the versions in the container labels"
        log.error("docker runtime state: %s", self.error)
        return {}

    def _write(self, current: dict[str, Current]) -> None:
        body = {
            "format": STATE_FORMAT,
            "deployments": {
                name: {"container_id": c.container_id, "model_version": c.model_version}
                for name, c in sorted(current.items())
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(body, handle, indent=2)
                handle.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
