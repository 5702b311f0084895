"""The controller's HTTP surface over ASGI, with our in-memory registry and runtime.

Auth rules for every endpoint, and the MLflow webhook receiver's answers to forged,
replayed, stale, oversized and malformed deliveries.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.manifests.git_webhook import sign_github_payload
from controller.registry.memory import MemoryRegistry
from controller.registry.webhook import sign_mlflow_payload
from controller.runtimes.memory import MemoryRuntime
from controller.service.controller import Controller
from controller.service.settings import ControllerSettings
from tests.manifest_sources import DirectorySource

API_TOKEN = "api-token-123"
WEBHOOK_SECRET = "webhook-secret-456"
MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {name: iris-prod}
spec:
  model: {name: iris, alias: champion}
  secretEnv:
    MLFLOW_TRACKING_TOKEN: {fromEnv: ALIASFLOW_TEST_SECRET}
"""


class Harness:
    def __init__(
        self,
        client: TestClient,
        controller: Controller,
        registry: MemoryRegistry,
        runtime: MemoryRuntime,
    ) -> None:
        self.client = client
        self.controller = controller
        self.registry = registry
        self.runtime = runtime

    def settle(self) -> None:
        assert self.controller.queue.wait_idle(timeout=10)

    def deliver(
        self,
        body: bytes,
        *,
        delivery_id: str | None = None,
        timestamp: int | None = None,
        secret: str = WEBHOOK_SECRET,
        signature: str | None = None,
    ) -> tuple[int, dict[str, object]]:
        delivery_id = delivery_id or uuid.uuid4().hex
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        headers = {
            "X-MLflow-Delivery-Id": delivery_id,
            "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": signature
            or sign_mlflow_payload(secret, delivery_id, stamp, body),
            "Content-Type": "application/json",
        }
        response = self.client.post("/webhooks/mlflow", content=body, headers=headers)
        return response.status_code, response.json()


def alias_event(version: str = "2") -> bytes:
    return json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "timestamp": "2026-11-26T10:00:00Z",
            "data": {"name": "iris", "alias": "champion", "version": version},
        }
    ).encode()


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("ALIASFLOW_TEST_SECRET", "s3cr3t-value")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "iris.yaml").write_text(MANIFEST)
    settings = ControllerSettings(
        manifests_dir=manifests,
        data_dir=tmp_path / "data",
        api_token=API_TOKEN,
        webhook_secret=WEBHOOK_SECRET,
        git_webhook_secret="git-secret",
        poll_interval_seconds=3600,
        webhook_max_bytes=64 * 1024,
    )
    registry = MemoryRegistry()
    for version in ("1", "2"):
        registry.add_version("iris", version)
    registry.set_alias("iris", "champion", "1")
    runtime = MemoryRuntime()
    controller = Controller(
        settings,
        registry=registry,
        runtimes={"local": runtime},
        source=DirectorySource(manifests, "abc123"),
    )
    controller.reconciler.health_poll_interval = 0.01
    with TestClient(create_app(settings, controller)) as client:
        harness = Harness(client, controller, registry, runtime)
        deadline = time.monotonic() + 10
        while "iris-prod" not in runtime.workloads and time.monotonic() < deadline:
            time.sleep(0.05)
        harness.settle()
        yield harness


def test_start_up_poll_deploys_and_api_reports_it(harness: Harness) -> None:
    rows = harness.client.get("/api/deployments").json()
    assert [(r["name"], r["sync"], r["health"], r["served_version"]) for r in rows] == [
        ("iris-prod", "Synced", "Healthy", "1")
    ]
    assert rows[0]["last_sync"]["trigger"] == "poll"
    detail = harness.client.get("/api/deployments/iris-prod").json()
    assert detail["manifest"]["spec"]["secretEnv"] == {
        "MLFLOW_TRACKING_TOKEN": {"fromEnv": "ALIASFLOW_TEST_SECRET"}
    }
    history = harness.client.get("/api/deployments/iris-prod/history").json()
    assert history[0]["action"] == "create"
    assert history[0]["manifest_revision"] == "abc123"
    assert harness.client.get("/api/deployments/nope").status_code == 404


def test_reason_is_a_field_of_status_history_and_metrics(harness: Harness) -> None:
    detail = harness.client.get("/api/deployments/iris-prod").json()
    assert detail["reason"] == "ReconciliationSucceeded"
    history = harness.client.get("/api/deployments/iris-prod/history").json()
    assert history[0]["reason"] == "ReconciliationSucceeded"
    harness.registry.aliases["iris"].pop("champion")
    harness.controller.sync("iris-prod")
    harness.settle()
    detail = harness.client.get("/api/deployments/iris-prod").json()
    assert (detail["reason"], detail["health"]) == ("AliasMissing", "Degraded")
    assert detail["message"].startswith("AliasMissing: alias 'champion'")
    metrics = harness.client.get("/metrics").text
    assert 'aliasflow_deployment_reason{deployment="iris-prod",reason="AliasMissing"} 1.0' in (
        metrics
    )
    assert 'reason="ReconciliationSucceeded"} 1.0' not in metrics.split("deployment_reason")[-1]


def test_status_table_shows_the_reason_once() -> None:
    from aliasflow_cli.controller_commands import format_status_table

    row = {
        "name": "iris-prod",
        "sync": "OutOfSync",
        "health": "Degraded",
        "reason": "AliasMissing",
        "alias": "champion",
        "model_name": "iris",
        "message": "AliasMissing: alias 'champion' of model 'iris' is not set",
    }
    header, line = format_status_table([row]).splitlines()
    assert header.split()[:4] == ["NAME", "SYNC", "HEALTH", "REASON"]
    assert line.split()[:4] == ["iris-prod", "OutOfSync", "Degraded", "AliasMissing"]
    assert line.count("AliasMissing") == 1


def test_secret_values_never_reach_the_api(harness: Harness) -> None:
    for path in (
        "/api/deployments",
        "/api/deployments/iris-prod",
        "/api/deployments/iris-prod/history",
        "/api/controller",
        "/metrics",
    ):
        assert "s3cr3t-value" not in harness.client.get(path).text, path


def test_signed_alias_webhook_triggers_a_hotswap(harness: Harness) -> None:
    harness.registry.set_alias("iris", "champion", "2")
    status, body = harness.deliver(alias_event("2"))
    assert status == 202
    assert body == {"status": "accepted", "deployments": ["iris-prod"], "detail": ""}
    harness.settle()
    assert harness.runtime.workloads["iris-prod"].served_version == "2"
    metrics = harness.client.get("/metrics").text
    assert 'aliasflow_webhook_deliveries_total{outcome="accepted",source="mlflow"} 1.0' in metrics
    assert "aliasflow_alias_to_serving_seconds_count" in metrics


def test_webhook_payload_version_is_not_trusted(harness: Harness) -> None:
    status, _ = harness.deliver(alias_event("2"))  # alias still on 1 in the registry
    assert status == 202
    harness.settle()
    assert harness.runtime.workloads["iris-prod"].served_version == "1"


@pytest.mark.parametrize(
    ("kwargs", "expected_status", "detail"),
    [
        ({"secret": "wrong"}, 401, "signature does not match"),
        ({"signature": "v1,AAAA"}, 401, "signature does not match"),
        ({"signature": "garbage"}, 401, "has no v1 signature"),
        ({"timestamp": int(time.time()) - 301}, 401, "old"),
    ],
)
def test_forged_or_stale_deliveries_are_refused(
    harness: Harness, kwargs: dict[str, object], expected_status: int, detail: str
) -> None:
    status, body = harness.deliver(alias_event(), **kwargs)  # type: ignore[arg-type]
    assert status == expected_status
    assert detail in str(body["detail"])


def test_missing_signature_headers_are_401(harness: Harness) -> None:
    response = harness.client.post("/webhooks/mlflow", content=alias_event())
    assert response.status_code == 401


def test_replayed_delivery_is_ignored(harness: Harness) -> None:
    first = harness.deliver(alias_event(), delivery_id="same-id")
    second = harness.deliver(alias_event(), delivery_id="same-id")
    assert first[0] == second[0] == 202
    assert second[1]["status"] == "duplicate"


def test_malformed_json_is_400_and_unknown_events_are_202(harness: Harness) -> None:
    assert harness.deliver(b"{not json")[0] == 400
    status, body = harness.deliver(b'{"entity": "model_version", "action": "created"}')
    assert (status, body["status"]) == (202, "ignored")


def test_oversized_body_is_413(harness: Harness) -> None:
    assert harness.deliver(b"x" * (65 * 1024))[0] == 413


def test_git_webhook_signature(harness: Harness) -> None:
    body = json.dumps(
        {"ref": "refs/heads/main", "after": "abc", "repository": {"full_name": "o/r"}}
    ).encode()
    bad = harness.client.post(
        "/webhooks/git", content=body, headers={"X-Hub-Signature-256": "sha256=00"}
    )
    assert bad.status_code == 401
    good = harness.client.post(
        "/webhooks/git",
        content=body,
        headers={
            "X-Hub-Signature-256": sign_github_payload("git-secret", body),
            "X-GitHub-Event": "push",
        },
    )
    assert good.status_code == 202


@pytest.mark.parametrize("path", ["/api/sync", "/api/deployments/iris-prod/sync"])
def test_sync_endpoints_need_the_bearer_token(harness: Harness, path: str) -> None:
    assert harness.client.post(path).status_code == 401
    wrong = harness.client.post(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    good = harness.client.post(path, headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert good.status_code == 202
    assert good.json() == {"accepted": ["iris-prod"]}
    harness.settle()
    history = harness.client.get("/api/deployments/iris-prod/history").json()
    # In sync already: a sync that changes nothing adds no history row.
    assert [row["trigger"] for row in history if row["trigger"] == "manual"] == []


def test_sync_of_unknown_deployment_is_404(harness: Harness) -> None:
    response = harness.client.post(
        "/api/deployments/nope/sync", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert response.status_code == 404


def test_without_a_configured_token_state_changes_are_disabled(tmp_path: Path) -> None:
    settings = ControllerSettings(
        manifests_dir=tmp_path, data_dir=tmp_path / "d", poll_interval_seconds=3600
    )
    controller = Controller(
        settings,
        registry=MemoryRegistry(),
        runtimes={"local": MemoryRuntime()},
        source=DirectorySource(tmp_path, "abc123"),
    )
    with TestClient(create_app(settings, controller)) as client:
        response = client.post("/api/sync", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 403
        assert "ALIASFLOW_API_TOKEN" in response.json()["detail"]
        assert client.post("/webhooks/mlflow", content=b"{}").status_code == 403
        assert client.get("/healthz").json() == {"status": "ok"}


def test_dashboard_auth_protects_reads(tmp_path: Path) -> None:
    settings = ControllerSettings(
        manifests_dir=tmp_path,
        data_dir=tmp_path / "d",
        poll_interval_seconds=3600,
        api_token=API_TOKEN,
        dashboard_auth=True,
    )
    controller = Controller(
        settings,
        registry=MemoryRegistry(),
        runtimes={"local": MemoryRuntime()},
        source=DirectorySource(tmp_path, "abc123"),
    )
    with TestClient(create_app(settings, controller)) as client:
        assert client.get("/api/deployments").status_code == 401
        authorized = {"Authorization": f"Bearer {API_TOKEN}"}
        assert client.get("/api/deployments", headers=authorized).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_delivery_ids_are_forgotten_after_the_replay_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood for longer than the signature window leaves a bounded table: ids older
    than the window are deleted on a schedule (a replay of them is refused as stale)."""
    window = 2
    monkeypatch.setenv("ALIASFLOW_TEST_SECRET", "s3cr3t-value")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    settings = ControllerSettings(
        manifests_dir=manifests,
        data_dir=tmp_path / "data",
        webhook_secret=WEBHOOK_SECRET,
        webhook_max_age_seconds=window,
        poll_interval_seconds=3600,
        allow_empty=True,
    )
    controller = Controller(
        settings,
        registry=MemoryRegistry(),
        runtimes={"local": MemoryRuntime()},
        source=DirectorySource(manifests),
    )
    with TestClient(create_app(settings, controller)) as client:
        harness = Harness(client, controller, MemoryRegistry(), MemoryRuntime())
        sizes = []
        started = time.monotonic()
        while time.monotonic() - started < 3 * window:
            for _ in range(20):
                assert harness.deliver(alias_event())[0] == 202
            sizes.append(sum(controller.delivery_counts().values()))
            time.sleep(0.1)
        delivered = 20 * len(sizes)
        # Kept: at most the last window plus one cleanup interval of deliveries.
        per_second = delivered / (3 * window)
        assert max(sizes) <= per_second * (window + window / 2 + 1) + 20
        assert sizes[-1] < delivered


def test_detail_shows_the_watch_live_traffic_and_quarantined_versions(harness: Harness) -> None:
    import itertools

    from controller.core.records import Bake
    from controller.service.traffic import TrafficSampler

    counts = itertools.count(start=100, step=50)

    def metrics(_endpoint: str) -> str:
        total = next(counts)
        return (
            'aliasflow_server_prediction_requests_total{version="1",role="primary",'
            f'outcome="ok"}} {total}\n'
            'aliasflow_server_prediction_latency_seconds_bucket{version="1",role="primary",'
            f'le="0.01"}} {total}\n'
            'aliasflow_server_prediction_latency_seconds_bucket{version="1",role="primary",'
            f'le="+Inf"}} {total}\n'
        )

    clock = itertools.count(start=0.0, step=2.0)
    harness.controller.sampler = TrafficSampler(read=metrics, clock=lambda: next(clock))
    harness.controller.store.put_bake(
        Bake("iris-prod", "iris", "champion", "1", "2", 10.0, 70.0, message="watching")
    )
    harness.registry.set_version_tag("iris", "2", "aliasflow.quarantined", "p99 900 ms > 250 ms")
    harness.client.get("/api/deployments/iris-prod")
    detail = harness.client.get("/api/deployments/iris-prod").json()
    assert detail["bake"]["state"] == "Baking"
    assert (detail["bake"]["from_version"], detail["bake"]["to_version"]) == ("1", "2")
    (traffic,) = detail["traffic"]
    assert (traffic["version"], traffic["role"]) == ("1", "primary")
    assert traffic["requests_per_second"] == 25.0
    assert traffic["error_rate"] == 0.0
    assert detail["quarantined"] == {"2": "p99 900 ms > 250 ms"}
    page = harness.client.get("/deployments/iris-prod").text
    assert 'data-bake-state="Baking"' in page
    assert 'class="sparkline"' in page or "25.0" in page
    assert "aliasflow unquarantine iris 2" in page


def test_steering_a_canary_needs_the_token_and_a_canary(harness: Harness) -> None:
    path = "/api/deployments/iris-prod/canary"
    assert harness.client.post(path, json={"action": "advance"}).status_code == 401
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    refused = harness.client.post(path, json={"action": "advance"}, headers=headers)
    assert refused.status_code == 409
    assert "no canary under way" in refused.json()["detail"]
    bad = harness.client.post(path, json={"action": "faster"}, headers=headers)
    assert bad.status_code == 422
