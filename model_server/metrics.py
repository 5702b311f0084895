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
from model_server.version_metrics import RoleMetrics, ShadowMetrics, VersionMetrics

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
        self.versions = VersionMetrics(LATENCY_BUCKETS)
        self.registry.register(self.versions)
        self.model_version.set(-1)
        self._children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        # One set of regression bins for every version of this process (outputs.py).
        self.labeler = OutputLabeler()

    def role(self, version: str | None, role: str) -> RoleMetrics:
        """The counters of one version in one role, made once (version_metrics.py)."""
        return self.versions.role(version, role)

    def shadow(self, version: str | None) -> ShadowMetrics:
        return self.versions.shadow(version)

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
