"""History store on sqlite always, and on PostgreSQL when ALIASFLOW_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from controller.core.errors import StoreUnavailableError
from controller.core.records import DeploymentStatus, Health, Reason, Result, Sync, SyncRecord
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


# The tables as the first release created them: no `reason`, no `prune`.
FIRST_RELEASE_TABLES = (
    """CREATE TABLE aliasflow_status (
        name VARCHAR(63) PRIMARY KEY, sync VARCHAR(16) NOT NULL, health VARCHAR(16) NOT NULL,
        message TEXT NOT NULL, model_name VARCHAR(256), alias VARCHAR(256),
        desired_version VARCHAR(32), served_version VARCHAR(32), run_id VARCHAR(64),
        target_kind VARCHAR(16), endpoint VARCHAR(512), image VARCHAR(512),
        manifest_revision VARCHAR(64), last_sync_id INTEGER, updated_at FLOAT NOT NULL)""",
    """CREATE TABLE aliasflow_sync_history (
        id INTEGER PRIMARY KEY, deployment VARCHAR(63) NOT NULL, trigger VARCHAR(16) NOT NULL,
        started_at FLOAT NOT NULL, finished_at FLOAT, result VARCHAR(16) NOT NULL,
        action VARCHAR(16), manifest_revision VARCHAR(64), model_name VARCHAR(256),
        model_version VARCHAR(32), run_id VARCHAR(64), image VARCHAR(512),
        image_digest VARCHAR(128), message TEXT NOT NULL)""",
    "INSERT INTO aliasflow_status (name, sync, health, message, updated_at) VALUES "
    "('iris', 'OutOfSync', 'Degraded', 'HealthCheckFailed: not serving version 2', 1.0)",
    "INSERT INTO aliasflow_sync_history (id, deployment, trigger, started_at, result, message)"
    " VALUES (1, 'iris', 'poll', 1.0, 'Failed', 'RolloutRejected: the server refused it')",
    "INSERT INTO aliasflow_sync_history (id, deployment, trigger, started_at, result, message)"
    " VALUES (2, 'iris', 'poll', 2.0, 'Succeeded', 'hotswap done: serving version 1')",
)


def test_a_first_release_store_gains_the_new_columns_and_stays_readable(
    store: SqlHistoryStore,
) -> None:
    url = store.url
    store.close()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE aliasflow_status"))
        connection.execute(text("DROP TABLE aliasflow_sync_history"))
        for statement in FIRST_RELEASE_TABLES:
            connection.execute(text(statement))
    engine.dispose()

    upgraded = SqlHistoryStore(url)
    try:
        (status,) = upgraded.list_status()
        assert (status.reason, status.prune) == (Reason.HEALTH_CHECK_FAILED, True)
        rows = upgraded.history("iris")
        assert [(r.id, r.reason) for r in rows] == [(2, None), (1, Reason.ROLLOUT_REJECTED)]
        # New rows carry their reason in the new column.
        upgraded.put_status(
            DeploymentStatus(
                "iris", Sync.SYNCED, Health.HEALTHY, "in sync", reason=Reason.SUCCEEDED
            )
        )
        assert upgraded.get_status("iris").reason is Reason.SUCCEEDED  # type: ignore[union-attr]
    finally:
        upgraded.close()
