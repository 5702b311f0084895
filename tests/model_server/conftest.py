"""Real iris models in the session's real MLflow server, and servers that serve them.

Logged once per session: two good versions of one registered model (v1, v2 differ),
and four bad ones under another name for failed-swap tests (unloadable artifact, NaN
output, wrong output shape, incompatible signature).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from controller.core import serverkeys
from controller.runtimes import hotswap
from controller.runtimes.netutil import free_port, stop_process, wait_until_ready
from tests.fixtures_models import IrisModels
from tests.fixtures_models import bad_versions as bad_versions  # a fixture here too

ADMIN_TOKEN = "test-admin-token"


def signed_headers(
    key: str, method: str, url: str, body: bytes, stamp: int | None = None
) -> dict[str, str]:
    """The signature headers. Without `stamp`, exactly the controller's own signing (one
    stamp sequence per key for the tests and the controller's calls they make, so two
    identical requests never share a second and get refused as a replay)."""
    if stamp is None:
        return hotswap.signed_headers(key, method, url, body)
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    value = serverkeys.signature(key, str(stamp), method, target, body)
    return {serverkeys.TIMESTAMP_HEADER: str(stamp), serverkeys.SIGNATURE_HEADER: value}


def admin_request(
    client: httpx.Client | None,
    method: str,
    url: str,
    body: object = None,
    *,
    key: str = ADMIN_TOKEN,
    timeout: float = 120.0,
) -> httpx.Response:
    """One admin request signed as the controller signs it (its own `serverkeys`, so the
    two sides are tested against each other); `client` None: to a full `url`."""
    content = b"" if body is None else json.dumps(body).encode()
    headers = {**signed_headers(key, method, url, content), "Content-Type": "application/json"}
    if client is None:
        return httpx.request(method, url, content=content, headers=headers, timeout=timeout)
    return client.request(method, url, content=content, headers=headers, timeout=timeout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The server installs this filter at model load (it matches columns by name itself);
    # pytest resets warning filters around each test, so restate it for these tests.
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(
                pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")
            )


@pytest.fixture(scope="session")
def baked_model_dir(iris_models: IrisModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1 downloaded into a directory with `aliasflow-model.json`, as the image bakes it."""
    import mlflow.artifacts

    target = tmp_path_factory.mktemp("baked")
    path = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=iris_models.uri(1),
            dst_path=str(target),
            tracking_uri=iris_models.tracking_uri,
        )
    )
    (path / "aliasflow-model.json").write_text(
        json.dumps(
            {
                "name": iris_models.name,
                "version": "1",
                "run_id": iris_models.v1_run_id,
                "metrics": {"accuracy": 0.97},
                "git_sha": "baked0sha",
            }
        )
    )
    return path


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise TimeoutError(f"app not ready after {timeout}s: {client.get('/readyz').text}")


AppFactory = Callable[..., TestClient]


@pytest.fixture
def app_client(iris_models: IrisModels) -> Iterator[AppFactory]:
    """Build an in-process app (lifespan running) for a model URI; closed after the test."""
    from model_server.app import create_app
    from model_server.settings import ServerSettings

    clients: list[TestClient] = []

    def make(model_uri: str | None = None, wait: bool = True, **overrides: object) -> TestClient:
        settings = ServerSettings(
            model_uri=model_uri or iris_models.uri(1),
            tracking_uri=iris_models.tracking_uri,
            **overrides,  # type: ignore[arg-type]
        )
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        if wait:
            wait_ready(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def v1_client(iris_models: IrisModels) -> Iterator[TestClient]:
    """One shared in-process v1 app with an admin token, for read-only tests."""
    from model_server.app import create_app
    from model_server.settings import ServerSettings

    settings = ServerSettings(
        model_uri=iris_models.uri(1),
        tracking_uri=iris_models.tracking_uri,
        admin_token=ADMIN_TOKEN,
        max_batch_rows=50,
        max_body_bytes=20_000,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(env_overrides: dict[str, str], log: Path, timeout: float = 90.0) -> ServerProcess:
    """`aliasflow serve` as a child process on a free loopback port, once /readyz is 200."""
    port = free_port()
    env = {**os.environ, **env_overrides}
    handle = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "aliasflow_cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/readyz", timeout=timeout, process=process)
    except Exception:
        stop_process(process)
        raise AssertionError(f"server did not become ready:\n{log.read_text()}") from None
    return ServerProcess(url, process, log)


def start_v1(models: IrisModels, log: Path, **env: str) -> ServerProcess:
    """`aliasflow serve` of the good v1 with the admin token; `env` adds or overrides."""
    return start_server(
        {
            "MODEL_URI": models.uri(1),
            "MLFLOW_TRACKING_URI": models.tracking_uri,
            "ALIASFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
            **env,
        },
        log,
    )


@pytest.fixture(scope="module")
def served_v1(
    iris_models: IrisModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_v1(iris_models, tmp_path_factory.mktemp("serve") / "server.log")
    try:
        yield server
    finally:
        stop_process(server.process)
