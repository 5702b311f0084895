"""The history store's disk fills up, then turns read-only, under a running controller.

Disk full is SQLite's own `SQLITE_FULL`: every new connection of the controller's store
engine gets `PRAGMA max_page_count` = its current size, and the free space left in the
last pages is then filled, so the next row that needs a page fails exactly as on a full
disk. Read-only is `PRAGMA query_only`, SQLite's "attempt to write a readonly database".

Decision under test: rollouts go on. Serving is the product and the history is its
record; refusing a promotion because a log cannot be written would turn a disk alarm
into an outage of the deploy path. So the controller reports the store error
(`/api/controller`, `/healthz`, the dashboard), rolls the promotion out, and writes the
history rows it could not write once the store accepts writes again. The database must
stay intact throughout (`PRAGMA integrity_check`).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from mlflow import MlflowClient
from sqlalchemy import event

from controller.core.errors import StoreUnavailableError
from controller.core.records import SyncRecord
from controller.store.sql import SqlHistoryStore
from tests.e2e.harness import RunningController, start_controller
from tests.fixtures_models import IrisModels
from tests.reliability.controller_faults import (
    controller_settings,
    get_json,
    predict_version,
    serve_pids_for,
    wait_until,
    write_manifest,
)

NAME = "iris-store"
FILLER = "zz-filler"  # history rows written only to fill the disk
Hook = Callable[[Any, Any], None]


def _disk_full(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    pages = cursor.execute("PRAGMA page_count").fetchone()[0]
    cursor.execute(f"PRAGMA max_page_count={pages}")
    cursor.close()


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _inject(store: SqlHistoryStore, hook: Hook) -> None:
    event.listen(store.engine, "connect", hook)
    store.engine.dispose()  # pooled connections predate the fault; new ones get it


def _repair(store: SqlHistoryStore, hook: Hook) -> None:
    event.remove(store.engine, "connect", hook)
    store.engine.dispose()


def _write_until_refused(store: SqlHistoryStore) -> None:
    """Use up the room the tables' last pages still have, as other writers would.

    Each table is its own b-tree, so with the page count capped a table whose last page
    has room still takes rows: fill the two the controller inserts into.
    """
    writes: list[Callable[[int], object]] = [
        lambda i: store.remember_delivery(f"filler-{i}", "filler"),
        lambda i: store.begin_sync(SyncRecord(FILLER, "poll", 0.0, message="x" * 200)),
    ]
    for write in writes:
        for i in range(100_000):
            try:
                write(i)
            except StoreUnavailableError:
                break
        else:
            raise AssertionError("the store never filled up")


def _integrity(database: Path) -> str:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])


def _promote_through_fault(
    running: RunningController,
    client: MlflowClient,
    models: IrisModels,
    alias: str,
    endpoint: str,
    version: str,
    fault: str,
) -> None:
    store = running.controller.store
    info = get_json(f"{running.url}/api/controller")
    assert fault in (info["store_error"] or ""), info
    health = get_json(f"{running.url}/healthz")
    assert health["status"] == "degraded"
    assert fault in health["store_error"]
    dashboard = httpx.get(f"{running.url}/", trust_env=False, timeout=10)
    assert dashboard.status_code == 200
    assert fault in dashboard.text

    client.set_registered_model_alias(models.name, alias, version)
    wait_until(lambda: predict_version(endpoint) == version, 60, f"v{version} during {fault}")
    # The API keeps answering from what it can read; the model server kept serving.
    assert running.deployment(NAME)["name"] == NAME
    assert store.error is not None
    assert fault in store.error


def test_full_then_read_only_history_store_keeps_rolling_out(
    iris_models: IrisModels, tmp_path: Path
) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    alias = f"store{uuid.uuid4().hex[:8]}"
    client = MlflowClient(iris_models.tracking_uri)
    write_manifest(manifests, NAME, iris_models.name, alias)
    client.set_registered_model_alias(iris_models.name, alias, "1")
    data_dir = tmp_path / "data"
    running = start_controller(controller_settings(manifests, data_dir, iris_models.tracking_uri))
    try:
        store = running.controller.store
        database = data_dir.resolve() / "aliasflow.db"
        endpoint = running.wait_for(NAME, lambda r: r["served_version"] == "1")["endpoint"]
        (pid,) = serve_pids_for(data_dir, NAME)
        rows_before = len(running.history(NAME))

        for hook, fault, version in (
            (_disk_full, "full", "2"),
            (_read_only, "readonly", "1"),
        ):
            _inject(store, hook)
            _write_until_refused(store)
            _promote_through_fault(running, client, iris_models, alias, endpoint, version, fault)
            _repair(store, hook)

            # With space back, the next poll writes the refused rows and clears the error.
            wait_until(lambda: store.error is None, 15, f"store error cleared after {fault}")
            history = running.history(NAME)
            assert (history[0]["action"], history[0]["result"], history[0]["model_version"]) == (
                "hotswap",
                "Succeeded",
                version,
            ), history[:3]
            assert _integrity(database) == "ok"
            row = running.wait_for(
                NAME, lambda r, v=version: r["served_version"] == v and r["sync"] == "Synced"
            )
            assert row["health"] == "Healthy"
            assert get_json(f"{running.url}/healthz") == {"status": "ok"}

        assert len(running.history(NAME)) == rows_before + 2  # one row per rollout, no gaps
        assert serve_pids_for(data_dir, NAME) == [pid]  # hot swaps: the same server throughout
        # And new rows are written normally afterwards.
        assert store.remember_delivery(f"after-{uuid.uuid4()}", "accepted")
    finally:
        running.stop()
        from aliasflow_cli.stack import stop_model_servers_in

        stop_model_servers_in(data_dir)
