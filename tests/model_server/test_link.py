"""The model server's link to the controller: real `aliasflow serve` processes asking a
stub controller (a real uvicorn app) that checks every signature with the controller's
own verifier (controller/core/serverkeys.py), so both sides of the contract stay in step.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.core import serverkeys
from controller.reconcile.analysis import VersionStats, parse_server_metrics
from controller.runtimes.counters import parse_counters
from controller.runtimes.netutil import free_port, stop_process
from model_server.errors import ModelLoadError
from model_server.link import (
    Applied,
    ControllerLink,
    LinkSettings,
    LinkSettingsError,
    NoSplit,
    Role,
    Split,
    controller_link,
    reported_counters,
    signature,
)
from model_server.settings import ServerSettings
from tests.fixtures_models import IrisModels
from tests.model_server.conftest import start_server

KEY = "iris-deployment-key"


@dataclass
class StubController:
    url: str
    #: What GET .../model answers: a version of the iris model, a URI, or an HTTP status.
    answer: str | int = 404
    #: The answer's `traffic`, when it has one.
    traffic: dict[str, Any] | None = None
    asks: list[str] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def wait_report(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for report in list(self.reports):
                if check(report):
                    return report
            time.sleep(0.05)
        raise AssertionError(f"no such report; got {self.reports[-3:]}")


@pytest.fixture
def controller() -> Iterator[StubController]:
    port = free_port()
    stub = StubController(f"http://127.0.0.1:{port}")

    def verified(request: Request, body: bytes) -> bool:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        refusal = serverkeys.check_signature(
            KEY,
            request.headers.get(serverkeys.TIMESTAMP_HEADER),
            request.headers.get(serverkeys.SIGNATURE_HEADER),
            request.method,
            target,
            body,
        )
        if refusal is not None:
            stub.refused.append(f"{request.method} {target}: {refusal}")
        return refusal is None

    async def model(request: Request) -> Response:
        if not verified(request, await request.body()):
            return JSONResponse({"detail": "bad signature"}, 401)
        stub.asks.append(str(request.url.query))
        if isinstance(stub.answer, int):
            return JSONResponse({"detail": "no"}, stub.answer)
        uri = stub.answer
        body: dict[str, Any] = {"model_uri": uri, "version": uri.rsplit("/", 1)[-1]}
        if stub.traffic is not None:
            body["traffic"] = stub.traffic
        return JSONResponse(body)

    async def report(request: Request) -> Response:
        body = await request.body()
        if not verified(request, body):
            return JSONResponse({"detail": "bad signature"}, 401)
        stub.reports.append(await request.json())
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route("/api/servers/iris/model", model),
            Route("/api/servers/iris/report", report, methods=["POST"]),
        ]
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield stub
    server.should_exit = True
    thread.join(timeout=5)


def linked_env(models: IrisModels, controller: StubController) -> dict[str, str]:
    return {
        "MODEL_URI": models.uri(1),
        "MLFLOW_TRACKING_URI": models.tracking_uri,
        "ALIASFLOW_ADMIN_TOKEN": KEY,
        "ALIASFLOW_CONTROLLER_URL": controller.url,
        "ALIASFLOW_DEPLOYMENT": "iris",
        "ALIASFLOW_CONTROLLER_POLL_SECONDS": "0.3",
        "CONTAINER_APP_REPLICA_NAME": "iris--r1-5d4f9c7b8-abcde",
        "CONTAINER_APP_REVISION": "iris--r1",
    }


def served(url: str) -> str:
    return str(httpx.get(f"{url}/readyz", timeout=5).json()["model"]["version"])


def swaps(url: str, result: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    pattern = rf'^aliasflow_server_model_swaps_total{{result="{result}"}} (\S+)$'
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_linked_server_boots_on_the_controllers_answer_then_follows_it(
    iris_models: IrisModels, controller: StubController, tmp_path: Path
) -> None:
    controller.answer = iris_models.uri(2)
    server = start_server(linked_env(iris_models, controller), tmp_path / "server.log")
    try:
        # Booted on version 2 straight away: no swap, MODEL_URI (version 1) never loaded.
        assert served(server.url) == "2"
        assert swaps(server.url, "swapped") == 0
        assert controller.asks[0] == "revision=iris--r1"
        first = controller.wait_report(lambda r: r["served_version"] == "2")
        assert {k: v for k, v in first.items() if k not in ("traffic", "metrics")} == {
            "replica": "iris--r1-5d4f9c7b8-abcde",
            "served_version": "2",
            "ready": True,
            "revision": "iris--r1",
            "detail": None,
        }
        assert first["traffic"] == {"canary": None, "shadow": None}
        # Its counters, as the controller takes them (only the families it reads).
        assert isinstance(first["metrics"], str)
        parse_counters(first["metrics"])
        assert "aliasflow_server_requests_total" not in first["metrics"]
        # The controller decides version 1: the server swaps itself within a poll.
        controller.answer = iris_models.uri(1)
        controller.wait_report(lambda r: r["served_version"] == "1", timeout=60)
        assert served(server.url) == "1"
        assert swaps(server.url, "swapped") == 1
        # Another registered model: refused before anything is downloaded.
        controller.answer = iris_models.unloadable
        refused = controller.wait_report(lambda r: "not a version" in (r["detail"] or ""))
        assert refused["served_version"] == "1"
        # A version of its own model that does not load: still version 1, said why,
        # and not reloaded on every poll.
        controller.answer = f"models:/{iris_models.name}/99"
        failed = controller.wait_report(lambda r: "/99" in (r["detail"] or ""))
        assert failed["served_version"] == "1"
        asked = len(controller.asks)
        while len(controller.asks) < asked + 5:
            time.sleep(0.1)
        assert server.output().count(f"models:/{iris_models.name}/99: swapping") == 1
        assert served(server.url) == "1"
    finally:
        stop_process(server.process)
    assert controller.refused == []


def test_a_server_the_controller_refuses_boots_on_model_uri_and_follows_once_told(
    iris_models: IrisModels, controller: StubController, tmp_path: Path
) -> None:
    controller.answer = 404  # the controller does not know the deployment (yet)
    server = start_server(linked_env(iris_models, controller), tmp_path / "server.log")
    try:
        assert served(server.url) == "1"
        assert len(controller.asks) >= 1
        controller.answer = iris_models.uri(2)
        controller.wait_report(lambda r: r["served_version"] == "2", timeout=60)
        assert served(server.url) == "2"
    finally:
        stop_process(server.process)


def test_a_controller_that_does_not_answer_costs_at_most_the_boot_budget() -> None:
    """Nothing listens at the address: the boot asks again until 0.5 s are spent."""
    settings = ServerSettings(model_uri="models:/iris/1", admin_token=SecretStr(KEY))
    link = ControllerLink(
        LinkSettings(controller_url=f"http://127.0.0.1:{free_port()}", deployment="iris"),
        "iris",
        SecretStr(KEY),
        settings,
        boot_budget=0.5,
    )
    started = time.monotonic()
    assert asyncio.run(link._ask_within(link.boot_budget)) is None
    assert 0.5 <= time.monotonic() - started < 2.0


@pytest.mark.parametrize("body", [b"", b'{"replica": "r", "ready": true}'])
@pytest.mark.parametrize(
    "target", ["/api/servers/iris/model", "/api/servers/iris/model?revision=r1"]
)
def test_the_server_signs_as_the_controller_verifies(body: bytes, target: str) -> None:
    assert signature(KEY, "1700000000", "post", target, body) == serverkeys.signature(
        KEY, "1700000000", "POST", target, body
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ALIASFLOW_CONTROLLER_URL": "http://c:8000"}, "ALIASFLOW_DEPLOYMENT"),
        (
            {"ALIASFLOW_CONTROLLER_URL": "http://c:8000", "ALIASFLOW_DEPLOYMENT": "iris"},
            "ALIASFLOW_ADMIN_TOKEN",
        ),
        ({"ALIASFLOW_CONTROLLER_URL": "c:8000", "ALIASFLOW_DEPLOYMENT": "iris"}, "http(s) URL"),
        (
            {
                "ALIASFLOW_CONTROLLER_URL": "http://c:8000",
                "ALIASFLOW_DEPLOYMENT": "iris",
                "ALIASFLOW_CONTROLLER_POLL_SECONDS": "often",
            },
            "ALIASFLOW_CONTROLLER_POLL_SECONDS",
        ),
    ],
)
def test_a_link_asked_for_but_not_workable_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name in (
        "ALIASFLOW_ADMIN_TOKEN",
        "ALIASFLOW_DEPLOYMENT",
        "ALIASFLOW_CONTROLLER_POLL_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(LinkSettingsError, match=re.escape(expected)):
        controller_link(ServerSettings(model_uri="models:/iris/1"))


def test_without_a_controller_url_there_is_no_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIASFLOW_CONTROLLER_URL", raising=False)
    assert controller_link(ServerSettings(model_uri="models:/iris/1")) is None


@dataclass
class FakeModel:
    model_uri: str
    name: str
    version: str


@dataclass
class FakeSlot:
    """What the link reads of the slot (the served model) and asks it (a swap)."""

    current: FakeModel
    swapped: list[str] = field(default_factory=list)

    async def swap(self, uri: str, force: bool, deadline: float | None) -> None:
        self.swapped.append(uri)
        self.current = FakeModel(uri, "iris", uri.rsplit("/", 1)[-1])


@dataclass
class FakeSplit:
    """A server's traffic API: applies what it is asked, or refuses with `refuse`."""

    now: Applied = (None, None)
    asked: list[Split] = field(default_factory=list)
    refuse: str | None = None

    def applied(self) -> Applied:
        return self.now

    async def apply(self, split: Split, deadline_seconds: float) -> None:
        self.asked.append(split)
        if self.refuse:
            raise ModelLoadError(self.refuse)
        self.now = split.shares()


COUNTERS = (
    "# HELP aliasflow_server_prediction_requests_total Predictions.\n"
    "# TYPE aliasflow_server_prediction_requests_total counter\n"
    'aliasflow_server_prediction_requests_total{outcome="ok",role="canary",version="2"} 3.0\n'
    'aliasflow_server_prediction_requests_created{outcome="ok",role="canary",version="2"} 1.7e9\n'
    'aliasflow_server_requests_total{endpoint="/predict",status="200"} 9.0\n'
)
CANARY_2 = {
    "canary": {"model_uri": "models:/iris/2", "version": "2", "weight": 20},
    "shadow": None,
}


def in_process_link(controller: StubController) -> tuple[ControllerLink, FakeSplit, FakeSlot]:
    settings = ServerSettings(model_uri="models:/iris/1", admin_token=SecretStr(KEY))
    link = ControllerLink(
        LinkSettings(controller_url=controller.url, deployment="iris", replica="r-a"),
        "iris",
        SecretStr(KEY),
        settings,
    )
    split = FakeSplit()
    link.attach(split, lambda: COUNTERS.encode())
    return link, split, FakeSlot(FakeModel("models:/iris/1", "iris", "1"))


def tick(link: ControllerLink, slot: FakeSlot, times: int = 1) -> None:
    """`times` polls, on one event loop (the link's HTTP client lives on it)."""

    async def polls() -> None:
        try:
            for _ in range(times):
                await link.tick(slot)  # type: ignore[arg-type]
        finally:
            if link._client is not None:
                await link._client.aclose()
                link._client = None

    asyncio.run(polls())


def test_the_answers_split_is_applied_after_the_swap_and_reported_with_the_counters(
    controller: StubController,
) -> None:
    link, split, slot = in_process_link(controller)
    controller.answer, controller.traffic = "models:/iris/1", CANARY_2
    tick(link, slot)
    assert split.asked == [Split(Role("models:/iris/2", "2", 20), None)]
    report = controller.reports[-1]
    assert report["traffic"] == {"canary": {"version": "2", "weight": 20}, "shadow": None}
    assert report["detail"] is None
    assert report["metrics"] == (
        'aliasflow_server_prediction_requests_total{outcome="ok",role="canary",version="2"} 3.0\n'
    )
    tick(link, slot)
    assert len(split.asked) == 1  # applied already: not asked again
    # A controller that does not say (just restarted): the split stays as it is.
    controller.traffic = None
    tick(link, slot)
    assert len(split.asked) == 1
    assert controller.reports[-1]["traffic"]["canary"] == {"version": "2", "weight": 20}
    # The canary promoted: the swap to it comes first (instant), then the role goes.
    controller.answer, controller.traffic = "models:/iris/2", {"canary": None, "shadow": None}
    tick(link, slot)
    assert slot.swapped == ["models:/iris/2"]
    assert split.asked[-1] == Split(None, None)
    assert controller.reports[-1]["traffic"] == {"canary": None, "shadow": None}
    assert controller.refused == []


def test_a_split_that_fails_is_reported_and_not_retried_on_every_poll(
    controller: StubController,
) -> None:
    link, split, slot = in_process_link(controller)
    split.refuse = "models:/iris/2 did not load"
    controller.answer, controller.traffic = "models:/iris/1", CANARY_2
    tick(link, slot, times=3)
    assert len(split.asked) == 1
    assert "did not load" in controller.reports[-1]["detail"]
    assert controller.reports[-1]["traffic"] == {"canary": None, "shadow": None}


def test_a_split_naming_another_model_is_refused_and_nothing_changes(
    controller: StubController,
) -> None:
    link, split, slot = in_process_link(controller)
    controller.answer = "models:/iris/1"
    controller.traffic = {
        "canary": {"model_uri": "models:/wine/2", "version": "2", "weight": 20},
        "shadow": None,
    }
    tick(link, slot)
    assert split.asked == []
    assert "not a version of this server's model" in controller.reports[-1]["detail"]


@pytest.mark.parametrize(
    "traffic",
    [
        {"canary": {"model_uri": "models:/iris/2", "version": "2", "weight": 101}, "shadow": None},
        {"canary": {"model_uri": "models:/iris/2", "version": "2"}, "shadow": None},
        {"canary": None},
        "all",
    ],
)
def test_an_answer_with_a_split_that_does_not_parse_changes_nothing(
    controller: StubController, traffic: Any
) -> None:
    link, split, slot = in_process_link(controller)
    controller.answer, controller.traffic = "models:/iris/2", traffic
    tick(link, slot)
    assert split.asked == []
    assert slot.swapped == []


def test_a_server_without_a_traffic_api_reports_no_split() -> None:
    assert NoSplit().applied() is None
    assert reported_counters(COUNTERS) == (
        'aliasflow_server_prediction_requests_total{outcome="ok",role="canary",version="2"} 3.0\n'
    )


def test_a_linked_server_boots_into_the_split_and_reports_it_with_its_counters(
    iris_models: IrisModels, controller: StubController, tmp_path: Path
) -> None:
    """The real slot: the canary loaded at boot before the server says it is ready,
    answers from both versions counted per role in the reported counters, the split
    removed when the controller says so."""
    controller.answer = iris_models.uri(1)
    controller.traffic = {
        "canary": {"model_uri": iris_models.uri(2), "version": "2", "weight": 50},
        "shadow": None,
    }
    server = start_server(linked_env(iris_models, controller), tmp_path / "server.log")
    try:
        # Ready only with the split applied: from its first ready answer, not a poll later.
        ready = httpx.get(f"{server.url}/readyz", timeout=5).json()
        assert ready["model"]["version"] == "1"
        assert ready["traffic"]["canary"] == {"version": "2", "weight": 50}
        canary = {"canary": {"version": "2", "weight": 50}, "shadow": None}
        assert controller.reports[0]["traffic"] == canary
        answered = [
            httpx.post(
                f"{server.url}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=5
            ).headers["x-aliasflow-model-version"]
            for _ in range(60)
        ]
        assert set(answered) == {"1", "2"}

        def counted(report: dict[str, Any]) -> bool:
            stats = parse_server_metrics(report["metrics"] or "")
            return stats.get(("2", "canary"), VersionStats()).requests == answered.count(
                "2"
            ) and stats.get(("1", "primary"), VersionStats()).requests == answered.count("1")

        controller.wait_report(counted)
        controller.traffic = {"canary": None, "shadow": None}
        controller.wait_report(lambda r: r["traffic"] == {"canary": None, "shadow": None})
        assert httpx.get(f"{server.url}/readyz", timeout=5).json()["traffic"]["canary"] is None
        assert served(server.url) == "1"
    finally:
        stop_process(server.process)
    assert controller.refused == []
