"""Delivery to a real loopback receiver: signed, retried with backoff, recorded, never blocking."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.core.deliveries import v1_digest
from controller.core.records import Reason
from controller.core.types import Notification, NotificationEvent
from controller.notify.sender import WebhookNotifier, channels
from controller.store.sql import SqlHistoryStore
from tests.notify_receiver import Receiver

SECRET = "notify-secret"


def note(event: NotificationEvent = NotificationEvent.PROMOTION_STARTED) -> Notification:
    return Notification(
        event, "iris-prod", "iris", "champion", "1", "2", Reason.PROGRESSING, "hotswap", 1.0
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlHistoryStore]:
    history = SqlHistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    yield history
    history.close()


def make(receiver: Receiver, store: SqlHistoryStore, **paths: str) -> WebhookNotifier:
    targets = channels(
        webhook_url=f"{receiver.url}/hook" if "webhook" in paths else None,
        webhook_secret=SECRET,
        teams_url=f"{receiver.url}/teams" if "teams" in paths else None,
        slack_url=f"{receiver.url}/slack" if "slack" in paths else None,
    )
    return WebhookNotifier(targets, store, retry_delays=(0.05, 0.1, 0.2))


def test_generic_webhook_is_signed_like_mlflow(receiver: Receiver, store: SqlHistoryStore) -> None:
    notifier = make(receiver, store, webhook="yes")
    notifier.notify(note())
    (got,) = receiver.wait_for(1)
    delivery, stamp = got.headers["X-Aliasflow-Delivery-Id"], got.headers["X-Aliasflow-Timestamp"]
    version, _, signature = got.headers["X-Aliasflow-Signature"].partition(",")
    assert version == "v1"
    assert base64.b64decode(signature) == v1_digest(SECRET, delivery, stamp, got.body)
    assert abs(int(stamp) - time.time()) < 60
    assert got.json()["event"] == "promotion.started"
    notifier.close()


def test_failures_are_retried_with_backoff_and_recorded(
    receiver: Receiver, store: SqlHistoryStore
) -> None:
    receiver.answers = [500, 429, 200]
    notifier = make(receiver, store, webhook="yes")
    notifier.notify(note())
    attempts = receiver.wait_for(3)
    # One delivery, retried: the same id every time.
    assert len({a.headers["X-Aliasflow-Delivery-Id"] for a in attempts}) == 1
    deadline = time.monotonic() + 5
    while not store.notifications() and time.monotonic() < deadline:
        time.sleep(0.02)
    (record,) = store.notifications()
    assert (record.channel, record.outcome, record.attempts) == ("webhook", "delivered", 3)
    notifier.close()


def test_a_refusal_is_not_retried(receiver: Receiver, store: SqlHistoryStore) -> None:
    receiver.answers = [404]
    notifier = make(receiver, store, slack="yes")
    notifier.notify(note(NotificationEvent.PROMOTION_REFUSED))
    receiver.wait_for(1)
    deadline = time.monotonic() + 5
    while not store.notifications() and time.monotonic() < deadline:
        time.sleep(0.02)
    (record,) = store.notifications()
    assert (record.outcome, record.attempts, record.detail) == ("failed", 1, "HTTP 404")
    time.sleep(0.3)  # longer than every retry delay: still one attempt
    assert len(receiver.received) == 1
    notifier.close()


def test_notify_never_blocks_on_a_dead_channel(store: SqlHistoryStore) -> None:
    targets = channels(
        webhook_url="http://127.0.0.1:9/hook", webhook_secret=None, teams_url=None, slack_url=None
    )
    notifier = WebhookNotifier(targets, store, retry_delays=(5.0,))
    started = time.monotonic()
    for _ in range(50):
        notifier.notify(note())
    assert time.monotonic() - started < 0.5
    notifier.close()


def test_every_channel_gets_its_own_shape(receiver: Receiver, store: SqlHistoryStore) -> None:
    notifier = make(receiver, store, webhook="yes", teams="yes", slack="yes")
    notifier.notify(note())
    got = {r.path: r.json() for r in receiver.wait_for(3)}
    assert got["/hook"]["deployment"] == "iris-prod"
    assert got["/teams"]["type"] == "message"
    assert "blocks" in got["/slack"]
    notifier.close()
