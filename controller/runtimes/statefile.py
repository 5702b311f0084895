"""A runtime's small inventory on disk: a JSON file read and changed under a lock.

The local runtime records which model-server processes it owns, the Docker runtime which
container serves a deployment and the version last swapped into it. Both files are how a
restarted controller finds its workloads again, so they are written atomically (temp file
+ `os.replace`, fsync'd) and every change is a read-modify-write under a thread lock and an
`flock`: several deployments reconcile at once, and `aliasflow down` may run beside a live
controller on the same data dir. A file that cannot be read is moved aside and reported,
and the runtime carries on as if it knew nothing; a controller that crashes on a bad file
helps nobody.

Secrets never enter these files: a record holds processes, containers and versions.
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
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

STATE_FORMAT = 1
State = TypeVar("State")


class JsonStateFile(Generic[State]):
    """`parse` turns the file's body into `State` (raising ValueError or TypeError on a
    wrong shape), `dump` turns it back; `empty` is what a missing or bad file means, and
    `consequence` says so in the report ("treating the local runtime as owning nothing")."""

    def __init__(
        self,
        path: Path,
        *,
        parse: Callable[[dict[str, Any]], State],
        dump: Callable[[State], dict[str, Any]],
        empty: Callable[[], State],
        consequence: str,
    ) -> None:
        self.path = path
        self._parse = parse
        self._dump = dump
        self._empty = empty
        self._consequence = consequence
        self._lock_path = path.with_name(path.name + ".lock")
        self._thread_lock = threading.RLock()
        #: The last problem reading the file, for status pages; None when it read fine.
        self.error: str | None = None

    def read(self) -> State:
        with self._locked():
            return self._read()

    def update(self, change: Callable[[State], None]) -> State:
        """Re-read, apply `change` in place, write back atomically, all under the lock."""
        with self._locked():
            state = self._read()
            change(state)
            self._write(state)
            return state

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._lock_path, "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _read(self) -> State:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._empty()
        except OSError as exc:
            self._report(f"cannot read {self.path}: {exc}")
            return self._empty()
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("top level is not an object")
            if raw.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {raw.get('format')!r}")
            state = self._parse(raw)
        except (ValueError, TypeError) as exc:
            self._set_aside(f"{self.path} is corrupt ({exc})")
            return self._empty()
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
        self.error = f"{problem}; {self._consequence}"
        log.error("runtime state: %s", self.error)

    def _write(self, state: State) -> None:
        body = {"format": STATE_FORMAT, **self._dump(state)}
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
