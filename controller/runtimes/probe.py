"""Asks running model servers what they serve: the served half of `ActualState`.

One `GET /readyz` per server: the model server answers 200 with the model it serves
(`{"status": "ready", "model": {"name", "version", "run_id"}}`, `ReadyResponse` in
model_server/schemas.py) once a version is loaded and checked, and 503 before. So one
request tells both whether it is ready and which version it serves.

A full pass asks every server at once (`probe_all`): a container that restarted comes
back on its boot-time `MODEL_URI`, not on the version a hot swap gave it, and only the
server itself can say so. The probes share one HTTP client (building one costs ~15 ms,
most of it the TLS context) and run on a bounded thread pool with short timeouts: a
thousand servers cost about a second of wall time on two cores, and servers that do not
answer cost `ceil(n / concurrency)` timeouts (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

# Long enough for a server across a region (/readyz answers in milliseconds), short
# enough that dead ones cannot stall a pass for long: a connect that has not happened in
# a second will not. Measured: 32 at a time costs the least wall time per 1,000 probes on
# two cores (64 twice as much: the threads contend); benchmarks/test_aci_probe_scale.py.
PROBE_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
PROBE_CONCURRENCY = 32


@dataclass(frozen=True)
class ServerProbe:
    ready: bool
    served_version: str | None
    run_id: str | None = None
    # The server's traffic (`"traffic"` in its /readyz answer, docs/server-contract.md).
    canary_version: str | None = None
    canary_weight: int = 0
    shadow_version: str | None = None
    shadow_percent: int = 0
    # The fingerprint of its client API keys ("" none; None: an older server, not said).
    api_keys: str | None = None

    def traffic(self) -> dict[str, Any]:
        """The traffic fields (and the API keys' fingerprint), to copy onto an `ActualState`."""
        return {
            "canary_version": self.canary_version,
            "canary_weight": self.canary_weight,
            "shadow_version": self.shadow_version,
            "shadow_percent": self.shadow_percent,
            "api_keys": self.api_keys,
        }

    def detail(self, not_ready: str) -> str:
        """Why the workload is not healthy, or "" when it is ready and says what it serves."""
        if not self.ready:
            return not_ready
        if self.served_version is None:
            return "server is ready but /readyz did not report a version"
        return ""


NOT_ANSWERING = ServerProbe(False, None)
Probe = Callable[[str], ServerProbe]


def probe_server(endpoint: str, client: httpx.Client | None = None) -> ServerProbe:
    """Ready or not, and the version served; a server that does not answer is not ready."""
    if client is None:
        with new_probe_client() as own:
            return probe_server(endpoint, own)
    try:
        response = client.get(f"{endpoint}/readyz")
        body = response.json() if response.is_success else None
    except (httpx.HTTPError, ValueError):
        return NOT_ANSWERING
    if not response.is_success:
        return NOT_ANSWERING
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, dict):
        return ServerProbe(True, None)
    version, run_id = model.get("version"), model.get("run_id")
    traffic = body.get("traffic") if isinstance(body, dict) else None
    canary, canary_weight = _role(traffic, "canary", "weight")
    shadow, shadow_percent = _role(traffic, "shadow", "percent")
    keys = body.get("api_keys", None) if isinstance(body, dict) else None
    return ServerProbe(
        True,
        None if version is None else str(version),
        None if run_id is None else str(run_id),
        canary,
        canary_weight,
        shadow,
        shadow_percent,
        keys if isinstance(keys, str) else None,
    )


def _role(traffic: object, role: str, share: str) -> tuple[str | None, int]:
    """(version, share) of a traffic role in a /readyz answer; (None, 0) when absent."""
    entry = traffic.get(role) if isinstance(traffic, dict) else None
    if not isinstance(entry, dict) or entry.get("version") is None:
        return None, 0
    try:
        return str(entry["version"]), int(entry.get(share) or 0)
    except (TypeError, ValueError):
        return None, 0


def new_probe_client(concurrency: int = PROBE_CONCURRENCY) -> httpx.Client:
    return httpx.Client(
        timeout=PROBE_TIMEOUT,
        trust_env=False,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )


def probe_all(
    probe: Probe, endpoints: Iterable[str], concurrency: int = PROBE_CONCURRENCY
) -> dict[str, ServerProbe]:
    """`probe` over every endpoint, at most `concurrency` at a time."""
    unique = list(dict.fromkeys(endpoints))
    if not unique:
        return {}
    workers = max(1, min(concurrency, len(unique)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
        return dict(zip(unique, pool.map(probe, unique), strict=True))


class ServerProber:
    """`probe_server` over one shared client, for a runtime that probes every pass."""

    def __init__(self, concurrency: int = PROBE_CONCURRENCY) -> None:
        self._client = new_probe_client(concurrency)

    def __call__(self, endpoint: str) -> ServerProbe:
        return probe_server(endpoint, self._client)

    def close(self) -> None:
        self._client.close()


def read_metrics(endpoint: str, timeout: float = 2.0) -> str | None:
    """The server's Prometheus text (per-version prediction counters), or None."""
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.get(f"{endpoint}/metrics")
    except httpx.HTTPError:
        return None
    return response.text if response.is_success else None
