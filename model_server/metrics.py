"""Prometheus metrics of one server app, in a registry of its own.

A registry per app (not the global default) lets tests build many apps in one process
and keeps `/metrics` to exactly what this server knows. Recording is done by a plain
ASGI middleware, so a request pays two dictionary lookups and a histogram observe.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_server.outputs import OutputLabeler

KNOWN_ENDPOINTS = frozenset(
    {
        "/predict",
        "/health",
        "/livez",
        "/readyz",
        "/metadata",
        "/metrics",
        "/admin/model",
        "/admin/model/previous",
        "/admin/traffic",
        "/invocations",
        "/ping",
        "/version",
    }
)


def endpoint_of(path: str) -> str:
    """The metrics label of a path: V2 paths carry a model name, so they are grouped."""
    if path in KNOWN_ENDPOINTS:
        return path
    if path.startswith("/v2"):
        return "/v2/infer" if path.endswith("/infer") else "/v2"
    return "other"


CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# A model whose outputs are free text could grow a label per request: past this many
# distinct outputs per version and role, the rest are counted as "other".
MAX_OUTPUT_LABELS = 100


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aliasflow_server_requests",
            "HTTP requests answered, by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aliasflow_server_request_duration_seconds",
            "Time from request start to response end, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "aliasflow_server_model_info",
            "The model version being served (value 1).",
            ["name", "version", "run_id"],
            registry=self.registry,
        )
        self.model_version = Gauge(
            "aliasflow_server_model_version",
            "The served model version number (-1 when not numeric or none).",
            registry=self.registry,
        )
        self.swaps = Counter(
            "aliasflow_server_model_swaps",
            "Hot swap attempts, by result (swapped, unchanged, refused, failed).",
            ["result"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "aliasflow_server_predict_batch_rows",
            "Rows per model call (micro-batches of concurrent requests).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 10000),
            registry=self.registry,
        )
        self.mlflow_handled = Counter(
            "aliasflow_server_invocations_by_mlflow",
            "/invocations bodies answered by MLflow's own handler (outside our fast path).",
            registry=self.registry,
        )
        self._add_version_metrics()
        self.model_version.set(-1)
        self._children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._roles: dict[tuple[str, str], RoleMetrics] = {}
        self._shadows: dict[str, ShadowMetrics] = {}
        # One set of regression bins for every version of this process (outputs.py).
        self.labeler = OutputLabeler()

    def _add_version_metrics(self) -> None:
        """The per-version counters the controller judges a rollout by (server-contract.md)."""
        self.prediction_requests = Counter(
            "aliasflow_server_prediction_requests",
            "Prediction requests answered (all protocols), by version, role and outcome.",
            ["version", "role", "outcome"],
            registry=self.registry,
        )
        self.prediction_latency = Histogram(
            "aliasflow_server_prediction_latency_seconds",
            "Time to answer a prediction request, by version and role.",
            ["version", "role"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.prediction_outputs = Counter(
            "aliasflow_server_prediction_outputs",
            "Outputs: predicted class, or regression bin b00..b19, by version and role.",
            ["version", "role", "output"],
            registry=self.registry,
        )
        self.shadow_requests = Counter(
            "aliasflow_server_shadow_requests",
            "Requests mirrored to the shadow version, by outcome (ok, error, dropped).",
            ["version", "outcome"],
            registry=self.registry,
        )
        self.shadow_agreement = Counter(
            "aliasflow_server_shadow_agreement",
            "Shadow answers equal (agree=true) or not to the primary's.",
            ["version", "agree"],
            registry=self.registry,
        )
        self.shadow_latency = Histogram(
            "aliasflow_server_shadow_latency_seconds",
            "The shadow version's own time per mirrored request.",
            ["version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def role(self, version: str | None, role: str) -> RoleMetrics:
        """The (cached) counters of one version in one role."""
        key = (version or "", role)
        found = self._roles.get(key)
        if found is None:
            found = self._roles[key] = RoleMetrics(self, key[0], role)
        return found

    def shadow(self, version: str | None) -> ShadowMetrics:
        key = version or ""
        found = self._shadows.get(key)
        if found is None:
            found = self._shadows[key] = ShadowMetrics(self, key)
        return found

    def set_model(self, name: str | None, version: str | None, run_id: str | None) -> None:
        self.model_info.clear()
        self.model_info.labels(name or "", version or "", run_id or "").set(1)
        self.model_version.set(int(version) if version and version.isdigit() else -1)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(endpoint, str(status))
        child.inc()
        hist = self._latency_children.get(endpoint)
        if hist is None:
            hist = self._latency_children[endpoint] = self.latency.labels(endpoint)
        hist.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RoleMetrics:
    """Label children of one (version, role), made once: a request pays no label lookup."""

    def __init__(self, metrics: ServerMetrics, version: str, role: str) -> None:
        requests = metrics.prediction_requests
        self.ok = requests.labels(version, role, "ok")
        self.client_error = requests.labels(version, role, "client_error")
        self.server_error = requests.labels(version, role, "server_error")
        self.latency = metrics.prediction_latency.labels(version, role)
        self._outputs_family = metrics.prediction_outputs
        self._version = version
        self._role = role
        self._outputs: dict[str, Any] = {}

    def count_outputs(self, counts: dict[str, int]) -> None:
        for output, n in counts.items():
            child = self._outputs.get(output)
            if child is None:
                if len(self._outputs) >= MAX_OUTPUT_LABELS:
                    output = "other"
                child = self._outputs.get(output)
                if child is None:
                    child = self._outputs_family.labels(self._version, self._role, output)
                    self._outputs[output] = child
            child.inc(n)


class ShadowMetrics:
    """Label children of one shadow version."""

    def __init__(self, metrics: ServerMetrics, version: str) -> None:
        self.ok = metrics.shadow_requests.labels(version, "ok")
        self.error = metrics.shadow_requests.labels(version, "error")
        self.dropped = metrics.shadow_requests.labels(version, "dropped")
        self.agree = metrics.shadow_agreement.labels(version, "true")
        self.disagree = metrics.shadow_agreement.labels(version, "false")
        self.latency = metrics.shadow_latency.labels(version)


class MetricsMiddleware:
    """Counts every HTTP response by endpoint (unknown paths grouped as "other")."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_of(scope["path"])
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)
