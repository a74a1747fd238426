"""SQLite feed loads in a writer process of their own, through ADBC.

Python's sqlite3 binds rows one Python value at a time: a 38-column pathway row costs about
40 object conversions, which caps a million-row load at well over ten seconds of one core.
The ADBC SQLite driver binds Arrow columns in C, several times faster (bench/RESULTS.md).

It cannot run inside the ingest process: the driver carries its own copy of the SQLite
library, and two SQLite libraries in one process break SQLite's locking (POSIX locks belong to
the process, so one copy closing the file drops the other's locks; see "How to corrupt an
SQLite database file", section 2.2). So each load gets a short-lived process that holds only
the ADBC connection: `SqliteWriterProcess` is the ingest side, speaking the `FeedWrites`
statements over a pipe (frames travel pickled, which Polars does as Arrow IPC); `serve` is the
writer side. If the ingest process dies the pipe closes, and the writer rolls back and exits:
nothing of the load is committed.

Values are written in SQLAlchemy's SQLite conventions (ISO dates, datetimes as
'YYYY-MM-DD HH:MM:SS.ffffff', booleans 0/1), so they read back through the models.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection as Pipe
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

import polars as pl

from ptl.store.bulk import sqlite_values

#: Columns of `source_identity` whose values a load compares and updates.
IDENTITY_VALUES = ("nhs_number", "nhs_number_status", "family_name", "given_name", "date_of_birth",
                   "sex", "postcode")
IDENTITY_SCHEMA = {"id": pl.Int64, "date_of_birth": pl.Date, "values_census_date": pl.Date}


class WriterFailed(RuntimeError):
    """A statement failed in the writer process (the message says which and why)."""


class SqliteWriterProcess:
    """The ingest side: each method runs the statement of the same name in the writer."""

    def __init__(self, database: str) -> None:
        # A fresh interpreter (`python -m`), not fork (never fork a process running Polars'
        # threads) nor multiprocessing's spawn (which re-imports the caller's main script).
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "ingest.sqlite_writer", database, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            )
        self._pipe = Pipe(ours.detach())
        self._posted: list[str] = []  # statements sent whose answers are not read yet

    def _post(self, method: str, *args: Any) -> None:
        """Send a statement without waiting for its answer: the next batch is pickled and
        sent while the writer still stores this one. `_call` reads the answers first, so a
        failure is raised before anything else runs, and always before a commit."""
        self._pipe.send((method, args))
        self._posted.append(method)

    def _answer(self, method: str) -> Any:
        try:
            status, value = self._pipe.recv()
        except EOFError:
            raise WriterFailed(f"the SQLite writer process ended during {method}") from None
        if status == "error":
            raise WriterFailed(f"SQLite writer, {method}: {value}")
        if status == "frame":  # a frame handed over in anonymous memory (see `_answer_with`)
            with os.fdopen(recv_handle(self._pipe), "rb") as handle:
                handle.seek(0)  # the writer's descriptor and this one share one offset
                return pl.read_ipc(handle)
        return value

    def _call(self, method: str, *args: Any) -> Any:
        while self._posted:
            self._answer(self._posted.pop(0))
        self._pipe.send((method, args))
        return self._answer(method)

    def begin(self) -> None:
        self._call("begin")

    def lock_provider(self, provider_code: str) -> None:
        """BEGIN IMMEDIATE holds the database's write lock already."""

    def loaded_feed_with_sha(self, provider_code: str, sha256: str) -> int | None:
        found: int | None = self._call("loaded_feed_with_sha", provider_code, sha256)
        return found

    def ensure_organisation(self, provider_code: str) -> None:
        self._call("ensure_organisation", provider_code)

    def insert_feed(self, values: dict[str, Any]) -> int:
        return int(self._call("insert_feed", values))

    def update_feed(self, feed_id: int, values: dict[str, Any]) -> None:
        self._call("update_feed", feed_id, values)

    def existing_identities(self, provider_code: str) -> pl.DataFrame:
        frame: pl.DataFrame = self._call("existing_identities", provider_code)
        return frame

    def allocate_ids(self, table: str, count: int) -> int:
        return int(self._call("allocate_ids", table, count))

    def insert(self, table: str, frame: pl.DataFrame) -> None:
        self._post("insert", table, frame)

    def update_identities(self, changed: pl.DataFrame, census_date: dt.date) -> None:
        self._post("update_identities", changed, census_date)

    def current_census(self, provider_code: str) -> dt.date | None:
        found: dt.date | None = self._call("current_census", provider_code)
        return found

    def set_current(self, provider_code: str, feed_id: int, census_date: dt.date) -> None:
        self._call("set_current", provider_code, feed_id, census_date)

    def open_partition(self, feed_id: int) -> None:
        """SQLite has no partitions: pathways go through `insert`."""
        return None

    def attach_partition(self, feed_id: int) -> None:
        raise NotImplementedError("SQLite has no pathway partitions")

    def open_identity_partition(self, provider_code: str) -> None:
        """SQLite has no partitions: identities go to `source_identity`."""
        return None

    def attach_identity_partition(self, provider_code: str) -> None:
        raise NotImplementedError("SQLite has no identity partitions")

    def commit(self) -> None:
        """Commit; the writer then checkpoints the WAL and exits on its own, reaped by a
        background thread (the load is committed and visible before that work is done)."""
        try:
            self._call("commit")
        except BaseException:
            self._stop()
            raise
        self._pipe.close()
        threading.Thread(target=self._process.wait, name="ptl-sqlite-writer-exit", daemon=True).start()

    def rollback(self) -> None:
        try:
            if self._process.poll() is None and not self._pipe.closed:
                while self._posted:  # a failure among them may be why this rolls back
                    with contextlib.suppress(WriterFailed):
                        self._answer(self._posted.pop(0))
                self._call("rollback")
        finally:
            self._stop()

    def _stop(self) -> None:
        if not self._pipe.closed:
            self._pipe.close()  # the writer rolls back anything uncommitted when it sees this
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def serve(pipe: Pipe, database: str) -> None:
    """The writer process: run statements from `pipe` until commit, rollback or a closed pipe.

    A thread receives (and unpickles) the next statement while this one runs: SQLite's C
    library releases the GIL while it stores a batch."""
    writes = SqliteAdbcWrites(database)
    inbox: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue(maxsize=1)

    def receive() -> None:
        while True:
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                inbox.put(None)  # the ingest process is gone: roll back (finally, below)
                return
            inbox.put(message)
            if message[0] in ("commit", "rollback"):
                return

    threading.Thread(target=receive, name="ptl-sqlite-writer-inbox", daemon=True).start()
    try:
        while True:
            message = inbox.get()
            if message is None:
                return
            method, args = message
            try:
                result = getattr(writes, method)(*args)
            except Exception as exc:  # noqa: BLE001 - reported to the ingest side, which raises
                pipe.send(("error", f"{type(exc).__name__}: {exc}"))
                continue
            _answer_with(pipe, result)
            if method == "commit":
                writes.checkpoint()  # the load is answered: fold its WAL into the file now
            if method in ("commit", "rollback"):
                return
    finally:
        writes.close()


def _answer_with(pipe: Pipe, result: Any) -> None:
    """Send a statement's result. A frame (the provider's known identities: a million rows
    is about 120 MB) goes as Arrow IPC in an anonymous memory file whose descriptor is passed
    over the socket: about ten times faster than pickling it through the socket, and, unlike
    a named temporary file, it leaves nothing behind if either process dies (Linux; elsewhere
    the frame is pickled)."""
    if not isinstance(result, pl.DataFrame) or not hasattr(os, "memfd_create"):
        pipe.send(("ok", result))
        return
    descriptor = os.memfd_create("ptl-sqlite-writer-frame", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(descriptor), "wb") as handle:
            result.write_ipc(handle)
        pipe.send(("frame", None))
        send_handle(pipe, descriptor, os.getppid())
    finally:
        os.close(descriptor)


def _sqlite_value(value: Any) -> Any:
    """A Python value as SQLAlchemy stores it in SQLite."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


class SqliteAdbcWrites:
    """The writer side: one ADBC connection, one transaction (`BEGIN IMMEDIATE` … `COMMIT`)."""

    def __init__(self, database: str) -> None:
        import adbc_driver_sqlite.dbapi as adbc

        self._connection = adbc.connect(database, autocommit=True)
        self._cursor = self._connection.cursor()
        self._open = False
        self._closed = False
        # The same settings as the engine's connections (ptl.store.engine).
        # No checkpoint at COMMIT (a million-row load's WAL takes about half a second to copy
        # into the file): `checkpoint` runs it after the commit has been answered.
        for pragma in ("busy_timeout=60000", "synchronous=NORMAL", "foreign_keys=ON", "cache_size=-131072",
                       "wal_autocheckpoint=0"):
            self._rows(f"PRAGMA {pragma}")

    def _rows(self, sql: str, *values: Any) -> list[tuple[Any, ...]]:
        """Run a statement to completion (ADBC steps SQLite statements as their rows are read,
        so every answer is read, empty or not)."""
        self._cursor.execute(sql, tuple(_sqlite_value(v) for v in values) if values else None)
        return list(self._cursor.fetchall())

    def _scalar(self, sql: str, *values: Any) -> Any:
        rows = self._rows(sql, *values)
        return rows[0][0] if rows else None

    def begin(self) -> None:
        self._rows("BEGIN IMMEDIATE")
        self._open = True

    def loaded_feed_with_sha(self, provider_code: str, sha256: str) -> int | None:
        found = self._scalar("SELECT id FROM feed WHERE provider_code = ? AND sha256 = ? AND status = 'loaded'",
                             provider_code, sha256)
        return None if found is None else int(found)

    def ensure_organisation(self, provider_code: str) -> None:
        self._rows("INSERT INTO organisation (code, kind, updated_at) VALUES (?, 'other', ?) "
                   "ON CONFLICT (code) DO NOTHING", provider_code, dt.datetime.now(dt.UTC))

    def insert_feed(self, values: dict[str, Any]) -> int:
        names = list(values)
        return int(self._scalar(
            f"INSERT INTO feed ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) RETURNING id",
            *values.values(),
        ))

    def update_feed(self, feed_id: int, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{name} = ?" for name in values)
        self._rows(f"UPDATE feed SET {sets} WHERE id = ?", *values.values(), feed_id)

    def existing_identities(self, provider_code: str) -> pl.DataFrame:
        self._cursor.execute(
            "SELECT id, local_patient_id, " + ", ".join(IDENTITY_VALUES) + ", values_census_date "
            "FROM source_identity WHERE provider_code = ?", (provider_code,),
        )
        frame = pl.from_arrow(self._cursor.fetch_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        # Arrow types follow the values found (an empty answer has none): set them all.
        return frame.select(
            pl.col(name).cast(pl.String).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
            if IDENTITY_SCHEMA.get(name) == pl.Date
            else pl.col(name).cast(IDENTITY_SCHEMA.get(name, pl.String))
            for name in frame.columns
        )

    def allocate_ids(self, table: str, count: int) -> int:
        """The first of `count` new ids of `table` (the write lock keeps them ours)."""
        assert table in ("pathway", "source_identity")
        return int(self._scalar(f"SELECT COALESCE(MAX(id), 0) FROM {table}")) + 1 if count else 0

    def insert(self, table: str, frame: pl.DataFrame) -> None:
        if frame.height:
            self._cursor.adbc_ingest(table, sqlite_values(frame).to_arrow(), mode="append")

    def update_identities(self, changed: pl.DataFrame, census_date: dt.date) -> None:
        self._rows("CREATE TEMP TABLE IF NOT EXISTS identity_change (id INTEGER PRIMARY KEY, "
                   + ", ".join(f"{c} TEXT" for c in IDENTITY_VALUES) + ")")
        self._rows("DELETE FROM temp.identity_change")
        self._cursor.adbc_ingest("identity_change", sqlite_values(changed).to_arrow(), mode="append",
                                 temporary=True)
        sets = ", ".join(f"{c} = t.{c}" for c in IDENTITY_VALUES)
        self._rows(f"UPDATE source_identity SET {sets}, values_census_date = ? "
                   "FROM temp.identity_change AS t WHERE source_identity.id = t.id", census_date)

    def current_census(self, provider_code: str) -> dt.date | None:
        found = self._scalar("SELECT census_date FROM current_snapshot WHERE provider_code = ?", provider_code)
        return None if found is None else dt.date.fromisoformat(str(found)[:10])

    def set_current(self, provider_code: str, feed_id: int, census_date: dt.date) -> None:
        self._rows(
            "INSERT INTO current_snapshot (provider_code, feed_id, census_date, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (provider_code) DO UPDATE SET feed_id = excluded.feed_id, "
            "census_date = excluded.census_date, updated_at = excluded.updated_at",
            provider_code, feed_id, census_date, dt.datetime.now(dt.UTC),
        )

    def commit(self) -> None:
        self._rows("COMMIT")
        self._open = False

    def checkpoint(self) -> None:
        """Copy the WAL into the database file without waiting for readers (PASSIVE): what
        SQLite would otherwise do inside the COMMIT. A failure here loses nothing."""
        with contextlib.suppress(Exception):  # the next commit of any connection checkpoints
            self._rows("PRAGMA wal_checkpoint(PASSIVE)")

    def rollback(self) -> None:
        if self._open:
            self._rows("ROLLBACK")
            self._open = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._open:
                self._rows("ROLLBACK")
        finally:
            self._cursor.close()
            self._connection.close()


if __name__ == "__main__":
    serve(Pipe(int(sys.argv[2])), sys.argv[1])
