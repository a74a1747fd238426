"""Loading one provider-census snapshot into the store, in one transaction.

Within a single transaction (per-provider lock held): the feed row, new and changed source
identities, every pathway, the row issues, and the provider's *current snapshot* pointer when
the census is at least as new as the current one. A crash at any point leaves the previous
snapshot exactly as it was. Bulk paths only: COPY on PostgreSQL, one-transaction executemany
on SQLite (ingest/feed_writes.py).

`FeedLoad` runs that transaction on a thread of its own and takes the snapshot in batches, so
the database stores batch k while the pipeline validates batch k+1: on two cores, Polars works
on one while the database (or SQLite's C library, which releases the GIL) works on the other.
The caller's thread prepares each batch's rows (identities to insert or update, pathways with
their ids), so the writing threads do nothing but write. On PostgreSQL the pathways go to the
feed's own partition on a second connection and a third thread (`PartitionWrites`,
ingest/feed_writes.py), so the server writes a batch's identities and another's pathways at
once; the feed's transaction attaches the partition when it commits.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Engine

from ingest.feed_writes import IDENTITY_VALUES, FeedWrites, PartitionWrites, open_feed_writes
from ptl.store.models import Pathway

log = logging.getLogger("ptl.ingest.load")

PATHWAY_COLUMNS = tuple(
    c.name for c in Pathway.__table__.columns if c.name not in ("id", "feed_id", "source_identity_id")
)
ISSUE_COLUMNS = ("row_number", "column_name", "source_column", "severity", "kind", "reason",
                 "raw_value", "raw_row")
#: Feed columns written when the load is committed (the rest when it begins).
_OUTCOME_COLUMNS = ("rows_read", "rows_loaded", "rows_rejected", "rows_warned", "message",
                    "read_seconds", "validate_seconds", "load_seconds")


@dataclass
class FeedRecord:
    """What is known about a received file, to be written as its `feed` row."""

    provider_code: str
    filename: str
    sha256: str
    file_format: str
    profile: str
    source: str
    census_date: dt.date | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_warned: int = 0
    message: str | None = None
    read_seconds: float | None = None
    validate_seconds: float | None = None
    load_seconds: float | None = None
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class LoadOutcome:
    feed_id: int
    duplicate: bool  # the same file was already loaded (feed_id is that feed)
    became_current: bool
    #: source identities this load inserted or whose identifying values it changed: what
    #: identity linking has to look at afresh (0: nothing, when every earlier link stands)
    identities_written: int = 0


def _issue_rows(issues: pl.DataFrame, feed_id: int) -> pl.DataFrame:
    return issues.select(
        pl.lit(feed_id, dtype=pl.Int64).alias("feed_id"),
        pl.col("row").alias("row_number"),
        pl.col("column").alias("column_name"),
        *[pl.col(c) for c in ISSUE_COLUMNS[2:]],
    )


def _feed_values(record: FeedRecord, status: str) -> dict[str, Any]:
    return {**record.__dict__, "status": status}


def record_refused(engine: Engine, record: FeedRecord, issues: pl.DataFrame | None) -> int:
    """Write a refused feed and its row issues (nothing else is touched)."""
    if record.message:  # a refusal may name what the client sent; PostgreSQL text holds no NUL
        record.message = record.message.replace("\x00", "\\0")
    writes = open_feed_writes(engine)
    try:
        writes.begin()
        writes.ensure_organisation(record.provider_code)
        feed_id = writes.insert_feed(_feed_values(record, "refused"))
        if issues is not None and issues.height:
            writes.insert("row_issue", _issue_rows(issues, feed_id))
    except BaseException:
        writes.rollback()
        raise
    writes.commit()
    return feed_id


def _within(frame: pl.DataFrame, lo: str, hi: str) -> pl.DataFrame:
    """The rows of a frame sorted by local patient id whose id lies in [lo, hi]."""
    keys = frame.get_column("local_patient_id")
    start = int(keys.search_sorted(lo, side="left"))
    end = int(keys.search_sorted(hi, side="right"))
    return frame.slice(start, end - start)


class FeedLoad:
    """One feed's load: a transaction on a worker thread that takes derived pathways in batches.

    `FeedLoad(...)` connects at once; `begin` starts the transaction (lock, duplicate check,
    feed row, the provider's existing identities) while the caller maps the file;
    `assign_identities` gives every patient of the file an id (existing, or new ones in order
    of local patient id) and reserves ids for the file's pathways; `add` prepares a batch on
    the caller's thread (the patients it meets first: new source identities, or changed values
    of known ones; and its pathways) and queues it. At most one batch waits behind the one
    being written, which bounds memory. `commit` writes the row issues and the
    current-snapshot pointer and commits; `abort` rolls everything back. The connection lives
    and dies on the worker thread; an error there is raised again by the next call.

    Batches must come in order of local patient id, each patient's rows in file order (the
    pipeline sorts stably; `add` refuses a batch that goes backwards). New identities then
    arrive in key order, so both identity indexes grow at their right edge (twice as fast as
    random order), every lookup is a slice of a sorted frame, and a patient is settled by the
    first batch holding one of its loaded rows: its first loaded row in file order.

    On PostgreSQL a provider's first load writes its identities to the provider's own
    partition, built without indexes and attached, keys and all, when the load commits
    (ptl/store/identity_partitions.py); later loads write through `source_identity`.
    """

    def __init__(self, engine: Engine, writer_process: bool = False) -> None:
        self._record: FeedRecord | None = None
        self._census = dt.date.min
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptl-feed-load")
        self._pending: deque[Future[Any]] = deque()
        self._writes: FeedWrites | None = None
        # PostgreSQL: the feed's pathway partition, written on its own connection and thread.
        self._partition: PartitionWrites | None = None
        self._partition_executor: ThreadPoolExecutor | None = None
        self._partition_pending: deque[Future[Any]] = deque()
        # PostgreSQL, a provider's first load: its identity partition, attached at the end.
        self._identity_table = "source_identity"
        self._identity_partition = False
        self._assigned: Future[Any] | None = None
        self._aborted = False
        self._existing = pl.DataFrame()
        self._ids = pl.DataFrame()  # local_patient_id → id, every patient of the file
        self._new_ids = pl.DataFrame()  # the ones not yet in the store
        self._next_pathway_id = 0  # the next of the ids reserved for this file's pathways
        self._last_settled: str | None = None  # highest local id settled so far
        self._last_seen: str | None = None  # highest local id of the batches so far
        self.feed_id: int | None = None
        self.duplicate_of: int | None = None
        self.rows_stored = 0
        self.store_seconds = 0.0  # on the worker thread
        self.prepare_seconds = 0.0  # on the caller's thread
        self.identities_written = 0  # new identities and known ones with changed values
        self._submit(self._connect, engine, writer_process)

    # -- caller's side -------------------------------------------------------------------
    def begin(self, record: FeedRecord) -> None:
        """Begin the transaction for this feed (lock, duplicate check, feed row, the
        provider's known identities); the record's census date must be settled."""
        assert record.census_date is not None
        self._submit(self._begin, record)

    def assign_identities(self, local_patient_ids: pl.Series, rows: int) -> None:
        """Settle an id for every patient of the file and reserve ids for its `rows` rows
        (before the first `add`): `local_patient_ids` are the file's distinct ids, sorted."""
        self._assigned = self._submit(self._assign, local_patient_ids, rows)

    def add(self, pathways: pl.DataFrame) -> None:
        """Prepare one batch of derived pathways and queue it (blocks while one batch
        already waits)."""
        if self._assigned is not None:  # the ids (and the transaction's state) are settled
            self._assigned.result()
            self._assigned = None
        if self.duplicate_of is not None or pathways.height == 0:
            return
        started = time.perf_counter()
        identities, changed, rows = self._prepare(pathways)
        self.identities_written += identities.height + changed.height
        self.prepare_seconds += time.perf_counter() - started
        while len(self._pending) > 1:
            self._pending.popleft().result()
        if self._partition is None:
            self._submit(self._store_batch, identities, changed, rows)
            return
        self._submit(self._store_batch, identities, changed, None)
        assert self._partition_executor is not None
        while len(self._partition_pending) > 1:
            self._partition_pending.popleft().result()
        self._partition_pending.append(self._partition_executor.submit(self._insert_partition, rows))

    def commit(self, record: FeedRecord, issues: pl.DataFrame) -> LoadOutcome:
        """Insert identities, write the issues and the current pointer, update the feed row,
        commit."""
        try:
            self._drain()
            outcome: LoadOutcome = self._executor.submit(self._finish, record, issues).result()
        except BaseException:
            self.abort()
            raise
        self._executor.shutdown(wait=True)
        if self._partition_executor is not None:
            self._partition_executor.shutdown(wait=True)
        return outcome

    def abort(self) -> None:
        """Roll back whatever was stored (errors from queued batches are dropped). Safe to call
        more than once."""
        if self._aborted:
            return
        self._aborted = True
        for future in self._pending:
            future.exception()
        self._pending.clear()
        try:
            self._executor.submit(self._rollback).result()
        finally:
            self._executor.shutdown(wait=True)
            if self._partition_executor is not None:
                self._partition_executor.shutdown(wait=True)

    def _submit(self, work: Callable[..., Any], *args: Any) -> Future[Any]:
        def timed() -> Any:
            started = time.perf_counter()
            try:
                return work(*args)
            finally:
                self.store_seconds += time.perf_counter() - started

        future = self._executor.submit(timed)
        self._pending.append(future)
        return future

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()
        while self._partition_pending:
            self._partition_pending.popleft().result()

    def _prepare(self, pathways: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """A batch's rows as written: its patients not settled by an earlier batch, new ones
        to insert (values from the patient's first loaded row) and known ones whose values
        changed (an older census never overwrites a newer one's); and its pathways with
        their ids."""
        assert self.feed_id is not None
        patients = pathways.get_column("local_patient_id")
        lo, hi = str(patients.min()), str(patients.max())
        if self._last_seen is not None and lo < self._last_seen:
            raise ValueError("batches must come in order of local patient id")
        self._last_seen = hi
        census = self._census
        values = pathways.select("local_patient_id", *IDENTITY_VALUES).unique(
            "local_patient_id", keep="first", maintain_order=True
        )
        if self._last_settled is not None:  # a patient whose rows straddle two batches
            values = values.filter(pl.col("local_patient_id") > self._last_settled)
        if values.height:
            self._last_settled = str(values.get_column("local_patient_id").max())
        identities = (
            values.join(_within(self._new_ids, lo, hi), on="local_patient_id", how="inner")
            .sort("id")
            .select(
                "id",
                pl.lit(self._provider_code()).alias("provider_code"),
                "local_patient_id",
                *IDENTITY_VALUES,
                pl.lit(self.feed_id, dtype=pl.Int64).alias("first_feed_id"),
                pl.lit(census).alias("values_census_date"),
            )
        )
        differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}__old")) for c in IDENTITY_VALUES])
        changed = (
            values.join(_within(self._existing, lo, hi), on="local_patient_id", how="inner", suffix="__old")
            .filter((pl.col("values_census_date") <= census) & differs)
            .select("id", *IDENTITY_VALUES)
        )
        first = self._next_pathway_id
        self._next_pathway_id += pathways.height
        rows = (
            pathways.join(_within(self._ids, lo, hi).rename({"id": "source_identity_id"}),
                          on="local_patient_id", how="left")
            .select((pl.int_range(pl.len(), dtype=pl.Int64) + first).alias("id"),
                    pl.lit(self.feed_id, dtype=pl.Int64).alias("feed_id"), "source_identity_id",
                    *PATHWAY_COLUMNS)
        )
        return identities, changed, rows

    # -- worker thread -------------------------------------------------------------------
    def _connect(self, engine: Engine, writer_process: bool) -> None:
        self._writes = open_feed_writes(engine, writer_process)

    def _begin(self, record: FeedRecord) -> None:
        assert self._writes is not None and record.census_date is not None
        self._record, self._census = record, record.census_date
        writes = self._writes
        writes.begin()
        writes.lock_provider(record.provider_code)
        duplicate = writes.loaded_feed_with_sha(record.provider_code, record.sha256)
        if duplicate is not None:
            self.duplicate_of = duplicate
            return
        writes.ensure_organisation(record.provider_code)
        self.feed_id = writes.insert_feed(_feed_values(record, "loaded"))
        self._partition = writes.open_partition(self.feed_id)
        if self._partition is not None:
            self._partition_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptl-feed-partition")
        self._existing = writes.existing_identities(record.provider_code).sort("local_patient_id")
        table = writes.open_identity_partition(record.provider_code)
        if table is not None:
            self._identity_table, self._identity_partition = table, True
        log.debug("load begun", extra={"feed_id": self.feed_id, "provider": record.provider_code,
                                       "existing_identities": self._existing.height})

    def _assign(self, local_patient_ids: pl.Series, rows: int) -> None:
        if self.duplicate_of is not None:
            return
        assert self._writes is not None
        # Sorted in, sorted out: new ids then follow the order of local patient ids.
        patients = local_patient_ids.to_frame("local_patient_id")
        new = patients.join(self._existing, on="local_patient_id", how="anti", maintain_order="left")
        first = self._writes.allocate_ids("source_identity", new.height)
        # An id for a patient whose every row is then rejected, or for a rejected row, stays
        # unused: a gap, like any sequence's.
        self._new_ids = new.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + first).alias("id"))
        self._ids = pl.concat([self._existing.select("local_patient_id", "id"), self._new_ids]).sort(
            "local_patient_id"
        )
        self._next_pathway_id = self._writes.allocate_ids("pathway", rows)

    def _provider_code(self) -> str:
        assert self._record is not None
        return self._record.provider_code

    def _store_batch(self, identities: pl.DataFrame, changed: pl.DataFrame,
                     pathways: pl.DataFrame | None) -> None:
        """Write a prepared batch: its identities, then (not partitioned) its pathways."""
        assert self._writes is not None
        if identities.height:
            self._writes.insert(self._identity_table, identities)
        if changed.height:
            self._writes.update_identities(changed, self._census)
        if pathways is not None:
            self._writes.insert("pathway", pathways)
            self._stored(pathways.height)

    def _insert_partition(self, rows: pl.DataFrame) -> None:
        assert self._partition is not None
        self._partition.insert(rows)
        self._stored(rows.height)

    def _stored(self, rows: int) -> None:
        self.rows_stored += rows
        log.debug("pathways stored", extra={"feed_id": self.feed_id, "rows": self.rows_stored})

    def _finish(self, record: FeedRecord, issues: pl.DataFrame) -> LoadOutcome:
        writes = self._writes
        assert writes is not None
        if self.duplicate_of is not None:
            self._rollback()  # nothing was written
            return LoadOutcome(feed_id=self.duplicate_of, duplicate=True, became_current=False)
        assert self.feed_id is not None
        started = time.perf_counter()
        if issues.height:
            writes.insert("row_issue", _issue_rows(issues, self.feed_id))
        # A census older than the provider's current one is history: it does not become current.
        current = writes.current_census(record.provider_code)
        became_current = current is None or self._census >= current
        if became_current:
            writes.set_current(record.provider_code, self.feed_id, self._census)
        if self._partition is not None:
            assert self._partition_executor is not None
            while self._partition_pending:  # drained by `commit` already
                self._partition_pending.popleft().result()
            # The pathway table's key is built on its connection while this one builds the
            # keys of a first load's identity partition: both server cores at work.
            finished = self._partition_executor.submit(self._partition.finish)
            if self._identity_partition:
                try:
                    writes.attach_identity_partition(record.provider_code)
                except BaseException:
                    finished.exception()  # the table's transaction ends before the rollback
                    raise
            finished.result()
            writes.attach_partition(self.feed_id)  # last: it locks the parent until the commit
        elif self._identity_partition:
            writes.attach_identity_partition(record.provider_code)
        record.load_seconds = self.store_seconds + self.prepare_seconds + time.perf_counter() - started
        writes.update_feed(self.feed_id, {name: getattr(record, name) for name in _OUTCOME_COLUMNS})
        writes.commit()
        partition, self._partition = self._partition, None  # attached and committed: never undo
        if partition is not None:
            try:
                partition.close()
            except Exception:  # the load is committed; the lock goes with the connection anyway
                log.warning("could not release the partition lock", extra={"feed_id": self.feed_id},
                            exc_info=True)
        return LoadOutcome(feed_id=self.feed_id, duplicate=False, became_current=became_current,
                           identities_written=self.identities_written)

    def _rollback(self) -> None:
        try:
            if self._partition is not None:
                for future in self._partition_pending:
                    future.exception()
                self._partition_pending.clear()
                self._partition.abort()
                self._partition = None
        finally:
            if self._writes is not None:
                self._writes.rollback()
