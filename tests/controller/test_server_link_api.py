"""The link endpoints model servers call, over ASGI with a real Controller.

Every request must be signed with the deployment's own key; the answer is what the
controller last decided for the deployment (or, after a restart, the version its status
records as applied); reports are taken and kept. Bad input is a clear 4xx, never a 500.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.core.serverkeys import deployment_key, signature
from controller.reconcile.analysis import parse_server_metrics
from controller.registry.memory import MemoryRegistry
from controller.runtimes.link import AppliedTraffic, DesiredModel, LinkTraffic, RoleModel
from controller.runtimes.memory import MemoryRuntime
from controller.service.controller import Controller
from controller.service.settings import ControllerSettings
from tests.manifest_sources import DirectorySource

SECRET = "controller-admin-secret"
MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {name: iris}
spec:
  model: {name: iris-classifier, alias: champion}
"""


NO_SPLIT = {"canary": None, "shadow": None}


def answer(version: str, traffic: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "model_uri": f"models:/iris-classifier/{version}",
        "version": version,
        "traffic": traffic or NO_SPLIT,
    }


@dataclass
class Link:
    client: TestClient
    controller: Controller

    def signed(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        *,
        deployment: str = "iris",
        key: str | None = None,
        stamp: int | None = None,
    ) -> dict[str, str]:
        key = key or deployment_key(SECRET, deployment)
        when = str(stamp if stamp is not None else int(time.time()))
        return {
            "X-Aliasflow-Timestamp": when,
            "X-Aliasflow-Signature": signature(key, when, method, target, body),
        }

    def ask(
        self, target: str = "/api/servers/iris/model", **kwargs: object
    ) -> tuple[int, dict[str, str]]:
        response = self.client.get(target, headers=self.signed("GET", target, **kwargs))  # type: ignore[arg-type]
        return response.status_code, response.json()

    def report(self, body: bytes, deployment: str = "iris") -> int:
        target = f"/api/servers/{deployment}/report"
        headers = self.signed("POST", target, body, deployment=deployment)
        status: int = self.client.post(target, content=body, headers=headers).status_code
        return status


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "iris.yaml").write_text(MANIFEST)
    settings = ControllerSettings(
        manifests_dir=manifests,
        data_dir=tmp_path / "data",
        server_admin_token=SECRET,
        poll_interval_seconds=3600,
    )
    registry = MemoryRegistry()
    registry.add_version("iris-classifier", "1")
    # No alias yet: the first poll decides nothing, so the link has nothing to answer.
    controller = Controller(
        settings,
        registry=registry,
        runtimes={"local": MemoryRuntime()},
        source=DirectorySource(manifests),
    )
    with TestClient(create_app(settings, controller)) as client:
        yield Link(client, controller)


def test_an_unsigned_stale_or_wrongly_keyed_request_is_refused(link: Link) -> None:
    target = "/api/servers/iris/model"
    assert link.client.get(target).status_code == 401
    assert link.ask(stamp=int(time.time()) - 120)[0] == 401
    # Another deployment's key (one leaked key exposes one deployment), the global secret.
    assert link.ask(key=deployment_key(SECRET, "wine"))[0] == 401
    status, body = link.ask(key=SECRET)
    assert status == 401
    assert "key" in body["detail"]
    # A signature over another target (here: another revision) does not carry over.
    headers = link.signed("GET", target)
    assert link.client.get(f"{target}?revision=r2", headers=headers).status_code == 401


def test_before_any_decision_the_server_is_told_to_ask_again_and_unknown_names_are_404(
    link: Link,
) -> None:
    response = link.client.get(
        "/api/servers/iris/model", headers=link.signed("GET", "/api/servers/iris/model")
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert link.ask("/api/servers/wine/model", deployment="wine")[0] == 404


def test_the_answer_is_the_last_decision_and_a_pinned_revision_gets_its_own(link: Link) -> None:
    links = link.controller.links
    links.decide("iris", DesiredModel("models:/iris-classifier/1", "1"))
    links.decide("iris", DesiredModel("models:/iris-classifier/2", "2"), revision="iris--r2")
    assert link.ask() == (200, answer("1"))
    pinned = "/api/servers/iris/model?revision=iris--r2"
    assert link.ask(pinned) == (200, answer("2"))


def test_after_a_restart_the_applied_version_of_the_status_row_is_the_answer(link: Link) -> None:
    link.controller.registry.set_alias("iris-classifier", "champion", "1")
    link.controller.sync("iris")
    assert link.controller.queue.wait_idle(timeout=10)
    assert link.controller.links.desired("iris") is None  # the local runtime is not linked
    # No split decided by this process: the servers keep the one they apply.
    assert link.ask() == (200, {**answer("1"), "traffic": None})


def test_reports_are_kept_and_bad_ones_are_refused_with_what_is_wrong(link: Link) -> None:
    body = {"replica": "iris--r1-abc", "served_version": "1", "ready": True, "revision": "iris--r1"}
    assert link.report(json.dumps(body).encode()) == 204
    (kept,) = link.controller.links.reports("iris").values()
    assert (kept.replica, kept.served_version, kept.ready) == ("iris--r1-abc", "1", True)
    missing = json.dumps({"served_version": "1"}).encode()
    target = "/api/servers/iris/report"
    response = link.client.post(
        target, content=missing, headers=link.signed("POST", target, missing)
    )
    assert response.status_code == 422
    assert "replica" in response.json()["detail"]
    assert link.report(b"not json") == 422
    assert link.report(b"{}", deployment="wine") == 404
    big = json.dumps({**body, "detail": "x" * 200_000}).encode()
    assert link.report(big) == 413
    # A report signed for one body does not carry another.
    headers = link.signed("POST", target, json.dumps(body).encode())
    other = json.dumps({**body, "served_version": "9"}).encode()
    assert link.client.post(target, content=other, headers=headers).status_code == 401


def test_the_answer_carries_the_split_every_replica_applies(link: Link) -> None:
    links = link.controller.links
    links.decide("iris", DesiredModel("models:/iris-classifier/1", "1"))
    links.decide_traffic(
        "iris",
        LinkTraffic(
            RoleModel("models:/iris-classifier/2", "2", 20),
            RoleModel("models:/iris-classifier/3", "3", 50),
        ),
    )
    split = {
        "canary": {"model_uri": "models:/iris-classifier/2", "version": "2", "weight": 20},
        "shadow": {"model_uri": "models:/iris-classifier/3", "version": "3", "percent": 50},
    }
    assert link.ask() == (200, answer("1", split))
    links.decide("iris", DesiredModel("models:/iris-classifier/2", "2"))  # promoted
    assert link.ask() == (200, answer("2", {**split, "canary": None}))


COUNTERS = (
    'aliasflow_server_prediction_requests_total{outcome="ok",role="canary",version="2"} 7.0\n'
    'aliasflow_server_prediction_requests_total{outcome="ok",role="primary",version="1"} 30.0\n'
)


def test_a_report_brings_the_split_applied_and_the_counters_summed(link: Link) -> None:
    body = {
        "replica": "iris--r1-abc",
        "served_version": "1",
        "ready": True,
        "traffic": {"canary": {"version": "2", "weight": 20}, "shadow": None},
        "metrics": COUNTERS,
    }
    assert link.report(json.dumps(body).encode()) == 204
    other = {**body, "replica": "iris--r1-def"}
    assert link.report(json.dumps(other).encode()) == 204
    kept = link.controller.links.reports("iris")["iris--r1-abc"]
    assert kept.traffic == AppliedTraffic("2", 20, None, 0)
    summed = parse_server_metrics(link.controller.links.metrics("iris") or "")
    assert summed[("2", "canary")].ok == 14
    assert summed[("1", "primary")].ok == 60


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"traffic": {"canary": {"version": "2", "weight": 120}}}, "traffic.canary.weight"),
        ({"traffic": {"canary": {"version": "2"}}}, "traffic.canary.weight"),
        ({"traffic": {"split": 3}}, "traffic.split"),
        ({"traffic": "all"}, "traffic"),
        ({"metrics": 3}, "metrics"),
        ({"metrics": "aliasflow_server_prediction_requests_total{x=} y"}, "not Prometheus text"),
        ({"metrics": 'aliasflow_server_prediction_requests_total{role="p"} -1\n'}, "not a count"),
        ({"metrics": "x" * 140_000}, "metrics: String should have at most 131072"),
    ],
)
def test_a_bad_report_is_a_422_that_says_what_is_wrong_and_nothing_is_kept(
    link: Link, change: dict[str, object], said: str
) -> None:
    body = json.dumps({"replica": "iris--r1-abc", "ready": True, **change}).encode()
    target = "/api/servers/iris/report"
    response = link.client.post(target, content=body, headers=link.signed("POST", target, body))
    assert response.status_code == 422, response.text
    assert said in response.json()["detail"]
    assert link.controller.links.reports("iris") == {}
    assert link.controller.links.metrics("iris") is None


def test_a_report_larger_than_any_a_server_sends_is_refused_before_it_is_read(link: Link) -> None:
    body = json.dumps({"replica": "r", "ready": True, "metrics": "x" * 400_000}).encode()
    assert link.report(body) == 413
