"""The controller's Prometheus metrics, on a registry of its own (one per app instance).

Chosen so that the two alerts on-call needs are one-liners: a deployment Degraded for
five minutes (`aliasflow_deployment_health{health="Degraded"} == 1`) and webhook
signature failures (`rate(aliasflow_webhook_deliveries_total{outcome="bad_signature"}[5m])`).
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.core.records import Health, Reason, Result, Sync
from controller.core.types import Operation


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.reconciles = Counter(
            "aliasflow_reconciles",
            "Reconcile passes by action, result and reason.",
            ["action", "result", "reason"],
            registry=registry,
        )
        self.reconcile_seconds = Histogram(
            "aliasflow_reconcile_duration_seconds",
            "Duration of reconciles that took an action.",
            ["action"],
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
        )
        self.alias_to_serving = Histogram(
            "aliasflow_alias_to_serving_seconds",
            "From the alias move being noticed to the new version serving.",
            ["trigger"],
            registry=registry,
            buckets=(0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 120),
        )
        self.breach_to_rollback = Histogram(
            "aliasflow_breach_to_rollback_seconds",
            "From an analysis seeing a threshold breached to the previous version serving.",
            registry=registry,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
        )
        self.webhook_deliveries = Counter(
            "aliasflow_webhook_deliveries",
            "Webhook deliveries by source and outcome.",
            ["source", "outcome"],
            registry=registry,
        )
        self.polls = Counter(
            "aliasflow_registry_polls", "MLflow polls by outcome.", ["outcome"], registry=registry
        )
        self.last_poll = Gauge(
            "aliasflow_last_poll_timestamp_seconds",
            "When MLflow was last polled successfully.",
            registry=registry,
        )
        self.registry_up = Gauge(
            "aliasflow_registry_up", "1 when the last MLflow call succeeded.", registry=registry
        )
        self.deployment_sync = _state_gauge(registry, "sync", "sync state")
        self.deployment_health = _state_gauge(registry, "health", "health")
        self.deployment_reason = _state_gauge(registry, "reason", "status reason")
        self._reasons: dict[str, str] = {}
        self._reasons_lock = threading.Lock()

    def count(self, action: Operation, result: Result, reason: Reason | None) -> None:
        self.reconciles.labels(action.value, result.value, reason.value if reason else "").inc()

    def set_state(
        self, deployment: str, sync: Sync, health: Health, reason: Reason | None = None
    ) -> None:
        for state in Sync:
            self.deployment_sync.labels(deployment, state.value).set(int(state is sync))
        for level in Health:
            self.deployment_health.labels(deployment, level.value).set(int(level is health))
        # One series per deployment: the old reason's series goes when the reason changes.
        label = reason.value if reason else ""
        with self._reasons_lock:
            old = self._reasons.get(deployment)
            if old is not None and old != label:
                self.deployment_reason.remove(deployment, old)
            self._reasons[deployment] = label
        self.deployment_reason.labels(deployment, label).set(1)

    def forget(self, deployment: str) -> None:
        for state in Sync:
            self.deployment_sync.remove(deployment, state.value)
        for level in Health:
            self.deployment_health.remove(deployment, level.value)
        with self._reasons_lock:
            old = self._reasons.pop(deployment, None)
        if old is not None:
            self.deployment_reason.remove(deployment, old)


def _state_gauge(registry: CollectorRegistry, label: str, what: str) -> Gauge:
    """`aliasflow_deployment_<label>{deployment, <label>}`: 1 for the current value."""
    return Gauge(
        f"aliasflow_deployment_{label}",
        f"1 for the deployment's current {what}.",
        ["deployment", label],
        registry=registry,
    )
