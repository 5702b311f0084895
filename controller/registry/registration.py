"""Registering the controller's webhook in MLflow, idempotently.

On start with `ALIASFLOW_REGISTER_WEBHOOK=true` the controller makes sure MLflow calls it
on alias events. A restart, a changed public URL or a rotated secret must converge on one
webhook, never pile up duplicates: the existing one is found by name (or, failing that,
by URL) and updated in place. MLflow never returns a webhook's secret, so the secret is
always re-sent on update.

Note MLflow's per-worker webhook cache (`MLFLOW_WEBHOOK_CACHE_TTL`, 60 s by default): a
webhook created or updated here may miss events for up to that long. Polling covers it.
"""

from __future__ import annotations

from collections.abc import Iterator

import requests
from mlflow import MlflowClient
from mlflow.entities.webhook import Webhook, WebhookEvent, WebhookEventStr, WebhookStatus
from mlflow.exceptions import MlflowException

from controller.core.errors import RegistryRefusedError, RegistryUnavailableError
from controller.registry.mlflow_registry import configure_fast_failure, http_status

ALIAS_EVENT_NAMES: tuple[WebhookEventStr, ...] = (
    "model_version_alias.created",
    "model_version_alias.deleted",
)
DEFAULT_WEBHOOK_NAME = "aliasflow"


def ensure_webhook(
    tracking_uri: str,
    url: str,
    secret: str,
    name: str = DEFAULT_WEBHOOK_NAME,
    description: str = "aliasflow controller: alias moves trigger reconciles",
) -> str:
    """Create or update the controller's alias-event webhook; returns its id.

    Extra webhooks with the same name are left alone (they may belong to an operator);
    the first match by name wins, then the first by URL.
    """
    if not secret:
        raise ValueError("a webhook secret is required: unsigned deliveries are rejected")
    configure_fast_failure()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    events: list[WebhookEventStr | WebhookEvent] = [
        WebhookEvent.from_str(event) for event in ALIAS_EVENT_NAMES
    ]
    try:
        existing = list(_all_webhooks(client))
        match = next((w for w in existing if w.name == name), None) or next(
            (w for w in existing if w.url == url), None
        )
        if match is None:
            created = client.create_webhook(
                name=name,
                url=url,
                events=events,
                description=description,
                secret=secret,
                status=WebhookStatus.ACTIVE,
            )
            return str(created.webhook_id)
        updated = client.update_webhook(
            match.webhook_id,
            name=name,
            url=url,
            events=events,
            description=description,
            secret=secret,
            status=WebhookStatus.ACTIVE,
        )
        return str(updated.webhook_id)
    except MlflowException as exc:
        if http_status(exc) >= 500:
            raise RegistryUnavailableError(f"registering the MLflow webhook: {exc}") from exc
        raise RegistryRefusedError(f"MLflow refused the webhook: {exc.message}") from exc
    except requests.RequestException as exc:
        raise RegistryUnavailableError(f"registering the MLflow webhook: {exc}") from exc


def _all_webhooks(client: MlflowClient) -> Iterator[Webhook]:
    page_token: str | None = None
    while True:
        page = client.list_webhooks(max_results=100, page_token=page_token)
        yield from page
        page_token = page.token or None
        if page_token is None:
            return
