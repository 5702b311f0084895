"""Log lines about failed reconciles that a person can act on, without the flood.

A deployment that keeps failing the same way (MLflow down, a port taken) is retried on
every timer tick; a WARNING each time buries everything else. The first occurrence is
logged, a changed message is logged at once, and the same message again only after a
pause that doubles up to an hour, saying how often it repeated meanwhile. The status row
and the metrics carry the failure the whole time.

A deployment that has never served and whose model or alias does not exist yet is not an
error at all on a fresh start (`make up` trains and promotes right after): that is INFO,
with what to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.core.errors import AliasNotFoundError, ControllerError, ModelNotFoundError
from controller.core.records import DeploymentStatus

FIRST_PAUSE_SECONDS = 60.0
MAX_PAUSE_SECONDS = 3600.0


@dataclass
class _Seen:
    message: str
    next_at: float
    pause: float
    repeats: int = 0


class RepeatedFailures:
    """Per deployment: should this failure message be logged now, and how often was it
    held back since the last line."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        first_pause: float = FIRST_PAUSE_SECONDS,
        max_pause: float = MAX_PAUSE_SECONDS,
    ) -> None:
        self._clock = clock
        self._first_pause = first_pause
        self._max_pause = max_pause
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def admit(self, key: str, message: str) -> int | None:
        """None: hold this line back; else the number of repeats held back before it."""
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or seen.message != message:
                self._seen[key] = _Seen(message, now + self._first_pause, self._first_pause)
                return 0
            if now < seen.next_at:
                seen.repeats += 1
                return None
            held, seen.repeats = seen.repeats, 0
            seen.pause = min(seen.pause * 2, self._max_pause)
            seen.next_at = now + seen.pause
            return held

    def log(self, logger: logging.Logger, status: DeploymentStatus, exc: ControllerError) -> None:
        """Log the failure `status` now describes, unless the same line is being held back."""
        level, line = failure_line(status, exc)
        held = self.admit(status.name, line)
        if held is None:
            return
        again = f" (the same {held} more time(s) since it was last logged)" if held else ""
        logger.log(
            level,
            "%s%s",
            line,
            again,
            extra={"deployment": status.name, "model_version": status.desired_version},
        )

    def forget(self, key: str) -> None:
        """It worked: the next failure is news again."""
        with self._lock:
            self._seen.pop(key, None)


def failure_line(status: DeploymentStatus, exc: ControllerError) -> tuple[int, str]:
    """(level, text) for a failed reconcile of the deployment `status` describes."""
    never_served = status.served_version is None
    if never_served and isinstance(exc, AliasNotFoundError | ModelNotFoundError):
        model = status.model_name or "the model"
        if status.alias:
            todo = (
                f"register a version (`aliasflow train`) and point the alias at it "
                f"(`aliasflow promote {model} --to {status.alias} --version N`)"
            )
        else:
            todo = f"register the version its manifest pins in {model}"
        return logging.INFO, f"{status.name} waits for its model: {exc}; {todo}"
    return logging.WARNING, f"reconcile of {status.name} failed: {status.message}"
