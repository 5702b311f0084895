"""Bad model versions behind an alias: each refused, the last good one serving throughout.

A real controller (in-process, polling every second) follows an alias of one registered
model whose versions are good (v1, v7) and bad in every way we know (v2-v6: artifact
that does not load, NaN output, wrong output shape, incompatible signature, slower to
load than the health timeout). A client calls /predict the whole time; a user relies on
that client never seeing a failure, on v1 answering until a good version comes, and on
the status saying what was wrong with each bad one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.e2e.harness import (
    RunningController,
    follow_alias,
    polling_settings,
    serving,
    start_controller,
)
from tests.fixtures_models import (  # noqa: F401 - bad_versions is a fixture
    BAD_VERSIONS,
    BadVersions,
    bad_versions,
)

NAME = "iris-bad-versions"
# Room for a cold start on a busy machine, still well under the slow version's load time.
HEALTH_TIMEOUT_S = 14
# What the deployment's message must say for each kind of bad version.
REASONS = {
    "unloadable": "could not load",
    "nan": "NaN",
    "wrong_shape": "predictions for 1 rows",
    "incompatible": "incompatible input signature",
    "slow": "over the swap deadline",
}


@dataclass
class PredictLoad:
    """A client calling /predict back to back in a thread; every answer is tallied."""

    endpoint: str
    outcomes: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def failures(self) -> dict[str, int]:
        return {k: v for k, v in self.outcomes.items() if k != "200"}

    def _run(self) -> None:
        with httpx.Client(base_url=self.endpoint, trust_env=False, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
                    key = str(response.status_code)
                    if response.is_success:
                        self.versions[str(response.json()["model"]["version"])] += 1
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                self.outcomes[key] += 1


@dataclass
class Followed:
    """The running controller and the alias its one manifest follows."""

    controller: RunningController
    models: BadVersions
    alias: str

    def promote(self, version: str) -> float:
        client = MlflowClient(self.models.tracking_uri)
        client.set_registered_model_alias(self.models.name, self.alias, version)
        return time.monotonic()


@pytest.fixture
def followed(bad_versions: BadVersions, tmp_path: Path) -> Iterator[Followed]:  # noqa: F811
    alias = f"rel{uuid.uuid4().hex[:8]}"
    MlflowClient(bad_versions.tracking_uri).set_registered_model_alias(
        bad_versions.name, alias, "1"
    )
    manifests = tmp_path / "manifests"
    follow_alias(manifests, NAME, bad_versions.name, alias, HEALTH_TIMEOUT_S)
    running = start_controller(
        polling_settings(manifests, tmp_path / "data", bad_versions.tracking_uri)
    )
    try:
        yield Followed(running, bad_versions, alias)
    finally:
        running.stop()
        from aliasflow_cli.stack import stop_model_servers_in

        stop_model_servers_in(tmp_path / "data")


def _served(endpoint: str) -> str:
    response = httpx.get(f"{endpoint}/metadata", trust_env=False, timeout=10)
    return str(response.json()["version"])


@pytest.mark.timeout(240)
def test_bad_versions_are_refused_while_the_good_one_serves_without_a_failed_request(
    followed: Followed,
) -> None:
    controller, models = followed.controller, followed.models
    endpoint = str(controller.wait_for(NAME, serving("1"), timeout=60)["endpoint"])
    load = PredictLoad(endpoint)
    load.start()
    slow_promoted = time.monotonic()
    try:
        for version, kind in BAD_VERSIONS.items():
            promoted = followed.promote(version)
            if kind == "slow":
                slow_promoted = promoted
            row = controller.wait_for(
                NAME,
                lambda r, v=version: r["health"] == "Degraded" and r["desired_version"] == v,
                timeout=HEALTH_TIMEOUT_S + 15,
            )
            assert REASONS[kind] in row["message"], (kind, row["message"])
            assert f"models:/{models.name}/{version}" in row["message"]
            assert row["served_version"] == "1", (kind, row)
            assert _served(endpoint) == "1", kind
            latest = controller.history(NAME)[0]
            assert (latest["model_version"], latest["result"]) == (version, "Failed"), latest
            assert not load.failures, (kind, load.outcomes)

        followed.promote("7")
        row = controller.wait_for(NAME, serving("7"), timeout=HEALTH_TIMEOUT_S + 15)
        assert row["endpoint"] == endpoint, "recovery must be a hot swap, not a new server"
        assert _served(endpoint) == "7"
        # The slow v6 ends its load in the server long after its deadline; it must be
        # thrown away then, not swapped in over v7.
        time.sleep(max(0.5, models.slow_load_seconds + 1 - (time.monotonic() - slow_promoted)))
        assert _served(endpoint) == "7"
    finally:
        load.stop()
    assert not load.failures, load.outcomes
    assert set(load.versions) == {"1", "7"}, load.versions
    assert load.outcomes["200"] > 100, load.outcomes
