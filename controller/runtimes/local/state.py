"""The local runtime's inventory: which model-server processes it owns, on disk.

The state file is how a restarted controller finds the servers it started (they run in
their own sessions and outlive it), so it is written atomically (temp file +
`os.replace`) and re-read under a lock for every change: several deployments reconcile
concurrently. A file that cannot be read is reported and set aside, and the runtime
carries on as if it knew nothing; a controller that crashes on a bad file helps nobody.

Secrets never enter this file: a record holds the process and the versions, not the env.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FORMAT = 1


@dataclass(frozen=True)
class ServerRecord:
    """One model-server process the runtime started."""

    pid: int
    port: int
    endpoint: str
    spec_hash: str
    # The version the controller last set (boot MODEL_URI, then each hot swap).
    model_version: str
    started_at: str
    log_file: str

    @classmethod
    def from_json(cls, raw: object) -> ServerRecord:
        if not isinstance(raw, dict):
            raise ValueError(f"expected an object, got {type(raw).__name__}")
        names = {f.name for f in fields(cls)}
        missing = names - raw.keys()
        if missing:
            raise ValueError(f"missing keys {sorted(missing)}")
        record = cls(**{name: raw[name] for name in names})
        if not isinstance(record.pid, int) or not isinstance(record.port, int):
            raise ValueError("pid and port must be integers")
        return record


@dataclass(frozen=True)
class LocalState:
    """Current servers by deployment name, plus `pending`: servers being started.

    A pending record exists only while a new server is being health-checked. One that
    survives a crash of the controller marks an orphan the next apply must stop.
    """

    servers: dict[str, ServerRecord]
    pending: dict[str, ServerRecord]

    @classmethod
    def empty(cls) -> LocalState:
        return cls({}, {})


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._thread_lock = threading.RLock()
        #: The last problem reading the file, for status pages; None when it read fine.
        self.error: str | None = None

    def read(self) -> LocalState:
        with self._locked():
            return self._read()

    def update(self, change: Callable[[LocalState], None]) -> LocalState:
        """Re-read, apply `change` in place, write back atomically, all under the lock."""
        with self._locked():
            state = self._read()
            change(state)
            self._write(state)
            return state

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # The thread lock orders this controller's threads; flock keeps a second process
        # on the same data dir (`aliasflow down` next to a running controller) from
        # interleaving a read-modify-write with ours.
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._lock_path, "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _read(self) -> LocalState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return LocalState.empty()
        except OSError as exc:
            self._report(f"cannot read {self.path}: {exc}")
            return LocalState.empty()
        try:
            state = _parse(json.loads(text))
        except (ValueError, TypeError) as exc:
            self._set_aside(f"{self.path} is corrupt ({exc})")
            return LocalState.empty()
        self.error = None
        return state

    def _set_aside(self, problem: str) -> None:
        # Keep the evidence, and stop reporting the same file on every observe.
        aside = self.path.with_name(self.path.name + ".corrupt")
        try:
            os.replace(self.path, aside)
            problem += f"; moved to {aside}"
        except OSError as exc:
            problem += f"; could not move it aside: {exc}"
        self._report(problem)

    def _report(self, problem: str) -> None:
        self.error = f"{problem}; treating the local runtime as owning nothing"
        log.error("local runtime state: %s", self.error)

    def _write(self, state: LocalState) -> None:
        body = {
            "format": STATE_FORMAT,
            "servers": {name: asdict(r) for name, r in sorted(state.servers.items())},
            "pending": {name: asdict(r) for name, r in sorted(state.pending.items())},
        }
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(body, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _parse(raw: Any) -> LocalState:
    if not isinstance(raw, dict):
        raise ValueError("top level is not an object")
    if raw.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown format {raw.get('format')!r}")
    sections: list[dict[str, ServerRecord]] = []
    for key in ("servers", "pending"):
        section = raw.get(key, {})
        if not isinstance(section, dict):
            raise ValueError(f"{key!r} is not an object")
        sections.append({str(k): ServerRecord.from_json(v) for k, v in section.items()})
    return LocalState(*sections)
