"""Fixtures for the docker runtime: a fake engine on loopback and the real SDK pointed at it.

Every container a test starts is a real process; the engine fixture's finalizer stops
them all, so a failing test leaves nothing running on the shared cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from controller.runtimes.docker import DockerRuntime
from tests.controller.runtimes.docker.docker_helpers import ADMIN_TOKEN, STUB_IMAGE
from tests.fake_docker import FakeDockerEngine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeDockerEngine]:
    fake = FakeDockerEngine(tmp_path / "engine")
    fake.start()
    fake.add_image(STUB_IMAGE, "stub")
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def client(engine: FakeDockerEngine) -> Iterator[docker.DockerClient]:
    sdk = docker.DockerClient(base_url=engine.base_url, version="1.45", timeout=30)
    try:
        yield sdk
    finally:
        sdk.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def runtime(client: docker.DockerClient, data_dir: Path) -> DockerRuntime:
    return DockerRuntime(
        client,
        admin_token=ADMIN_TOKEN,
        tracking_uri="http://127.0.0.1:9",  # the stub image never calls MLflow
        data_dir=data_dir,
        stop_timeout_seconds=2,
        ready_poll_seconds=0.05,
    )
