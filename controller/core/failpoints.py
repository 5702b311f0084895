"""Named places where a test can kill the controller, to prove a crash there loses nothing.

`failpoint("after_apply")` does nothing unless `ALIASFLOW_FAILPOINTS` (a comma-separated
list of names) contains `after_apply`; then it SIGKILLs its own process, the way an OOM
kill or a node loss would, with no `finally` and no flush. The environment is read once,
on the first call rather than at import, so importing this module has no side effect and
a production controller pays one frozenset lookup per failpoint.

Names in use (see `controller/reconcile/reconciler.py`):

- `after_apply`: the runtime applied the change (new version loaded / swapped in)
- `after_health_gate`: the health gate saw the desired version served
- `before_finish`: the status is written, the history row is not finished yet
"""

from __future__ import annotations

import functools
import os
import signal

ENV_VAR = "ALIASFLOW_FAILPOINTS"


@functools.cache
def _armed() -> frozenset[str]:
    raw = os.environ.get(ENV_VAR, "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def failpoint(name: str) -> None:
    """SIGKILL this process when `name` is armed; otherwise return at once."""
    if name in _armed():
        os.kill(os.getpid(), signal.SIGKILL)
