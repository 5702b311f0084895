"""History store on SQLAlchemy Core: sqlite in the data dir by default, PostgreSQL in production.

Every write is one short transaction, so a controller killed mid-rollout leaves at worst
a `Running` history row, which `mark_interrupted()` turns into `Interrupted` on start-up.
Database errors are wrapped into `StoreUnavailableError`: the controller reports them and
keeps serving rather than crashing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from controller.core.errors import StoreUnavailableError
from controller.core.records import (
    Bake,
    BakeState,
    DeploymentStatus,
    Health,
    NotificationDelivery,
    Reason,
    Result,
    Sync,
    SyncRecord,
)

metadata = MetaData()

status_table = Table(
    "aliasflow_status",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("sync", String(16), nullable=False),
    Column("health", String(16), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("model_name", String(256)),
    Column("alias", String(256)),
    Column("desired_version", String(32)),
    Column("served_version", String(32)),
    Column("run_id", String(64)),
    Column("target_kind", String(16)),
    Column("endpoint", String(512)),
    Column("image", String(512)),
    Column("manifest_revision", String(64)),
    Column("last_sync_id", Integer),
    Column("updated_at", Float, nullable=False),
    Column("reason", String(32)),
    Column("prune", Boolean, nullable=False, default=True),
)

history_table = Table(
    "aliasflow_sync_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(63), nullable=False, index=True),
    Column("trigger", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("result", String(16), nullable=False),
    Column("action", String(16)),
    Column("manifest_revision", String(64)),
    Column("model_name", String(256)),
    Column("model_version", String(32)),
    Column("run_id", String(64)),
    Column("image", String(512)),
    Column("image_digest", String(128)),
    Column("message", Text, nullable=False, default=""),
    Column("reason", String(32)),
)

deliveries_table = Table(
    "aliasflow_webhook_deliveries",
    metadata,
    Column("delivery_id", String(128), primary_key=True),
    Column("received_at", Float, nullable=False, index=True),
    Column("outcome", String(32), nullable=False),
)


# What a transaction does, which decides whether its success proves the store healed.
Access = Literal["read", "update", "insert"]


notifications_table = Table(
    "aliasflow_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("event", String(32), nullable=False),
    Column("deployment", String(63), nullable=False, index=True),
    Column("outcome", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("at", Float, nullable=False),
)


bakes_table = Table(
    "aliasflow_bakes",
    metadata,
    Column("deployment", String(63), primary_key=True),
    Column("model_name", String(256), nullable=False),
    Column("alias", String(256)),
    Column("from_version", String(32)),
    Column("to_version", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("baseline", Text, nullable=False),
    Column("start", Text, nullable=False),
    Column("verdict", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("finished_at", Float),
    Column("failed_at", Float),
    Column("step", Integer, nullable=False, default=-1),
    Column("step_started_at", Float),
    Column("held", Boolean, nullable=False, default=False),
)


# Columns added after the first release: (table, column, SQL type and default). A store
# created by an older controller gets them on start-up, and its rows stay readable: an old
# row's reason is read back from the `Reason: ...` prefix its message used to carry.
ADDED_COLUMNS = (
    (status_table, "reason", "VARCHAR(32)"),
    (status_table, "prune", "BOOLEAN NOT NULL DEFAULT TRUE"),
    (history_table, "reason", "VARCHAR(32)"),
)


class SqlHistoryStore:
    def __init__(self, url: str) -> None:
        self.url = url
        connect_args: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # The reconcile workers, the poller and the API share one file.
            connect_args = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        #: The last failure, for status pages and /healthz; None once the store works again.
        #: Only a new row proves a failed write healed: a full disk still reads, and still
        #: updates rows in place.
        self.error: str | None = None
        self._error_from_write = False
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        with self._connection("insert") as connection:
            metadata.create_all(connection)
            _add_missing_columns(connection)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _connection(self, kind: Access = "update") -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            self.error = f"history store unavailable: {_short(exc)}"
            self._error_from_write = self._error_from_write or kind != "read"
            raise StoreUnavailableError(self.error) from exc
        if self.error is not None and (kind == "insert" or not self._error_from_write):
            self.error, self._error_from_write = None, False

    # --- sync history -------------------------------------------------------------

    def begin_sync(self, record: SyncRecord) -> SyncRecord:
        values = _row(record)
        values.pop("id")
        with self._connection("insert") as connection:
            new_id = connection.execute(insert(history_table).values(**values)).inserted_primary_key
        return replace(record, id=int(new_id[0]))  # type: ignore[index]

    def finish_sync(self, record: SyncRecord) -> None:
        if record.id is None:
            raise ValueError("finish_sync needs a record returned by begin_sync")
        values = _row(record)
        values.pop("id")
        with self._connection() as connection:
            connection.execute(
                update(history_table).where(history_table.c.id == record.id).values(**values)
            )

    def running_deployments(self) -> list[str]:
        """Deployments with a `Running` row: at start-up, the syncs a stop interrupted."""
        query = (
            select(history_table.c.deployment)
            .where(history_table.c.result == Result.RUNNING.value)
            .distinct()
        )
        with self._connection("read") as connection:
            return sorted(row[0] for row in connection.execute(query))

    def probe(self) -> bool:
        """Can the store take a new row again? A throw-away insert, rolled back.

        Steady state writes nothing, so without a probe a store that recovered from a
        full disk would be reported broken until the next promotion.
        """
        try:
            with self._connection("insert") as connection:
                transaction = connection.begin_nested()
                connection.execute(
                    insert(deliveries_table).values(
                        delivery_id=f"aliasflow-probe-{time.time_ns()}",
                        received_at=0.0,
                        outcome="probe",
                    )
                )
                transaction.rollback()
        except StoreUnavailableError:
            return False
        return True

    def mark_interrupted(self, now: float | None = None) -> int:
        """Close rows a killed controller left `Running`, so the history tells the truth."""
        with self._connection() as connection:
            result = connection.execute(
                update(history_table)
                .where(history_table.c.result == Result.RUNNING.value)
                .values(
                    result=Result.INTERRUPTED.value,
                    reason=Reason.INTERRUPTED.value,
                    finished_at=now or time.time(),
                    message="controller stopped during this sync",
                )
            )
            return int(result.rowcount)

    def history(self, deployment: str, limit: int = 50) -> list[SyncRecord]:
        query = (
            select(history_table)
            .where(history_table.c.deployment == deployment)
            .order_by(history_table.c.id.desc())
            .limit(limit)
        )
        with self._connection("read") as connection:
            return [_sync_record(row._mapping) for row in connection.execute(query)]

    def latest_syncs(self) -> dict[str, SyncRecord]:
        """Each deployment's newest history row, in one query (the overview needs them all)."""
        newest = select(func.max(history_table.c.id)).group_by(history_table.c.deployment)
        query = select(history_table).where(history_table.c.id.in_(newest.scalar_subquery()))
        with self._connection() as connection:
            records = [_sync_record(row._mapping) for row in connection.execute(query)]
        return {record.deployment: record for record in records}

    def last_succeeded(self, deployment: str) -> list[SyncRecord]:
        query = (
            select(history_table)
            .where(
                history_table.c.deployment == deployment,
                history_table.c.result == Result.SUCCEEDED.value,
            )
            .order_by(history_table.c.id.desc())
            .limit(20)
        )
        with self._connection("read") as connection:
            return [_sync_record(row._mapping) for row in connection.execute(query)]

    # --- status ---------------------------------------------------------------------

    def put_status(self, status: DeploymentStatus) -> None:
        values = asdict(status)
        values["sync"] = status.sync.value
        values["health"] = status.health.value
        values["reason"] = None if status.reason is None else status.reason.value
        values["updated_at"] = status.updated_at or time.time()
        with self._connection() as connection:
            exists = connection.execute(
                select(status_table.c.name).where(status_table.c.name == status.name)
            ).first()
            if exists:
                connection.execute(
                    update(status_table).where(status_table.c.name == status.name).values(**values)
                )
            else:
                connection.execute(insert(status_table).values(**values))

    def get_status(self, name: str) -> DeploymentStatus | None:
        with self._connection("read") as connection:
            row = connection.execute(
                select(status_table).where(status_table.c.name == name)
            ).first()
        return None if row is None else _status(row._mapping)

    def list_status(self) -> list[DeploymentStatus]:
        with self._connection("read") as connection:
            rows = connection.execute(select(status_table).order_by(status_table.c.name))
            return [_status(row._mapping) for row in rows]

    def delete_status(self, name: str) -> None:
        with self._connection() as connection:
            connection.execute(delete(status_table).where(status_table.c.name == name))

    # --- webhook deliveries -------------------------------------------------------

    def remember_delivery(self, delivery_id: str, outcome: str, now: float | None = None) -> bool:
        """Record a delivery id; False when it was seen before (a replay)."""
        try:
            with self._connection("insert") as connection:
                connection.execute(
                    insert(deliveries_table).values(
                        delivery_id=delivery_id, received_at=now or time.time(), outcome=outcome
                    )
                )
        except IntegrityError:
            return False
        return True

    def forget_deliveries_before(self, cutoff: float) -> int:
        """Ids older than the signature's max age cannot be replayed anyway."""
        with self._connection() as connection:
            result = connection.execute(
                delete(deliveries_table).where(deliveries_table.c.received_at < cutoff)
            )
            return int(result.rowcount)

    # --- bakes --------------------------------------------------------------------------

    def put_bake(self, bake: Bake) -> None:
        values = asdict(bake)
        values["state"] = bake.state.value
        with self._connection() as connection:
            connection.execute(
                delete(bakes_table).where(bakes_table.c.deployment == bake.deployment)
            )
            connection.execute(insert(bakes_table).values(**values))

    def get_bake(self, deployment: str) -> Bake | None:
        query = select(bakes_table).where(bakes_table.c.deployment == deployment)
        with self._connection("read") as connection:
            row = connection.execute(query).first()
        return None if row is None else _bake(row._mapping)

    def bakes(self, states: tuple[BakeState, ...] = ()) -> list[Bake]:
        query = select(bakes_table).order_by(bakes_table.c.deployment)
        if states:
            query = query.where(bakes_table.c.state.in_([state.value for state in states]))
        with self._connection("read") as connection:
            return [_bake(row._mapping) for row in connection.execute(query)]

    # --- outgoing notifications -------------------------------------------------------

    def record_notification(self, delivery: NotificationDelivery) -> None:
        with self._connection("insert") as connection:
            connection.execute(insert(notifications_table).values(**asdict(delivery)))

    def notifications(self, limit: int = 50) -> list[NotificationDelivery]:
        query = select(notifications_table).order_by(notifications_table.c.id.desc()).limit(limit)
        with self._connection("read") as connection:
            rows = connection.execute(query)
            return [
                NotificationDelivery(
                    **{f.name: row._mapping[f.name] for f in fields(NotificationDelivery)}
                )
                for row in rows
            ]

    def delivery_counts(self) -> dict[str, int]:
        query = select(deliveries_table.c.outcome, func.count()).group_by(
            deliveries_table.c.outcome
        )
        with self._connection("read") as connection:
            return {outcome: int(count) for outcome, count in connection.execute(query)}


def _add_missing_columns(connection: Connection) -> None:
    inspector = inspect(connection)
    for table, column, sql_type in ADDED_COLUMNS:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        if column not in present:
            connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column} {sql_type}")


def _bake(row: Any) -> Bake:
    values = {f.name: row[f.name] for f in fields(Bake)}
    values["state"] = BakeState(values["state"])
    return Bake(**values)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard read while a reconcile writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _row(record: SyncRecord) -> dict[str, Any]:
    values = asdict(record)
    values["result"] = record.result.value
    values["reason"] = None if record.reason is None else record.reason.value
    return values


def _sync_record(row: Any) -> SyncRecord:
    names = {f.name for f in fields(SyncRecord)}
    values = {key: row[key] for key in names}
    values["result"] = Result(values["result"])
    values["message"] = values["message"] or ""
    values["reason"] = _reason(values["reason"], values["message"])
    return SyncRecord(**values)


def _status(row: Any) -> DeploymentStatus:
    names = {f.name for f in fields(DeploymentStatus)}
    values = {key: row[key] for key in names}
    values["sync"] = Sync(values["sync"])
    values["health"] = Health(values["health"])
    values["reason"] = _reason(values["reason"], values["message"])
    values["prune"] = bool(values["prune"]) if values["prune"] is not None else True
    return DeploymentStatus(**values)


_KNOWN_REASONS = {reason.value: reason for reason in Reason}


def _reason(stored: str | None, message: str) -> Reason | None:
    """The stored reason; for rows written before it was a column, the message's prefix."""
    if stored:
        return _KNOWN_REASONS.get(stored)
    prefix, colon, _ = (message or "").partition(":")
    return _KNOWN_REASONS.get(prefix) if colon else None


def _short(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
