"""Fixtures for the ACI runtime tests: the emulator over HTTPS and the real SDK client."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.core.serverkeys import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_signature
from controller.core.types import DesiredState, Strategy, TargetKind
from controller.runtimes.aci import AciRuntime, QuotaLimiter, RetryOptions
from controller.runtimes.netutil import free_port
from tests.aci_emulator import AciEmulator

SUB = "11111111-2222-3333-4444-555555555555"
ADMIN = "admin-token-for-tests"
SECRET = "s3cr3t-value-never-shown"


def make_desired(
    name: str = "iris",
    version: str = "1",
    rg: str = "rg-a",
    image: str = "myreg.azurecr.io/aliasflow-server:1",
    env: tuple[tuple[str, str], ...] = (("LOG_LEVEL", "info"),),
    secret: str = SECRET,
    timeout: int = 20,
    cpu: float = 1.0,
) -> DesiredState:
    """As `reconcile.desired` builds it: both hashes move with what they cover."""
    spec = f"{image}|{env}|{secret}|{rg}|{cpu}"
    return DesiredState(
        name=name,
        target_kind=TargetKind.ACI,
        model_name="iris-classifier",
        model_version=version,
        run_id=None,
        image=image,
        port=8080,
        cpu=cpu,
        memory_gb=1.5,
        env=env,
        strategy=Strategy.HOTSWAP,
        health_timeout_seconds=timeout,
        secret_env=(("MLFLOW_TRACKING_TOKEN", secret),),
        spec_hash=_digest(spec),
        target_settings=(
            ("dnsNameLabel", name),
            ("location", "westeurope"),
            ("resourceGroup", rg),
            ("subscriptionId", SUB),
        ),
        immutable_hash=_digest(f"{cpu}|1.5|westeurope"),
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.fixture
def emulator() -> Iterator[AciEmulator]:
    emu = AciEmulator(page_size=2).start()
    emu.state.lro_retry_after = "0"
    yield emu
    emu.stop()


@dataclass
class StubServer:
    """A stand-in model server: /readyz (with the model it serves) and /admin/model."""

    url: str
    version: str = "1"
    admin_calls: list[dict[str, str]] = field(default_factory=list)
    refuse: bool = False
    ready: bool = True
    # The deployment key admin requests must be signed with; None: record, do not check.
    key: str | None = None


@pytest.fixture
def stub_server() -> Iterator[StubServer]:
    port = free_port()
    stub = StubServer(f"http://127.0.0.1:{port}")

    async def readyz(_: Request) -> Response:
        # As model_server's ReadyResponse: 503 until a model is loaded.
        if not stub.ready:
            return JSONResponse({"detail": "model is still loading"}, 503)
        model = {"name": "iris-classifier", "version": stub.version, "run_id": None}
        return JSONResponse({"status": "ready", "model": model})

    async def admin(request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        refused = check_signature(
            stub.key or "",
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            request.method,
            request.url.path,
            raw,
        )
        stub.admin_calls.append({"signature": str(refused or "ok"), **body})
        if stub.key is not None and refused is not None:
            return JSONResponse({"detail": str(refused)}, 401)
        if stub.refuse:
            return JSONResponse({"detail": "input example check failed"}, 422)
        stub.version = body["model_uri"].rsplit("/", 1)[-1]
        return JSONResponse({"status": "swapped"})

    app = Starlette(
        routes=[
            Route("/readyz", readyz),
            Route("/admin/model", admin, methods=["POST"]),
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


RuntimeFactory = Callable[..., AciRuntime]


@pytest.fixture
def make_runtime(emulator: AciEmulator) -> Iterator[RuntimeFactory]:
    made: list[AciRuntime] = []

    def make(**overrides: object) -> AciRuntime:
        kwargs: dict[str, object] = {
            "base_url": emulator.url,
            "connection_verify": str(emulator.ca_path),
            "endpoint_resolver": emulator.resolve_endpoint,
            "polling_interval": 0.05,
            "retry": RetryOptions(total=10, backoff_factor=0.01, backoff_max=0.5),
            "quota": QuotaLimiter(100, 300),
        }
        kwargs.update(overrides)
        runtime = AciRuntime(
            emulator.credential(),
            [(SUB, "rg-a"), (SUB, "rg-b")],
            ADMIN,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()
