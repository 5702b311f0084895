"""Asks a running model server what it serves: the served half of `ActualState`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class ServerProbe:
    ready: bool
    served_version: str | None
    run_id: str | None = None

    def detail(self, not_ready: str) -> str:
        """Why the workload is not healthy, or "" when it is ready and says what it serves."""
        if not self.ready:
            return not_ready
        if self.served_version is None:
            return "server is ready but /metadata did not report a version"
        return ""


def probe_server(endpoint: str, timeout: float = 2.0) -> ServerProbe:
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            ready = client.get(f"{endpoint}/readyz").is_success
            response = client.get(f"{endpoint}/metadata")
            if not response.is_success:
                return ServerProbe(ready, None)
            body = response.json()
    except (httpx.HTTPError, ValueError):
        return ServerProbe(False, None)
    version = body.get("version") if isinstance(body, dict) else None
    run_id = body.get("run_id") if isinstance(body, dict) else None
    return ServerProbe(ready, None if version is None else str(version), run_id)


def read_metrics(endpoint: str, timeout: float = 2.0) -> str | None:
    """The server's Prometheus text (per-version prediction counters), or None."""
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.get(f"{endpoint}/metrics")
    except httpx.HTTPError:
        return None
    return response.text if response.is_success else None
