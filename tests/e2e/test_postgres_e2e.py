"""MLflow and the controller's history both on PostgreSQL, as production runs them.

Runs when ALIASFLOW_TEST_POSTGRES_URL is set (`.ci/run` sets it); each run gets a fresh
database so MLflow's migrations start from nothing and nothing is left behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from sqlalchemy import create_engine, make_url, text

from aliasflow_cli.devstack import MlflowServer, start_mlflow_server
from aliasflow_cli.stack import stop_model_servers_in
from controller.runtimes.netutil import free_port
from controller.service.settings import ControllerSettings
from tests.e2e.harness import predict_version, serving, start_controller
from tests.fixtures_models import log_iris_pipeline

POSTGRES_URL = os.environ.get("ALIASFLOW_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="ALIASFLOW_TEST_POSTGRES_URL not set: PostgreSQL end-to-end skipped"
)


@pytest.fixture
def postgres_database() -> Iterator[str]:
    assert POSTGRES_URL is not None
    name = f"aliasflow_e2e_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def mlflow_on_postgres(postgres_database: str, tmp_path: Path) -> Iterator[MlflowServer]:
    server = start_mlflow_server(tmp_path / "mlflow", backend_store_uri=postgres_database)
    try:
        yield server
    finally:
        server.stop()


def test_promotion_with_mlflow_and_history_on_postgres(
    mlflow_on_postgres: MlflowServer, postgres_database: str, tmp_path: Path
) -> None:
    mlflow.set_tracking_uri(mlflow_on_postgres.url)
    mlflow.set_experiment("postgres-e2e")
    name = f"iris-pg-{uuid.uuid4().hex[:6]}"
    log_iris_pipeline(name, c=1.0)
    log_iris_pipeline(name, c=0.01)
    client = MlflowClient(mlflow_on_postgres.url)
    client.set_registered_model_alias(name, "champion", "1")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "iris.yaml").write_text(
        "apiVersion: aliasflow/v1\nkind: ModelDeployment\nmetadata: {name: iris-pg}\n"
        f"spec:\n  model: {{name: {name}, alias: champion}}\n  port: {free_port()}\n"
    )
    port = free_port()
    settings = ControllerSettings(
        manifests_dir=manifests,
        data_dir=tmp_path / "data",
        port=port,
        mlflow_tracking_uri=mlflow_on_postgres.url,
        database_url=postgres_database,
        webhook_secret=uuid.uuid4().hex,
        register_webhook=True,
        public_url=f"http://127.0.0.1:{port}",
        poll_interval_seconds=30,
    )
    running = start_controller(settings)
    try:
        row = running.wait_for("iris-pg", serving("1"))
        client.set_registered_model_alias(name, "champion", "2")
        running.wait_for("iris-pg", serving("2"), timeout=30)
        assert predict_version(row["endpoint"]) == "2"
        history = running.history("iris-pg")
        assert [h["action"] for h in history] == ["hotswap", "create"]
        assert history[0]["trigger"] == "webhook"
    finally:
        running.stop()
        stop_model_servers_in(tmp_path / "data")
    engine = create_engine(postgres_database)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM aliasflow_sync_history")).scalar()
        registered = connection.execute(text("SELECT count(*) FROM registered_models")).scalar()
    engine.dispose()
    assert rows == 2
    assert registered == 1
