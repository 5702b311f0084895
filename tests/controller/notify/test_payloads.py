"""What Teams, Slack and a generic receiver get: checked against their documented shapes.

Teams: a Workflows webhook takes a `message` whose attachment is an Adaptive Card
(Microsoft Learn, "Create incoming webhooks with Workflows for Microsoft Teams"); the
card is checked against the parts of the Adaptive Card 1.4 schema it uses (transcribed
below from adaptivecards.io's schema for AdaptiveCard, TextBlock and FactSet: required
`type`/`version`/`text`/`facts`, the enum values of `color`, `size` and `weight`).
Slack: an incoming-webhook message needs `text` (the fallback shown in notifications)
and may carry `blocks` of the documented types (Block Kit: header, section with
`plain_text`/`mrkdwn` text objects).
"""

from __future__ import annotations

import json

import jsonschema

from controller.core.records import Reason
from controller.core.types import Notification, NotificationEvent
from controller.notify.payloads import slack_body, teams_body, webhook_body

NOTE = Notification(
    event=NotificationEvent.PROMOTION_ROLLED_BACK,
    deployment="iris-prod",
    model_name="iris-classifier",
    alias="champion",
    from_version="3",
    to_version="2",
    reason=Reason.ANALYSIS_FAILED,
    message="p99 412 ms > 250 ms on v3; rolled back to v2",
    at=1_764_590_400.0,
)

TEXT_BLOCK = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {
        "type": {"const": "TextBlock"},
        "text": {"type": "string"},
        "wrap": {"type": "boolean"},
        "weight": {"enum": ["Default", "Lighter", "Bolder"]},
        "size": {"enum": ["Default", "Small", "Medium", "Large", "ExtraLarge"]},
        "color": {"enum": ["Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"]},
    },
    "additionalProperties": False,
}
FACT_SET = {
    "type": "object",
    "required": ["type", "facts"],
    "properties": {
        "type": {"const": "FactSet"},
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["title", "value"],
                "properties": {"title": {"type": "string"}, "value": {"type": "string"}},
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
TEAMS_MESSAGE = {
    "type": "object",
    "required": ["type", "attachments"],
    "properties": {
        "type": {"const": "message"},
        "attachments": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["contentType", "content"],
                "properties": {
                    "contentType": {"const": "application/vnd.microsoft.card.adaptive"},
                    "contentUrl": {"type": "null"},
                    "content": {
                        "type": "object",
                        "required": ["type", "version", "body"],
                        "properties": {
                            "$schema": {
                                "const": "http://adaptivecards.io/schemas/adaptive-card.json"
                            },
                            "type": {"const": "AdaptiveCard"},
                            "version": {"enum": ["1.0", "1.1", "1.2", "1.3", "1.4"]},
                            "body": {"type": "array", "items": {"oneOf": [TEXT_BLOCK, FACT_SET]}},
                        },
                        "additionalProperties": False,
                    },
                },
            },
        },
    },
}
TEXT_OBJECT = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["plain_text", "mrkdwn"]}, "text": {"type": "string"}},
}
SLACK_MESSAGE = {
    "type": "object",
    "required": ["text"],
    "properties": {
        "text": {"type": "string", "minLength": 1},
        "blocks": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {
                            "type": {"const": "header"},
                            "text": {
                                **TEXT_OBJECT,
                                "properties": {
                                    "type": {"const": "plain_text"},
                                    "text": {"type": "string", "maxLength": 150},
                                },
                            },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"const": "section"}, "text": TEXT_OBJECT},
                    },
                ]
            },
        },
    },
}


def test_generic_body_is_the_documented_contract() -> None:
    body = json.loads(webhook_body(NOTE))
    assert body == {
        "event": "promotion.rolled_back",
        "deployment": "iris-prod",
        "model": {
            "name": "iris-classifier",
            "alias": "champion",
            "from_version": "3",
            "to_version": "2",
        },
        "reason": "AnalysisFailed",
        "message": "p99 412 ms > 250 ms on v3; rolled back to v2",
        "at": 1_764_590_400.0,
    }


def test_teams_gets_an_adaptive_card_message() -> None:
    message = json.loads(teams_body(NOTE))
    jsonschema.validate(message, TEAMS_MESSAGE)
    card = message["attachments"][0]["content"]
    assert card["body"][0]["text"] == "Promotion rolled back: iris-prod"
    assert card["body"][0]["color"] == "Attention"
    facts = {fact["title"]: fact["value"] for fact in card["body"][2]["facts"]}
    assert facts["Version"] == "3 → 2"
    assert facts["Reason"] == "AnalysisFailed"


def test_slack_gets_text_and_blocks() -> None:
    message = json.loads(slack_body(NOTE))
    jsonschema.validate(message, SLACK_MESSAGE)
    assert "Promotion rolled back: iris-prod" in message["text"]
    assert "p99 412 ms" in message["text"]
