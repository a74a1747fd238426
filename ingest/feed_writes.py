"""The statements of one feed's load transaction (`FeedLoad`, ingest/load.py).

`FeedWrites` is what a load needs: a handful of statements and bulk inserts in one
transaction. Two implementations:

- `ConnectionWrites`: a SQLAlchemy connection; bulk rows by `COPY` on PostgreSQL (psycopg).
  On PostgreSQL the feed's pathways go to a `PartitionWrites` on a second connection: the
  feed's own partition, built apart and attached by the feed's transaction
  (ptl/store/pathway_partitions.py), so the server writes identities and pathways at once.
- `SqliteWriterProcess` (ingest/sqlite_writer.py): a SQLite file, written by a process of its
  own through ADBC, which binds Arrow columns in C instead of one Python value at a time.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import ExitStack
from typing import Any, Protocol

import polars as pl
from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from ingest.sqlite_writer import IDENTITY_SCHEMA, IDENTITY_VALUES, SqliteWriterProcess
from ptl.store import identity_partitions, pathway_partitions
from ptl.store.bulk import insert_frame, read_frame
from ptl.store.engine import write_connection
from ptl.store.models import CurrentSnapshot, Feed, Organisation

log = logging.getLogger("ptl.ingest.load")

_IDENTITY_QUERY = (
    "SELECT id, local_patient_id, " + ", ".join(IDENTITY_VALUES) + ", values_census_date "
    "FROM source_identity WHERE provider_code = {provider}"
)


class FeedWrites(Protocol):
    """The statements of one load transaction; `begin` starts it (connecting may come first)."""

    def begin(self) -> None: ...
    def lock_provider(self, provider_code: str) -> None: ...
    def loaded_feed_with_sha(self, provider_code: str, sha256: str) -> int | None: ...
    def ensure_organisation(self, provider_code: str) -> None: ...
    def insert_feed(self, values: dict[str, Any]) -> int: ...
    def update_feed(self, feed_id: int, values: dict[str, Any]) -> None: ...
    def existing_identities(self, provider_code: str) -> pl.DataFrame: ...
    def allocate_ids(self, table: str, count: int) -> int: ...
    def insert(self, table: str, frame: pl.DataFrame) -> None: ...
    def update_identities(self, changed: pl.DataFrame, census_date: dt.date) -> None: ...
    def current_census(self, provider_code: str) -> dt.date | None: ...
    def set_current(self, provider_code: str, feed_id: int, census_date: dt.date) -> None: ...
    def open_partition(self, feed_id: int) -> PartitionWrites | None:
        """The feed's pathway partition on a connection of its own, or None: pathways then go
        through `insert` in this transaction."""
        ...
    def attach_partition(self, feed_id: int) -> None: ...
    def open_identity_partition(self, provider_code: str) -> str | None:
        """The table a provider's first load writes its identities to (a partition built
        apart, attached by `attach_identity_partition`), or None: they go to `source_identity`."""
        ...
    def attach_identity_partition(self, provider_code: str) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


def open_feed_writes(engine: Engine, writer_process: bool = False) -> FeedWrites:
    """Connect for a load; `begin` comes later. `writer_process`: write a SQLite file from a
    process of its own through ADBC (worth its start-up, about half a second, for big files)."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and writer_process and database and database != ":memory:":
        return SqliteWriterProcess(database)
    return ConnectionWrites(engine)


def loaded_feed_with_sha(connection: Connection, provider_code: str, sha256: str) -> int | None:
    return connection.execute(
        select(Feed.id).where(
            Feed.provider_code == provider_code, Feed.sha256 == sha256, Feed.status == "loaded"
        )
    ).scalar()


def ensure_organisation(connection: Connection, provider_code: str) -> None:
    insert_fn = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(
        insert_fn(Organisation)
        .values(code=provider_code, kind="other", updated_at=dt.datetime.now(dt.UTC))
        .on_conflict_do_nothing(index_elements=["code"])
    )


def insert_feed(connection: Connection, values: dict[str, Any]) -> int:
    return int(connection.execute(insert(Feed).values(**values).returning(Feed.id)).scalar_one())


class PartitionWrites:
    """One feed's pathways in a table of their own, on a second connection (PostgreSQL).

    Its own transaction creates the table, takes the COPYs and, in `finish`, builds the
    primary key and commits; the feed's transaction then attaches the table. A session
    advisory lock held from start to `close` marks the table as a live load's, so that only
    tables left by dead loads are dropped by `pathway_partitions.drop_abandoned`."""

    def __init__(self, engine: Engine, feed_id: int) -> None:
        self.feed_id = feed_id
        self.table = pathway_partitions.partition_name(feed_id)
        self._stack = ExitStack()
        self.connection: Connection = self._stack.enter_context(engine.connect())
        self._lock = {"key": pathway_partitions.staging_lock_key(feed_id)}
        self._committed = False
        try:
            with self.connection.begin():
                pathway_partitions.drop_abandoned(self.connection)
        except SQLAlchemyError:  # housekeeping: never a reason to refuse this load
            log.warning("could not drop tables left by abandoned loads; the next load tries again",
                        exc_info=True)
        try:
            with self.connection.begin():
                self.connection.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), self._lock)
            self._transaction = self.connection.begin()
            pathway_partitions.create_unattached(self.connection, feed_id)
        except BaseException:
            self.close()  # a pooled connection keeps session locks: release it explicitly
            raise

    def insert(self, frame: pl.DataFrame) -> None:
        insert_frame(self.connection, self.table, frame)

    def finish(self) -> None:
        """Index and commit the table: it waits, unattached, for the feed's transaction."""
        pathway_partitions.index_unattached(self.connection, self.feed_id)
        self._transaction.commit()
        self._committed = True

    def close(self) -> None:
        """Let go of the table (once attached, or dropped)."""
        try:
            if self.connection.in_transaction():
                self.connection.rollback()
            with self.connection.begin():
                self.connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), self._lock)
        finally:
            self._stack.close()

    def abort(self) -> None:
        """Undo the table: roll back its transaction, or drop it if already committed."""
        try:
            if self._transaction.is_active:
                self._transaction.rollback()
            elif self._committed:
                with self.connection.begin():
                    self.connection.execute(text(f'DROP TABLE IF EXISTS "{self.table}"'))
        finally:
            self.close()


class ConnectionWrites:
    """A load transaction on a SQLAlchemy connection of its own (PostgreSQL: COPY)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._stack = ExitStack()
        self.connection: Connection = self._stack.enter_context(write_connection(engine))
        self._transaction: Any = None

    def begin(self) -> None:
        self._transaction = self.connection.begin()

    def loaded_feed_with_sha(self, provider_code: str, sha256: str) -> int | None:
        return loaded_feed_with_sha(self.connection, provider_code, sha256)

    def lock_provider(self, provider_code: str) -> None:
        """Serialise loads of one provider (SQLite: BEGIN IMMEDIATE already holds the lock)."""
        if self.connection.dialect.name == "postgresql":
            self.connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                    {"key": f"ptl-feed:{provider_code}"})

    def ensure_organisation(self, provider_code: str) -> None:
        ensure_organisation(self.connection, provider_code)

    def insert_feed(self, values: dict[str, Any]) -> int:
        return insert_feed(self.connection, values)

    def update_feed(self, feed_id: int, values: dict[str, Any]) -> None:
        self.connection.execute(update(Feed).where(Feed.id == feed_id).values(**values))

    def existing_identities(self, provider_code: str) -> pl.DataFrame:
        return read_frame(self.connection, _IDENTITY_QUERY.format(provider=":provider"),
                          {"provider": provider_code}, schema=IDENTITY_SCHEMA)

    def allocate_ids(self, table: str, count: int) -> int:
        """Reserve `count` consecutive ids of `table` (pathway or source_identity); return the
        first. Supplying ids lets PostgreSQL's COPY insert rows in batches: a column left to a
        volatile default such as nextval() forces it to insert them one at a time."""
        assert table in ("pathway", "source_identity")
        connection = self.connection
        if count == 0:
            return 0
        if connection.dialect.name != "postgresql":
            highest = connection.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one()
            return int(highest) + 1
        # Sequences are not transactional: reserve a block under a short session lock.
        lock = {"key": f"ptl-ids:{table}"}
        connection.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), lock)
        try:
            first = connection.execute(
                text("SELECT nextval(pg_get_serial_sequence(:table, 'id'))"), {"table": table}
            ).scalar_one()
            if count > 1:
                connection.execute(
                    text("SELECT setval(pg_get_serial_sequence(:table, 'id'), :last)"),
                    {"table": table, "last": int(first) + count - 1},
                )
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), lock)
        return int(first)

    def insert(self, table: str, frame: pl.DataFrame) -> None:
        insert_frame(self.connection, table, frame)

    def update_identities(self, changed: pl.DataFrame, census_date: dt.date) -> None:
        connection = self.connection
        assignments = ", ".join(f"{c} = t.{c}" for c in IDENTITY_VALUES)
        if connection.dialect.name == "postgresql":
            connection.execute(text(
                "CREATE TEMPORARY TABLE IF NOT EXISTS identity_change ON COMMIT DROP AS "
                "SELECT id, " + ", ".join(IDENTITY_VALUES) + " FROM source_identity WITH NO DATA"
            ))
            connection.execute(text("TRUNCATE identity_change"))
            insert_frame(connection, "identity_change", changed)
            connection.execute(text(
                f"UPDATE source_identity s SET {assignments}, values_census_date = :census "
                "FROM identity_change t WHERE s.id = t.id"
            ), {"census": census_date})
            return
        prepared = changed.with_columns(pl.col("date_of_birth").dt.strftime("%Y-%m-%d"))
        sets = ", ".join(f"{c} = ?" for c in IDENTITY_VALUES)
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.executemany(
            f"UPDATE source_identity SET {sets}, values_census_date = '{census_date.isoformat()}' WHERE id = ?",
            prepared.select(*IDENTITY_VALUES, "id").iter_rows(),
        )

    def current_census(self, provider_code: str) -> dt.date | None:
        return self.connection.execute(
            select(CurrentSnapshot.census_date).where(CurrentSnapshot.provider_code == provider_code)
        ).scalar()

    def set_current(self, provider_code: str, feed_id: int, census_date: dt.date) -> None:
        insert_fn = pg_insert if self.connection.dialect.name == "postgresql" else sqlite_insert
        statement = insert_fn(CurrentSnapshot).values(
            provider_code=provider_code, feed_id=feed_id, census_date=census_date,
            updated_at=dt.datetime.now(dt.UTC),
        )
        self.connection.execute(
            statement.on_conflict_do_update(
                index_elements=["provider_code"],
                set_={"feed_id": statement.excluded.feed_id, "census_date": statement.excluded.census_date,
                      "updated_at": statement.excluded.updated_at},
            )
        )

    def open_partition(self, feed_id: int) -> PartitionWrites | None:
        if not pathway_partitions.is_partitioned(self.connection):
            return None
        return PartitionWrites(self._engine, feed_id)

    def attach_partition(self, feed_id: int) -> None:
        pathway_partitions.attach(self.connection, feed_id)

    def open_identity_partition(self, provider_code: str) -> str | None:
        if not identity_partitions.is_partitioned(self.connection) or \
                identity_partitions.has_partition(self.connection, provider_code):
            return None
        return identity_partitions.create_unattached(self.connection, provider_code)

    def attach_identity_partition(self, provider_code: str) -> None:
        identity_partitions.attach(self.connection, provider_code)

    def commit(self) -> None:
        try:
            self._transaction.commit()
        finally:
            self._stack.close()

    def rollback(self) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self._stack.close()
