"""History store on sqlite always, and on PostgreSQL when ALIASFLOW_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from controller.core.errors import StoreUnavailableError
from controller.core.records import DeploymentStatus, Health, Result, Sync, SyncRecord
from controller.store.sql import SqlHistoryStore

POSTGRES_URL = os.environ.get("ALIASFLOW_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlHistoryStore]:
    if request.param == "sqlite":
        history = SqlHistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
        yield history
        history.close()
        return
    if not POSTGRES_URL:
        pytest.skip("ALIASFLOW_TEST_POSTGRES_URL not set: PostgreSQL store tests skipped")
    # A schema per test keeps runs independent on the shared `test` database.
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    history = SqlHistoryStore(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    yield history
    history.close()
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_sync_history_round_trip_newest_first(store: SqlHistoryStore) -> None:
    first = store.begin_sync(SyncRecord("iris", "webhook", started_at=100.0, model_version="1"))
    store.finish_sync(
        SyncRecord(
            "iris",
            "webhook",
            100.0,
            Result.SUCCEEDED,
            "create",
            "abc123",
            "iris-classifier",
            "1",
            "run1",
            "img",
            None,
            "created",
            101.5,
            first.id,
        )
    )
    second = store.begin_sync(SyncRecord("iris", "poll", started_at=200.0, model_version="2"))
    store.begin_sync(SyncRecord("other", "manual", started_at=300.0))
    rows = store.history("iris")
    assert [r.id for r in rows] == [second.id, first.id]
    assert rows[1].result is Result.SUCCEEDED
    assert rows[1].duration_seconds == pytest.approx(1.5)
    assert rows[1].manifest_revision == "abc123"
    assert rows[0].result is Result.RUNNING
    assert [r.model_version for r in store.last_succeeded("iris")] == ["1"]


def test_running_rows_become_interrupted_after_a_crash(store: SqlHistoryStore) -> None:
    store.begin_sync(SyncRecord("iris", "webhook", started_at=1.0))
    assert store.mark_interrupted(now=5.0) == 1
    (row,) = store.history("iris")
    assert row.result is Result.INTERRUPTED
    assert row.finished_at == 5.0
    assert "controller stopped" in row.message
    assert store.mark_interrupted() == 0


def test_status_upsert_and_delete(store: SqlHistoryStore) -> None:
    status = DeploymentStatus("iris", Sync.OUT_OF_SYNC, Health.PROGRESSING, "creating")
    store.put_status(status)
    store.put_status(
        DeploymentStatus("iris", Sync.SYNCED, Health.HEALTHY, "ok", served_version="2")
    )
    store.put_status(DeploymentStatus("aaa", Sync.UNKNOWN, Health.UNKNOWN, ""))
    got = store.get_status("iris")
    assert got is not None
    assert (got.sync, got.health, got.served_version) == (Sync.SYNCED, Health.HEALTHY, "2")
    assert [s.name for s in store.list_status()] == ["aaa", "iris"]
    store.delete_status("iris")
    assert store.get_status("iris") is None


def test_delivery_ids_are_remembered_once(store: SqlHistoryStore) -> None:
    assert store.remember_delivery("d-1", "accepted", now=10.0)
    assert not store.remember_delivery("d-1", "accepted", now=11.0)
    assert store.remember_delivery("d-2", "ignored", now=20.0)
    assert store.delivery_counts() == {"accepted": 1, "ignored": 1}
    assert store.forget_deliveries_before(15.0) == 1
    assert store.remember_delivery("d-1", "accepted")


def test_history_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    first = SqlHistoryStore(url)
    first.begin_sync(SyncRecord("iris", "poll", started_at=1.0))
    first.close()
    again = SqlHistoryStore(url)
    assert len(again.history("iris")) == 1
    again.close()


def test_unwritable_database_is_a_clear_temporary_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'h.db'}"
    with pytest.raises(StoreUnavailableError, match="history store unavailable"):
        SqlHistoryStore(url)


def test_latest_syncs_gives_each_deployments_newest_row(store: SqlHistoryStore) -> None:
    for deployment, started in (("a", 1.0), ("b", 2.0), ("a", 3.0)):
        store.begin_sync(SyncRecord(deployment, "poll", started_at=started))
    latest = store.latest_syncs()
    assert {name: row.started_at for name, row in latest.items()} == {"a": 3.0, "b": 2.0}
