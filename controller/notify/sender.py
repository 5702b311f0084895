"""Delivers notifications to their channels in the background, with retries, and records
how each delivery ended.

A rollout never waits for a chat service: `notify()` only queues. Deliveries run on a
small pool; a failed attempt (transport error, 408, 429, 5xx) is retried after a growing
delay scheduled on a timer, not by sleeping in a worker, so one slow channel cannot hold
up the others. A 4xx other than those is the channel refusing the message (a bad URL, a
revoked flow): retrying cannot help, so it is recorded as failed at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from controller.core.deliveries import v1_signature
from controller.core.errors import StoreUnavailableError
from controller.core.ports import HistoryStore
from controller.core.records import NotificationDelivery
from controller.core.types import Notification
from controller.notify.payloads import slack_body, teams_body, webhook_body

log = logging.getLogger("aliasflow.notify")

RETRY_DELAYS_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
RETRYABLE = frozenset({408, 425, 429})
DELIVERY_ID_HEADER = "X-Aliasflow-Delivery-Id"
TIMESTAMP_HEADER = "X-Aliasflow-Timestamp"
SIGNATURE_HEADER = "X-Aliasflow-Signature"


@dataclass(frozen=True)
class Channel:
    name: str  # webhook | teams | slack
    url: str = field(repr=False)  # the URL itself is a credential for Slack and Teams
    render: Callable[[Notification], bytes]
    secret: str | None = field(default=None, repr=False)

    def headers(self, delivery_id: str, body: bytes, now: float) -> dict[str, str]:
        headers = {"Content-Type": "application/json", DELIVERY_ID_HEADER: delivery_id}
        if self.secret is not None:
            stamp = str(int(now))
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = v1_signature(self.secret, delivery_id, stamp, body)
        return headers


def channels(
    *,
    webhook_url: str | None,
    webhook_secret: str | None,
    teams_url: str | None,
    slack_url: str | None,
) -> list[Channel]:
    found = []
    if webhook_url:
        found.append(Channel("webhook", webhook_url, webhook_body, webhook_secret))
    if teams_url:
        found.append(Channel("teams", teams_url, teams_body))
    if slack_url:
        found.append(Channel("slack", slack_url, slack_body))
    return found


@dataclass
class _Delivery:
    channel: Channel
    notification: Notification
    delivery_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempts: int = 0


class WebhookNotifier:
    def __init__(
        self,
        targets: list[Channel],
        store: HistoryStore,
        *,
        retry_delays: tuple[float, ...] = RETRY_DELAYS_SECONDS,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.targets = targets
        self.store = store
        self.retry_delays = retry_delays
        self.timeout = timeout
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="notify")
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False

    def notify(self, notification: Notification) -> None:
        for channel in self.targets:
            self._submit(_Delivery(channel, notification))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timers = list(self._timers)
        for timer in timers:
            timer.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, delivery: _Delivery) -> None:
        with self._lock:
            if self._closed:
                return
        self._pool.submit(self._attempt, delivery)

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        channel = delivery.channel
        body = channel.render(delivery.notification)
        headers = channel.headers(delivery.delivery_id, body, self.clock())
        try:
            with httpx.Client(timeout=self.timeout, trust_env=False) as client:
                response = client.post(channel.url, content=body, headers=headers)
            status: int | None = response.status_code
            detail = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            status, detail = None, f"{type(exc).__name__}: {exc}"
        if status is not None and 200 <= status < 300:
            self._record(delivery, "delivered", detail)
            return
        retryable = status is None or status in RETRYABLE or status >= 500
        if retryable and delivery.attempts <= len(self.retry_delays):
            delay = self.retry_delays[delivery.attempts - 1]
            log.info(
                "%s notification %s: %s; retrying in %gs",
                channel.name,
                delivery.delivery_id,
                detail,
                delay,
            )
            self._later(delay, delivery)
            return
        log.warning(
            "%s notification of %s for %s failed after %d attempt(s): %s",
            channel.name,
            delivery.notification.event,
            delivery.notification.deployment,
            delivery.attempts,
            detail,
        )
        self._record(delivery, "failed", detail)

    def _later(self, delay: float, delivery: _Delivery) -> None:
        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self._submit(delivery)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()

    def _record(self, delivery: _Delivery, outcome: str, detail: str) -> None:
        record = NotificationDelivery(
            delivery_id=delivery.delivery_id,
            channel=delivery.channel.name,
            event=delivery.notification.event.value,
            deployment=delivery.notification.deployment,
            outcome=outcome,
            attempts=delivery.attempts,
            detail=detail,
            at=self.clock(),
        )
        try:
            self.store.record_notification(record)
        except StoreUnavailableError as exc:
            log.error("could not record notification %s: %s", delivery.delivery_id, exc)
