"""A watched deployment under steady load, for the end-to-end promotion tests: a real
controller polling a real MLflow, one local model server, signed notifications to a real
receiver, and client threads posting random iris rows with every answer recorded with the
version that gave it (the `X-Aliasflow-Model-Version` header), so a test can say which
version failed which request and what share of the answers each version gave."""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from mlflow import MlflowClient
from pydantic import SecretStr

from controller.core.deliveries import v1_digest
from controller.runtimes.local import LocalRuntime
from controller.service.settings import ControllerSettings
from tests.e2e.harness import (
    RunningController,
    local_port,
    polling_settings,
    serving,
    start_controller,
)
from tests.fixtures_models import COLUMNS, PromotionModels, iris_frame
from tests.notify_receiver import Receiver

NAME = "iris-watch"
SECRET = "watch-notify-secret"
QUARANTINED = "aliasflow.quarantined"
ROLLBACK_WITHIN = 30.0


@dataclass
class Answer:
    at: float  # when the answer arrived (wall clock); it was sent `seconds` earlier
    status: int
    version: str | None
    seconds: float


@dataclass
class Load:
    """Steady /predict traffic on iris rows from a thread; every answer recorded."""

    endpoint: str
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int = 4) -> Load:
        frame, _ = iris_frame()
        rows = frame[COLUMNS].to_dict(orient="records")

        def run() -> None:
            with httpx.Client(timeout=10, trust_env=False) as client:
                while not self._stop.is_set():
                    began = time.monotonic()
                    try:
                        response = client.post(
                            f"{self.endpoint}/predict", json={"records": [random.choice(rows)]}
                        )
                        status = response.status_code
                        version = response.headers.get("x-aliasflow-model-version")
                    except httpx.HTTPError:
                        status, version = 0, None
                    self.answers.append(
                        Answer(time.time(), status, version, time.monotonic() - began)
                    )
                    time.sleep(0.01)

        self._threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.status >= 500 or a.status == 0]

    def share(self, version: str, since: float, until: float) -> tuple[int, int]:
        """(answers from `version`, all successful answers) between two instants."""
        window = [a for a in self.answers if since <= a.at <= until and a.status == 200]
        return sum(1 for a in window if a.version == version), len(window)


@dataclass
class Watch:
    models: PromotionModels
    client: MlflowClient
    alias: str
    settings: ControllerSettings
    receiver: Receiver
    running: RunningController
    load: Load | None = None
    endpoint: str = ""

    def move(self, version: str) -> float:
        self.client.set_registered_model_alias(self.models.name, self.alias, version)
        return time.time()

    def aliased(self) -> str:
        return str(self.client.get_registered_model(self.models.name).aliases[self.alias])

    def tag(self, version: str) -> str | None:
        tags = self.client.get_model_version(self.models.name, version).tags
        return tags.get(QUARANTINED)

    def notifications(self, event: str) -> list[dict[str, object]]:
        found = []
        for delivery in self.receiver.received:
            body = delivery.json()
            if body.get("event") == event:
                headers = {k.lower(): v for k, v in delivery.headers.items()}
                _, _, signature = headers["x-aliasflow-signature"].partition(",")
                expected = v1_digest(
                    SECRET,
                    headers["x-aliasflow-delivery-id"],
                    headers["x-aliasflow-timestamp"],
                    delivery.body,
                )
                assert base64.b64decode(signature) == expected, "an unsigned notification"
                found.append(body)
        return found

    def rolled_back(self, bad: str) -> dict[str, Any]:
        """Wait until the history says `bad` was rolled back; that row."""
        return self.running.wait_for_history(
            NAME,
            lambda r: r["reason"] == "RolledBack" and f"version {bad} rolled back" in r["message"],
            timeout=ROLLBACK_WITHIN,
        )

    def answers_sent_after(self, since: float) -> list[Answer]:
        """Answers to requests sent after `since` (late answers to earlier ones aside)."""
        assert self.load is not None
        return [a for a in self.load.answers if a.at - a.seconds >= since]


def write_manifest(directory: Path, model: str, alias: str, extra: str) -> None:
    """The watched deployment's manifest; `extra` is the rest of its spec, YAML at two
    spaces (promotion, rollout, shadow)."""
    (directory / f"{NAME}.yaml").write_text(
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\n"
        f"metadata: {{name: {NAME}}}\n"
        "spec:\n"
        f"  model: {{name: {model}, alias: {alias}}}\n"
        f"  port: {local_port(directory, NAME)}\n"
        f"{extra}"
    )


@contextmanager
def watched(models: PromotionModels, tmp_path: Path, spec: Callable[[str], str]) -> Iterator[Watch]:
    """A controller and its one deployment on `models.good` under load; `spec(alias)` is
    the manifest's spec beyond model and port."""
    client = MlflowClient(models.tracking_uri)
    for version in (models.slow, models.flaky, models.shifted):
        # Versions are shared by the tests of a session: each starts unquarantined.
        client.delete_model_version_tag(models.name, version, QUARANTINED)
    alias = f"watch{random.randrange(10**8)}"
    client.set_registered_model_alias(models.name, alias, models.good)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write_manifest(manifests, models.name, alias, spec(alias))
    receiver = Receiver().start()
    settings = polling_settings(manifests, tmp_path / "data", models.tracking_uri)
    settings = settings.model_copy(
        update={
            "analysis_interval_seconds": 0.5,
            "notify_webhook_url": f"{receiver.url}/hook",
            "notify_webhook_secret": SecretStr(SECRET),
        }
    )
    running = start_controller(settings)
    world = Watch(models, client, alias, settings, receiver, running)
    try:
        row = running.wait_for(NAME, serving(models.good), timeout=120)
        world.endpoint = str(row["endpoint"])
        world.load = Load(world.endpoint).start()
        yield world
    finally:
        if world.load is not None:
            world.load.stop()
        world.running.stop()
        receiver.stop()
        LocalRuntime(settings.data_dir, "x", settings.mlflow_tracking_uri).stop_all()
