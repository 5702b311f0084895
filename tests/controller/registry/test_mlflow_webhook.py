"""MLflow webhook verification and parsing: table tests plus a real delivery.

The real-delivery test is the proof that our reading of MLflow's signature scheme is
right: MLflow signs, a plain HTTP receiver records the raw bytes, we verify them.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow import MlflowClient

from controller.core.deliveries import RejectReason, WebhookRejected
from controller.registry.mlflow_registry import MlflowRegistry
from controller.registry.registration import ALIAS_EVENT_NAMES, ensure_webhook
from controller.registry.webhook import (
    AliasEvent,
    parse_alias_event,
    sign_mlflow_payload,
    verify_mlflow_signature,
)

SECRET = "s3cret-for-tests"
NOW = 1_760_000_000.0
BODY = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2025-10-09T08:53:20.123456+00:00",
        "data": {"name": "iris", "alias": "champion", "version": "3"},
    }
).encode()


def headers(
    body: bytes = BODY, secret: str = SECRET, timestamp: float = NOW, delivery: str = "d-1"
) -> dict[str, str]:
    ts = str(int(timestamp))
    return {
        "delivery_id": delivery,
        "timestamp": ts,
        "signature_header": sign_mlflow_payload(secret, delivery, ts, body),
    }


def verify(body: bytes = BODY, **overrides: str | None) -> None:
    values: dict[str, str | None] = {**headers(body), **overrides}
    verify_mlflow_signature(
        SECRET,
        values["delivery_id"],
        values["timestamp"],
        body,
        values["signature_header"],
        now=NOW,
    )


def test_a_correct_signature_is_accepted() -> None:
    verify()


def test_signature_matches_mlflows_own_implementation() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    assert sign_mlflow_payload(SECRET, "d-1", "123", BODY) == _generate_hmac_signature(
        SECRET, "d-1", "123", BODY.decode()
    )


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"signature_header": None}, RejectReason.MISSING_HEADER),
        ({"signature_header": ""}, RejectReason.MISSING_HEADER),
        ({"delivery_id": None}, RejectReason.MISSING_HEADER),
        ({"timestamp": None}, RejectReason.MISSING_HEADER),
        ({"signature_header": "v1,not base64!"}, RejectReason.MALFORMED_SIGNATURE),
        ({"signature_header": "v2,AAAA"}, RejectReason.MALFORMED_SIGNATURE),
        ({"signature_header": "v1,AAAA"}, RejectReason.BAD_SIGNATURE),
        ({"delivery_id": "d-2"}, RejectReason.BAD_SIGNATURE),  # signed for d-1
        ({"timestamp": "yesterday"}, RejectReason.MALFORMED_TIMESTAMP),
        (headers(secret="wrong-secret"), RejectReason.BAD_SIGNATURE),
        (headers(timestamp=NOW - 301), RejectReason.STALE_TIMESTAMP),
        (headers(timestamp=NOW + 301), RejectReason.FUTURE_TIMESTAMP),
    ],
)
def test_rejections_are_401_with_a_reason(
    overrides: dict[str, str | None], reason: RejectReason
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        verify(**overrides)
    assert caught.value.status_code == 401
    assert caught.value.reason is reason


def test_a_tampered_body_is_rejected() -> None:
    tampered = BODY.replace(b'"3"', b'"4"')
    with pytest.raises(WebhookRejected) as caught:
        verify_mlflow_signature(SECRET, **headers(), raw_body=tampered, now=NOW)
    assert caught.value.reason is RejectReason.BAD_SIGNATURE


def test_timestamps_within_the_window_are_accepted() -> None:
    verify(**headers(timestamp=NOW - 299))
    verify(**headers(timestamp=NOW + 299))


def test_any_of_several_signatures_may_match() -> None:
    good = headers()["signature_header"]
    verify(signature_header=f"v1,AAAA {good}")


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        verify_mlflow_signature("", **headers(), raw_body=BODY, now=NOW)


def test_parse_alias_created() -> None:
    event = parse_alias_event(BODY)
    assert isinstance(event, AliasEvent)
    assert (event.event, event.model_name, event.alias, event.data.version) == (
        "model_version_alias.created",
        "iris",
        "champion",
        "3",
    )


def test_parse_alias_deleted_has_no_version() -> None:
    body = {
        "entity": "model_version_alias",
        "action": "deleted",
        "timestamp": "2025-10-09T08:53:20+00:00",
        "data": {"name": "iris", "alias": "champion"},
        "workspace": "default",
    }
    event = parse_alias_event(json.dumps(body).encode())
    assert event is not None
    assert event.action == "deleted"
    assert event.data.version is None


@pytest.mark.parametrize(
    "body",
    [
        {"entity": "model_version", "action": "created", "timestamp": "x", "data": {}},
        {"entity": "registered_model", "action": "created", "timestamp": "x", "data": {}},
        {"entity": "model_version_alias", "action": "updated", "timestamp": "x", "data": {}},
    ],
)
def test_other_events_are_ignored(body: dict[str, object]) -> None:
    assert parse_alias_event(json.dumps(body).encode()) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"data": {}}',
        b'{"entity": "model_version_alias", "action": "created", "data": {"name": "x"}}',
        b'{"entity": "model_version_alias", "action": "deleted", "timestamp": "t", "data": {}}',
    ],
)
def test_malformed_bodies_are_400(raw: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_alias_event(raw)
    assert caught.value.status_code == 400
    assert caught.value.reason is RejectReason.MALFORMED_BODY


# --- a real MLflow server delivering to a real HTTP receiver -------------------------


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    received_at: float


class Receiver:
    """A loopback HTTP server that records every POST, byte for byte."""

    def __init__(self) -> None:
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        deliveries = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                deliveries.put(Delivery(dict(self.headers.items()), body, time.time()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/mlflow"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, model: str, alias: str, action: str, timeout: float = 15.0) -> Delivery:
        """The first delivery for this model/alias/action; others' events are skipped."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                delivery = self.deliveries.get(timeout=remaining)
            except queue.Empty:
                break
            payload = json.loads(delivery.body)
            data = payload.get("data", {})
            if (data.get("name"), data.get("alias"), payload.get("action")) == (
                model,
                alias,
                action,
            ):
                return delivery
        raise AssertionError(f"no {action} delivery for {model}@{alias} within {timeout}s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def webhook_name(mlflow_client: MlflowClient) -> Iterator[str]:
    """A unique webhook name, deleted afterwards so it never fires into later tests."""
    name = f"aliasflow-test-{uuid.uuid4().hex[:8]}"
    yield name
    for hook in mlflow_client.list_webhooks(max_results=100):
        if hook.name == name:
            mlflow_client.delete_webhook(hook.webhook_id)


def test_real_mlflow_delivery_verifies_and_parses(
    tracking_uri: str,
    unique_model_name: str,
    make_versions: Callable[[str, int], list[str]],
    receiver: Receiver,
    webhook_name: str,
) -> None:
    make_versions(unique_model_name, 2)
    ensure_webhook(tracking_uri, receiver.url, SECRET, name=webhook_name)
    # MLFLOW_WEBHOOK_CACHE_TTL is 1 s in the test server: let a stale, empty cache expire.
    time.sleep(1.2)
    registry = MlflowRegistry(tracking_uri)

    registry.set_alias(unique_model_name, "champion", "2")
    created = receiver.wait_for(unique_model_name, "champion", "created")
    lowered = {key.lower(): value for key, value in created.headers.items()}
    print("real MLflow delivery headers:", created.headers)
    print("real MLflow delivery body:", created.body.decode())

    assert lowered["content-type"] == "application/json"
    assert lowered["x-mlflow-signature"].startswith("v1,")
    verify_mlflow_signature(
        SECRET,
        lowered["x-mlflow-delivery-id"],
        lowered["x-mlflow-timestamp"],
        created.body,
        lowered["x-mlflow-signature"],
        now=time.time(),
    )
    event = parse_alias_event(created.body)
    assert event is not None
    assert (event.event, event.model_name, event.alias, event.data.version) == (
        "model_version_alias.created",
        unique_model_name,
        "champion",
        "2",
    )

    # The real delivery is rejected under a wrong secret, later than 5 min, or forged.
    for secret, now in (("wrong-secret", time.time()), (SECRET, time.time() + 301)):
        with pytest.raises(WebhookRejected) as caught:
            verify_mlflow_signature(
                secret,
                lowered["x-mlflow-delivery-id"],
                lowered["x-mlflow-timestamp"],
                created.body,
                lowered["x-mlflow-signature"],
                now=now,
            )
        assert caught.value.status_code == 401
    with pytest.raises(WebhookRejected):
        verify_mlflow_signature(
            SECRET,
            lowered["x-mlflow-delivery-id"],
            lowered["x-mlflow-timestamp"],
            created.body.replace(b'"2"', b'"1"'),
            lowered["x-mlflow-signature"],
            now=time.time(),
        )

    MlflowClient(tracking_uri).delete_registered_model_alias(unique_model_name, "champion")
    deleted = receiver.wait_for(unique_model_name, "champion", "deleted")
    event = parse_alias_event(deleted.body)
    assert event is not None
    assert (event.action, event.data.version) == ("deleted", None)


def test_ensure_webhook_is_idempotent(
    tracking_uri: str, mlflow_client: MlflowClient, receiver: Receiver, webhook_name: str
) -> None:
    first = ensure_webhook(tracking_uri, receiver.url, SECRET, name=webhook_name)
    mlflow_client.update_webhook(first, status="DISABLED", events=["model_version.created"])
    moved_url = receiver.url.replace("/webhooks/mlflow", "/hooks/mlflow")
    second = ensure_webhook(tracking_uri, moved_url, "rotated-secret", name=webhook_name)

    assert second == first
    mine = [h for h in mlflow_client.list_webhooks(max_results=100) if h.name == webhook_name]
    assert len(mine) == 1
    hook = mine[0]
    assert hook.url == moved_url
    assert hook.status.is_active()
    assert sorted(str(e) for e in hook.events) == sorted(ALIAS_EVENT_NAMES)
