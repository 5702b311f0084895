"""The controller's Prometheus metrics, on a registry of its own (one per app instance).

Chosen so that the two alerts on-call needs are one-liners: a deployment Degraded for
five minutes (`aliasflow_deployment_health{health="Degraded"} == 1`) and webhook
signature failures (`rate(aliasflow_webhook_deliveries_total{outcome="bad_signature"}[5m])`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.store.records import Health, Sync


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "aliasflow_reconciles",
            "Reconcile passes by action and result.",
            ["action", "result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "aliasflow_reconcile_duration_seconds",
            "Duration of reconciles that took an action.",
            ["action"],
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
        )
        self.webhook_deliveries = Counter(
            "aliasflow_webhook_deliveries",
            "Webhook deliveries by source and outcome.",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.deployment_sync = Gauge(
            "aliasflow_deployment_sync",
            "1 for the deployment's current sync state.",
            ["deployment", "sync"],
            registry=self.registry,
        )
        self.deployment_health = Gauge(
            "aliasflow_deployment_health",
            "1 for the deployment's current health.",
            ["deployment", "health"],
            registry=self.registry,
        )
        self.alias_to_serving = Histogram(
            "aliasflow_alias_to_serving_seconds",
            "From the alias move being noticed to the new version serving.",
            ["trigger"],
            registry=self.registry,
            buckets=(0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 120),
        )
        self.polls = Counter(
            "aliasflow_registry_polls",
            "MLflow polls by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.last_poll = Gauge(
            "aliasflow_last_poll_timestamp_seconds",
            "When MLflow was last polled successfully.",
            registry=self.registry,
        )
        self.registry_up = Gauge(
            "aliasflow_registry_up",
            "1 when the last MLflow call succeeded.",
            registry=self.registry,
        )

    def set_state(self, deployment: str, sync: Sync, health: Health) -> None:
        for value in Sync:
            self.deployment_sync.labels(deployment, value.value).set(int(value is sync))
        for value in Health:
            self.deployment_health.labels(deployment, value.value).set(int(value is health))

    def forget(self, deployment: str) -> None:
        for value in Sync:
            self.deployment_sync.remove(deployment, value.value)
        for value in Health:
            self.deployment_health.remove(deployment, value.value)
