"""Webhook abuse against a real controller socket: a flood of valid deliveries, huge bodies.

Forged signatures, replayed ids, stale timestamps, malformed JSON and unknown events are
covered over ASGI in tests/controller/test_api.py; here the controller runs on real
uvicorn with a real model server, so the flood's coalescing is measured end to end and
the body limit is checked on the wire (a declared or a chunked 10 MB body is refused
before the controller has read it).
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from controller.registry.webhook import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_mlflow_payload,
)
from tests.e2e.harness import RunningController, serving, start_controller
from tests.fixtures_models import IrisModels
from tests.reliability.controller_faults import (
    controller_settings,
    predict_version,
    serve_pids_for,
    write_manifest,
)

NAME = "iris-flood"
SECRET = "flood-secret"
FLOOD = 1000
MAX_BYTES = 1_000_000


@dataclass
class Flooded:
    running: RunningController
    models: IrisModels
    alias: str
    data_dir: Path


@pytest.fixture
def flooded(iris_models: IrisModels, tmp_path: Path) -> Iterator[Flooded]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    alias = f"flood{uuid.uuid4().hex[:8]}"
    write_manifest(manifests, NAME, iris_models.name, alias)
    MlflowClient(iris_models.tracking_uri).set_registered_model_alias(iris_models.name, alias, "1")
    data_dir = tmp_path / "data"
    # The first poll deploys v1; after that only webhooks trigger reconciles.
    settings = controller_settings(
        manifests,
        data_dir,
        iris_models.tracking_uri,
        poll_interval_seconds=600,
        webhook_secret=SECRET,
        webhook_max_bytes=MAX_BYTES,
    )
    running = start_controller(settings)
    try:
        running.wait_for(NAME, serving("1"))
        assert running.controller.queue.wait_idle(30)
        yield Flooded(running, iris_models, alias, data_dir)
    finally:
        running.stop()
        from aliasflow_cli.stack import stop_model_servers_in

        stop_model_servers_in(data_dir)


def _delivery(model: str, alias: str, version: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": {"name": model, "alias": alias, "version": version},
        }
    ).encode()
    delivery_id = uuid.uuid4().hex
    stamp = str(int(time.time()))
    headers = {
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign_mlflow_payload(SECRET, delivery_id, stamp, body),
        "Content-Type": "application/json",
    }
    return body, headers


def test_a_thousand_deliveries_for_one_alias_cost_at_most_two_reconciles(
    flooded: Flooded,
) -> None:
    running = flooded.running
    queue = running.controller.queue
    runs_before = queue.runs.get(NAME, 0)
    rows_before = len(running.history(NAME))
    endpoint = running.deployment(NAME)["endpoint"]
    MlflowClient(flooded.models.tracking_uri).set_registered_model_alias(
        flooded.models.name, flooded.alias, "2"
    )
    deliveries = [_delivery(flooded.models.name, flooded.alias, "2") for _ in range(FLOOD)]

    def send(chunk: list[tuple[bytes, dict[str, str]]]) -> list[str]:
        statuses = []
        with httpx.Client(trust_env=False, timeout=30) as http:
            for body, headers in chunk:
                response = http.post(
                    f"{running.url}/webhooks/mlflow", content=body, headers=headers
                )
                statuses.append(f"{response.status_code} {response.json()['status']}")
        return statuses

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        chunks = pool.map(send, [deliveries[i::8] for i in range(8)])
        results = [status for chunk in chunks for status in chunk]
    flood_seconds = time.monotonic() - started
    assert results == ["202 accepted"] * FLOOD

    assert queue.wait_idle(60)
    runs = queue.runs[NAME] - runs_before
    assert 1 <= runs <= 2, f"{FLOOD} deliveries in {flood_seconds:.1f}s cost {runs} reconciles"
    history = running.history(NAME)
    assert len(history) - rows_before == 1, history[:3]
    assert (history[0]["action"], history[0]["trigger"], history[0]["result"]) == (
        "hotswap",
        "webhook",
        "Succeeded",
    )
    assert running.deployment(NAME)["served_version"] == "2"
    assert predict_version(endpoint) == "2"
    assert len(serve_pids_for(flooded.data_dir, NAME)) == 1


def _raw_post(url: str, head: list[str], body_parts: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request head and as much of the body as the server takes; return its answer.

    Returns (first response bytes, body bytes sent). A server that insisted on reading
    the whole body would never answer while we hold the rest back.
    """
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:
                break  # the server answered and closed: it stopped reading
            sent += len(part)
        return sock.recv(4096), sent


def test_ten_megabyte_bodies_are_refused_without_being_read(flooded: Flooded) -> None:
    url = flooded.running.url
    _, headers = _delivery(flooded.models.name, flooded.alias, "1")
    signed = [f"{k}: {v}" for k, v in headers.items()]
    ten_mb = 10 * 1024 * 1024

    # Declared length: refused from the headers alone; none of the body is ever sent.
    head = ["POST /webhooks/mlflow HTTP/1.1", f"Host: {url[7:]}", f"Content-Length: {ten_mb}"]
    answer, sent = _raw_post(url, head + signed, iter(()))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent == 0

    # Chunked, no length: refused once the limit is passed, long before 10 MB are sent.
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    parts = iter([framed] * (MAX_BYTES // len(chunk) + 2))
    head = ["POST /webhooks/mlflow HTTP/1.1", f"Host: {url[7:]}", "Transfer-Encoding: chunked"]
    answer, sent = _raw_post(url, head + signed, parts)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < ten_mb // 4

    # And the whole 10 MB through an ordinary client: 413, the controller unharmed.
    response = httpx.post(
        f"{url}/webhooks/mlflow",
        content=b"{" + b" " * ten_mb + b"}",
        headers=headers,
        trust_env=False,
        timeout=30,
    )
    assert response.status_code == 413
    assert flooded.running.deployment(NAME)["served_version"] == "1"
    metrics = httpx.get(f"{url}/metrics", trust_env=False).text
    assert 'outcome="too_large"' in metrics
