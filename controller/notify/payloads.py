"""What each channel receives for one notification: pure functions, one per channel.

- `webhook`: our own JSON (`Notification.body()`), signed like MLflow's webhooks.
- `slack`: an incoming-webhook message, `{"text": ..., "blocks": [...]}`. Slack shows
  `text` in notifications and where blocks cannot render, so it is always set (Slack API
  docs, "Sending messages using incoming webhooks" and "Block Kit: section block").
- `teams`: a Teams Workflows webhook ("When a Teams webhook request is received", the
  template that replaced Office 365 connectors) takes a message whose attachment is an
  Adaptive Card: `{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <card>}]}`
  (Microsoft Learn, "Create incoming webhooks with Workflows for Microsoft Teams"). Cards
  use schema 1.4 elements only (TextBlock, FactSet): what the Workflows post renders.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from controller.core.types import Notification, NotificationEvent

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"

# Words people read first: what happened, in one line.
HEADLINES = {
    NotificationEvent.PROMOTION_STARTED: "Promotion started",
    NotificationEvent.PROMOTION_SUCCEEDED: "Promotion succeeded",
    NotificationEvent.PROMOTION_REFUSED: "Promotion refused",
    NotificationEvent.PROMOTION_ROLLED_BACK: "Promotion rolled back",
    NotificationEvent.DEPLOYMENT_DEGRADED: "Deployment degraded",
    NotificationEvent.DEPLOYMENT_RECOVERED: "Deployment recovered",
}
# Adaptive Card TextBlock colours: good news, bad news, neutral.
COLOURS = {
    NotificationEvent.PROMOTION_SUCCEEDED: "Good",
    NotificationEvent.DEPLOYMENT_RECOVERED: "Good",
    NotificationEvent.PROMOTION_REFUSED: "Attention",
    NotificationEvent.PROMOTION_ROLLED_BACK: "Attention",
    NotificationEvent.DEPLOYMENT_DEGRADED: "Attention",
}


def headline(notification: Notification) -> str:
    return f"{HEADLINES[notification.event]}: {notification.deployment}"


def facts(notification: Notification) -> list[tuple[str, str]]:
    model = notification.model_name or "?"
    if notification.alias:
        model += f"@{notification.alias}"
    change = f"{notification.from_version or '—'} → {notification.to_version or '—'}"
    found = [("Model", model), ("Version", change)]
    if notification.reason is not None:
        found.append(("Reason", notification.reason.value))
    found.append(("At", datetime.fromtimestamp(notification.at, UTC).isoformat(timespec="seconds")))
    return found


def webhook_body(notification: Notification) -> bytes:
    return orjson.dumps(notification.body())


def slack_body(notification: Notification) -> bytes:
    lines = "\n".join(f"*{name}:* {value}" for name, value in facts(notification))
    message: dict[str, Any] = {
        "text": f"{headline(notification)} — {notification.message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline(notification)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": notification.message}},
            {"type": "section", "text": {"type": "mrkdwn", "text": lines}},
        ],
    }
    return orjson.dumps(message)


def teams_body(notification: Notification) -> bytes:
    card = {
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": headline(notification),
                "weight": "Bolder",
                "size": "Medium",
                "color": COLOURS.get(notification.event, "Default"),
                "wrap": True,
            },
            {"type": "TextBlock", "text": notification.message, "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": name, "value": value} for name, value in facts(notification)],
            },
        ],
    }
    message = {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }
    return orjson.dumps(message)
