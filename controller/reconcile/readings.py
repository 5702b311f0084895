"""Where a deployment's prediction counters come from, for the analysis and the traffic
view: its server's `/metrics`, or, where no one server's counters are the deployment's
(Container Apps replicas behind one ingress), its runtime's sum over its servers."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controller.core.ports import CountingRuntime, Runtime


def counters_of(
    runtimes: Mapping[str, Runtime],
    read: Callable[[str], str | None],
    name: str,
    kind: str | None,
    endpoint: str | None,
) -> str | None:
    """Prometheus text of the deployment's prediction counters, or None when unknown."""
    runtime = runtimes.get(kind) if kind else None
    if isinstance(runtime, CountingRuntime):
        return runtime.server_metrics(name)
    return read(endpoint) if endpoint else None
