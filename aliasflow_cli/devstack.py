"""A local MLflow server, as `make up` and the test suite both need one.

Webhooks only reach loopback receivers with the two MLflow settings below, and their
secrets only survive restarts with a fixed Fernet key, so both are set here once.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from controller.runtimes.netutil import free_port, stop_process, wait_until_ready


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes]
    root: Path
    log: Path | None = None

    def wait_ready(self, timeout: float) -> None:
        """Until /health answers; `ProcessDiedError` or `TimeoutError` otherwise."""
        wait_until_ready(f"{self.url}/health", timeout=timeout, process=self.process)

    def stop(self) -> None:
        stop_process(self.process)


def mlflow_server_env(root: Path) -> dict[str, str]:
    key_file = root / "webhook-encryption.key"
    if not key_file.exists():
        key_file.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
    env = dict(os.environ)
    env.update(
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=key_file.read_text().strip(),
        # A new webhook is otherwise invisible for up to 60 s per worker.
        MLFLOW_WEBHOOK_CACHE_TTL=env.get("MLFLOW_WEBHOOK_CACHE_TTL", "1"),
        # MLflow 3 starts a job runner with a dozen huey consumers (GenAI jobs we never
        # use); without it the server starts in a third of the time and idles quietly.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION=env.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
    )
    return env


def start_mlflow_server(
    root: Path,
    port: int | None = None,
    backend_store_uri: str | None = None,
    timeout: float = 90.0,
    log_file: Path | None = None,
) -> MlflowServer:
    server = spawn_mlflow_server(root, port, backend_store_uri, log_file)
    try:
        server.wait_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


def spawn_mlflow_server(
    root: Path,
    port: int | None = None,
    backend_store_uri: str | None = None,
    log_file: Path | None = None,
) -> MlflowServer:
    """Start `mlflow server` without waiting: the caller records the pid first, so that
    nothing (a signal, a timeout) can lose track of it while it boots."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    backend = backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log_path = log_file or root / "mlflow-server.log"
    log = open(log_path, "ab")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(artifacts),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=mlflow_server_env(root),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()  # the child has its own copy
    return MlflowServer(url=f"http://127.0.0.1:{port}", process=process, root=root, log=log_path)
