"""The analytics snapshot: every provider's current feed (and recent censuses) as Polars frames.

This module owns pulling the store into memory for the views, and the process-level cache that
makes that happen once per data version:

- `current`: every pathway of every provider's current feed (the analytics columns of `pathway`,
  plus `person_id` from `identity_link` when that table exists and has rows, and two presence
  flags from `source_identity`: `has_nhs_number`, `has_postcode` -- shares are computed from them,
  no identifying value ever leaves the store);
- `history`: per provider, one feed per census (the newest loaded one), for the last
  `HISTORY_CENSUSES` censuses up to the current one: pathway keys, clock start, days waited and
  the columns filters and equity trends need;
- `feeds`: every feed row (small), `issues`: the rejected rows of the current feeds (no raw row);
- `identity_review`: the identity conflicts list when that table exists;
- `version`: the newest loaded feed id, the cache key.

Reads use each backend's fast path: ADBC (Arrow, binary) on PostgreSQL when the driver is
installed, else `COPY … TO STDOUT` through `read_frame`; SQLite through its cursor. Every frame
is cast to one schema so views see the same types on either backend.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import numpy as np
import polars as pl
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from ptl.matching.move import MOVE_SCHEMA, continue_moved_waits
from ptl.store.bulk import read_frame
from ptl.views.feed_frames import FeedFrameCache, FeedKey

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How many censuses per provider the history holds (weekly: half a year of trend).
HISTORY_CENSUSES: Final[int] = 26

#: Columns of `current` and their types (the same on SQLite and PostgreSQL).
CURRENT_SCHEMA: Final[dict[str, Any]] = {
    "id": pl.Int64,
    "feed_id": pl.Int64,
    "provider_code": pl.String,
    "census_date": pl.Date,
    "source_identity_id": pl.Int64,
    "person_id": pl.Int64,
    "pathway_id": pl.String,
    "pathway_id_issuer": pl.String,
    "referral_id": pl.String,
    "site_code": pl.String,
    "treatment_function_code": pl.String,
    "rtt_start_date": pl.Date,
    "rtt_status": pl.String,
    "waiting_list_type": pl.String,
    "is_rtt": pl.Boolean,
    "priority_type": pl.String,
    "clinical_priority": pl.String,
    "procedure_code": pl.String,
    "intended_management": pl.String,
    "decision_to_admit_date": pl.Date,
    "tci_date": pl.Date,
    "asa_grade": pl.Int16,
    "bmi": pl.Float64,
    "learning_disability": pl.Boolean,
    "interpreter_required": pl.Boolean,
    "last_validated_date": pl.Date,
    "last_attended_date": pl.Date,
    "last_dna_date": pl.Date,
    "travel_willingness": pl.String,
    "sex": pl.String,
    "ethnic_category": pl.String,
    "ethnic_group": pl.String,
    "lsoa11": pl.String,
    "imd_decile": pl.Int16,
    "imd_quintile": pl.Int16,
    "age_years": pl.Int16,
    "age_band": pl.String,
    "days_waited": pl.Int32,
    "week_band": pl.Int32,
    "priority_rank": pl.Int16,
    "has_nhs_number": pl.Boolean,
    "has_postcode": pl.Boolean,
}

#: Columns of `history`: keys to tell additions from removals, plus what filters and trends use.
HISTORY_SCHEMA: Final[dict[str, Any]] = {
    "feed_id": pl.Int64,
    "provider_code": pl.String,
    "census_date": pl.Date,
    "pathway_id_issuer": pl.String,
    "pathway_id": pl.String,
    "site_code": pl.String,
    "treatment_function_code": pl.String,
    "procedure_code": pl.String,
    "waiting_list_type": pl.String,
    "clinical_priority": pl.String,
    "priority_rank": pl.Int16,
    "rtt_status": pl.String,
    "rtt_start_date": pl.Date,
    "days_waited": pl.Int32,
    "week_band": pl.Int32,
    "is_rtt": pl.Boolean,
    "imd_quintile": pl.Int16,
    "ethnic_category": pl.String,
    "ethnic_group": pl.String,
    "age_band": pl.String,
    "sex": pl.String,
    "learning_disability": pl.Boolean,
}

FEED_SCHEMA: Final[dict[str, Any]] = {
    "id": pl.Int64,
    "provider_code": pl.String,
    "census_date": pl.Date,
    "status": pl.String,
    "source": pl.String,
    "rows_read": pl.Int64,
    "rows_loaded": pl.Int64,
    "rows_rejected": pl.Int64,
    "rows_warned": pl.Int64,
    "received_at": pl.String,
    "is_current": pl.Boolean,
}

#: Rejected rows of the current feeds. `raw_row` (identifiable) is deliberately not read.
ISSUE_SCHEMA: Final[dict[str, Any]] = {
    "feed_id": pl.Int64,
    "provider_code": pl.String,
    "census_date": pl.Date,
    "row_number": pl.Int64,
    "column_name": pl.String,
    "kind": pl.String,
    "reason": pl.String,
    "raw_value": pl.String,
}

#: identity_review columns never copied out of the store (identifiable values).
IDENTIFIABLE_COLUMNS: Final[frozenset[str]] = frozenset(
    {"nhs_number", "family_name", "given_name", "date_of_birth", "postcode", "local_patient_id",
     "raw_row"}
)

_PATHWAY_COLUMNS = [c for c in CURRENT_SCHEMA
                    if c not in ("person_id", "has_nhs_number", "has_postcode")]


@dataclass
class Snapshot:
    """One data version of the system: frames the views compute over, and their memo."""

    version: int
    current: pl.DataFrame
    history: pl.DataFrame
    feeds: pl.DataFrame = field(default_factory=lambda: _empty(FEED_SCHEMA))
    #: newest identity-linking run seen: re-linking changes person ids without a new feed
    link_version: int = 0
    issues: pl.DataFrame = field(default_factory=lambda: _empty(ISSUE_SCHEMA))
    identity_review: pl.DataFrame | None = None
    loaded_seconds: float = 0.0
    _memo: dict[Hashable, Any] = field(default_factory=dict, repr=False)
    _memo_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _key_locks: dict[Hashable, threading.Lock] = field(default_factory=dict, repr=False)

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """`compute()` once per key for this data version (e.g. `("equity", by, filters)`);
        later calls return the stored result. Concurrent first calls of one key compute once;
        different keys compute at the same time."""
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        with self._memo_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]  # type: ignore[no-any-return]


def _empty(schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _conform(frame: pl.DataFrame, schema: dict[str, Any]) -> pl.DataFrame:
    """Exactly `schema`'s columns, in order and type (missing columns become null)."""
    columns = []
    for name, dtype in schema.items():
        if name not in frame.columns:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
        elif frame.schema[name] == dtype:
            columns.append(pl.col(name))
        elif dtype == pl.Boolean and frame.schema[name] == pl.String:
            columns.append(pl.when(pl.col(name).is_null()).then(None)
                           .otherwise(pl.col(name).str.to_lowercase().is_in(["1", "t", "true"]))
                           .alias(name))
        elif dtype == pl.Date and frame.schema[name] == pl.String:
            columns.append(pl.col(name).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False))
        else:
            columns.append(pl.col(name).cast(dtype, strict=False))
    return frame.select(columns)


# --- reading ---------------------------------------------------------------------------------


def _adbc_uri(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _adbc_available() -> bool:
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        return False
    return True


class _Reader:
    """Runs snapshot queries on one backend's fastest path within one consistent read.

    On PostgreSQL with ADBC, `READ_CONNECTIONS` sessions share the transaction's snapshot and
    `submit` spreads queries over them (two server processes produce rows at once; the Arrow
    conversion runs outside the GIL). Otherwise `submit` runs each query at once, in turn."""

    def __init__(self, engine: Engine, connection: Connection, sessions: int = 1) -> None:
        self.connection = connection
        self.adbc: Any = None
        self._sessions: list[Any] = []
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pool: ThreadPoolExecutor | None = None
        if engine.dialect.name == "postgresql" and _adbc_available():
            import adbc_driver_postgresql.dbapi as adbc

            try:
                for _ in range(max(sessions, 1)):
                    self._sessions.append(adbc.connect(_adbc_uri(engine)))
            except Exception as exc:  # noqa: BLE001 - fall back to COPY, say why (no URL: it may hold a password)
                log.warning("ADBC connection failed (%s); reading the snapshot with COPY", type(exc).__name__)
                self.close()
                self._sessions = []
        if self._sessions:
            self.adbc = self._sessions[0]

    def pin(self, snapshot_id: str) -> None:
        """Make every ADBC session read the snapshot `pg_export_snapshot()` named."""
        for session in self._sessions:
            with session.cursor() as cursor:
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
            self._idle.put(session)
        if len(self._sessions) > 1:
            self._pool = ThreadPoolExecutor(max_workers=len(self._sessions), thread_name_prefix="snapshot-read")

    def frame(self, sql: str, schema: dict[str, Any], params: dict[str, Any] | None = None) -> pl.DataFrame:
        if self.adbc is not None:
            session = self._idle.get()
            try:
                return _adbc_frame(session, sql, schema, params)
            finally:
                self._idle.put(session)
        read_schema = {n: (pl.String if t == pl.Boolean else t) for n, t in schema.items()}
        return _conform(read_frame(self.connection, sql, params, read_schema), schema)

    def submit(self, sql: str, schema: dict[str, Any], params: dict[str, Any] | None = None) -> Future[pl.DataFrame]:
        """`frame` on a free session in the background (or now, without parallel sessions)."""
        if self._pool is not None:
            return self._pool.submit(self.frame, sql, schema, params)
        done: Future[pl.DataFrame] = Future()
        try:
            done.set_result(self.frame(sql, schema, params))
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits on the future
            done.set_exception(exc)
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for session in self._sessions:
            with contextlib.suppress(Exception):
                session.close()


def _adbc_frame(session: Any, sql: str, schema: dict[str, Any], params: dict[str, Any] | None) -> pl.DataFrame:
    # ADBC takes positional $n parameters; the few we pass are integers, inlined safely.
    statement = sql
    for name, value in (params or {}).items():
        statement = statement.replace(f":{name}", str(int(value)))
    with session.cursor() as cursor:
        cursor.execute(statement)
        table = cursor.fetch_arrow_table()
    result = pl.from_arrow(table)
    assert isinstance(result, pl.DataFrame)
    return _conform(result, schema)


def _has_identity_link(connection: Connection) -> bool:
    """Whether `identity_link` exists with the columns that bring `person_id` in (migration
    0002 creates it; the views must work on a store from before it)."""
    inspector = sa.inspect(connection)
    if not inspector.has_table("identity_link"):
        return False
    columns = {c["name"] for c in inspector.get_columns("identity_link")}
    if not {"source_identity_id", "person_id"} <= columns:
        log.warning("identity_link has no source_identity_id/person_id columns; person_id is null")
        return False
    return True


_IDENTITY_FLAGS_SCHEMA: Final[dict[str, Any]] = {
    "source_identity_id": pl.Int64, "has_nhs_number": pl.Boolean, "has_postcode": pl.Boolean,
}
_LINK_SCHEMA: Final[dict[str, Any]] = {"source_identity_id": pl.Int64, "person_id": pl.Int64}


def _with_identity(pathways: pl.DataFrame, flags: pl.DataFrame,
                   links: pl.DataFrame | None) -> pl.DataFrame:
    """`current` from the pathway rows, the presence flags per source identity and the
    identity links: joined here rather than in the database (a two-core PostgreSQL is several
    times slower at it), and by position rather than by hashing where the ids allow
    (`_rows_of`): a million pathways looked up in a million identities in tens of
    milliseconds instead of half a second."""
    probe = pathways.get_column("source_identity_id")
    person = None
    if links is not None and links.height:
        # MIN: one person per source record even if the table keeps superseded links.
        person = links.group_by("source_identity_id").agg(pl.col("person_id").min())
    looked_up: list[pl.Series] = []
    for table, columns in ((flags, ("has_nhs_number", "has_postcode")), (person, ("person_id",))):
        if table is None:
            continue
        rows = _rows_of(table.get_column("source_identity_id"), probe)
        if rows is None:  # ids too sparse for an array: the hash join gives the same rows
            looked_up.extend(pathways.select("source_identity_id").join(
                table, on="source_identity_id", how="left", maintain_order="left").select(columns))
        else:
            looked_up.extend(table.select(pl.col(c).gather(rows) for c in columns))
    keyed = pathways.with_columns(looked_up)
    return keyed.with_columns(pl.col("has_nhs_number", "has_postcode").fill_null(False))


#: `_rows_of` indexes an array by id when the largest id is at most this many times the
#: number of ids, plus `_DENSE_SLACK` (source identity ids come from a sequence: dense).
_DENSE_FACTOR: Final[int] = 4
_DENSE_SLACK: Final[int] = 1_000_000


def _rows_of(keys: pl.Series, probe: pl.Series) -> pl.Series | None:
    """For each value of `probe`, the row of `keys` holding it, or null when no row does: what
    a left join of `probe` on unique `keys` finds, read from an array indexed by key. None when
    that does not apply (a null or negative key, a repeated key, or keys too sparse)."""
    n = keys.len()
    if n == 0:
        return pl.Series(values=[None] * probe.len(), dtype=pl.Int64)
    low, high = keys.min(), keys.max()
    if (keys.null_count() or not isinstance(low, int) or not isinstance(high, int) or low < 0
            or high > _DENSE_FACTOR * n + _DENSE_SLACK):
        return None
    # One slot per possible id, plus a last one (never a row) for ids outside [0, high].
    position = np.full(high + 2, -1, dtype=np.int64)
    position[keys.cast(pl.Int64).to_numpy()] = np.arange(n, dtype=np.int64)
    if int(np.count_nonzero(position >= 0)) != n:
        return None  # a repeated key: a join would repeat rows
    wanted = probe.cast(pl.Int64).fill_null(-1).to_numpy()
    rows = position[np.where((wanted < 0) | (wanted > high), high + 1, wanted)]
    found = pl.Series("row", rows)
    return pl.select(pl.when(found >= 0).then(found)).to_series()


def newest_feed_ids(engine: Engine) -> tuple[int, int, int]:
    """(newest loaded feed id, newest feed id of any status, newest identity-linking run id);
    0 when there is none. Any of them moving on means the snapshot is out of date."""
    with engine.connect() as connection:
        row = connection.execute(sa.text(
            "SELECT COALESCE(MAX(CASE WHEN status = 'loaded' THEN id END), 0), COALESCE(MAX(id), 0), "
            "(SELECT COALESCE(MAX(id), 0) FROM link_run) FROM feed"
        )).one()
    return int(row[0]), int(row[1]), int(row[2])


#: ADBC sessions reading the snapshot at once (the machine this is sized for has two cores).
READ_SESSIONS: Final[int] = 2

_PATHWAY_READ_SCHEMA: Final[dict[str, Any]] = {c: CURRENT_SCHEMA[c] for c in _PATHWAY_COLUMNS}


def _feed_plan(connection: Connection, history_censuses: int) -> tuple[list[FeedKey], list[FeedKey]]:
    """The feeds the snapshot is made of: each provider's current feed, and per provider the
    newest loaded feed of each of its last `history_censuses` - 1 earlier censuses."""
    rows = connection.execute(sa.text(
        "WITH per_census AS ("
        " SELECT provider_code, census_date, MAX(id) AS feed_id FROM feed"
        " WHERE status = 'loaded' GROUP BY provider_code, census_date),"
        " ranked AS ("
        " SELECT pc.feed_id, ROW_NUMBER() OVER (PARTITION BY pc.provider_code"
        " ORDER BY pc.census_date DESC) AS census_age"
        " FROM per_census pc JOIN current_snapshot cs ON cs.provider_code = pc.provider_code"
        " AND pc.census_date < cs.census_date) "
        "SELECT f.id, f.sha256, CAST(f.received_at AS VARCHAR(40)), 1 AS is_current, f.provider_code"
        " FROM feed f JOIN current_snapshot cs ON cs.feed_id = f.id "
        "UNION ALL "
        "SELECT f.id, f.sha256, CAST(f.received_at AS VARCHAR(40)), 0, f.provider_code FROM feed f"
        " JOIN ranked r ON r.feed_id = f.id WHERE r.census_age < :censuses"
    ), {"censuses": history_censuses}).all()
    current = sorted((FeedKey(int(r[0]), str(r[1]), str(r[2]), str(r[4])) for r in rows if int(r[3])),
                     key=lambda f: f.feed_id)
    older = sorted((FeedKey(int(r[0]), str(r[1]), str(r[2]), str(r[4])) for r in rows if not int(r[3])),
                   key=lambda f: f.feed_id)
    return current, older


def _store_rows(connection: Connection, feed_ids: list[int]) -> dict[int, int]:
    """`pathway` rows per feed, counted in the store (a BRIN bitmap scan of the feed's pages on
    PostgreSQL; once per process per cached feed)."""
    if not feed_ids:
        return {}
    statement = sa.text("SELECT feed_id, COUNT(*) FROM pathway WHERE feed_id IN :ids GROUP BY feed_id"
                        ).bindparams(sa.bindparam("ids", expanding=True))
    counted = {int(f): int(n) for f, n in connection.execute(statement, {"ids": feed_ids})}
    return {feed_id: counted.get(feed_id, 0) for feed_id in feed_ids}


def _feed_sql(columns: list[str]) -> str:
    return "SELECT " + ", ".join(f"p.{c}" for c in columns) + " FROM pathway p WHERE p.feed_id = :feed"


def read_snapshot(engine: Engine, history_censuses: int = HISTORY_CENSUSES,
                  frame_cache: FeedFrameCache | None = None) -> Snapshot:
    """Read the snapshot from the store now (no snapshot cache; use `load_snapshot` in services).

    With a `frame_cache`, feeds whose rows it holds are read from it and only the others from
    the store (`ptl.views.feed_frames`: what is and is not cached)."""
    import time

    started = time.perf_counter()
    # REPEATABLE READ (PostgreSQL): every frame comes from the same committed state even while
    # a provider's load commits mid-read. SQLite's read transaction gives the same.
    options: dict[str, Any] = ({"isolation_level": "REPEATABLE READ"}
                               if engine.dialect.name == "postgresql" else {})
    folder = frame_cache.folder(engine) if frame_cache is not None else None
    fresh: list[tuple[FeedKey, pl.DataFrame]] = []
    with engine.connect().execution_options(**options) as connection, connection.begin():
        version = int(connection.execute(sa.text(
            "SELECT COALESCE(MAX(id), 0) FROM feed WHERE status = 'loaded'")).scalar_one())
        link_version = int(connection.execute(sa.text(
            "SELECT COALESCE(MAX(id), 0) FROM link_run")).scalar_one())
        linked = _has_identity_link(connection)
        current_feeds, older_feeds = _feed_plan(connection, history_censuses)
        reader = _Reader(engine, connection, READ_SESSIONS)
        try:
            if reader.adbc is not None:
                # The ADBC sessions must see the same data: pin them to this transaction's snapshot.
                reader.pin(connection.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one())
            # Never cached (they change without a new feed): presence flags -- no identifying
            # value leaves the store -- and the newest identity links. Started first, so the
            # store works on them while cached feeds are read from disk.
            flags = reader.submit(
                "SELECT id AS source_identity_id, (nhs_number IS NOT NULL) AS has_nhs_number,"
                " (postcode IS NOT NULL) AS has_postcode FROM source_identity",
                _IDENTITY_FLAGS_SCHEMA,
            )
            links = (reader.submit("SELECT source_identity_id, person_id FROM identity_link", _LINK_SCHEMA)
                     if linked else None)
            plan = [(feed, _PATHWAY_READ_SCHEMA) for feed in current_feeds] + [
                (feed, HISTORY_SCHEMA) for feed in older_feeds]
            frames: dict[int, pl.DataFrame | Future[pl.DataFrame]] = {}
            if frame_cache is not None and folder is not None:
                held = {feed.feed_id: frame for feed, schema in plan
                        if (frame := frame_cache.read(folder, feed, schema)) is not None}
                counts = _store_rows(connection, [f.feed_id for f, _ in plan if f.feed_id in held
                                                  and frame_cache.needs_count(folder, f)])
                frames = {feed.feed_id: held[feed.feed_id] for feed, _ in plan if feed.feed_id in held
                          and frame_cache.accept(folder, feed, held[feed.feed_id], counts.get(feed.feed_id))}
            missing = [(feed, schema) for feed, schema in plan if feed.feed_id not in frames]
            for feed, schema in missing:
                frames[feed.feed_id] = reader.submit(_feed_sql(list(schema)), schema, {"feed": feed.feed_id})
            feeds = reader.frame(
                "SELECT f.id, f.provider_code, f.census_date, f.status, f.source, f.rows_read,"
                " f.rows_loaded, f.rows_rejected, f.rows_warned, CAST(f.received_at AS VARCHAR(40))"
                " AS received_at, CASE WHEN cs.feed_id IS NULL THEN 0 ELSE 1 END AS is_current"
                " FROM feed f LEFT JOIN current_snapshot cs ON cs.feed_id = f.id",
                FEED_SCHEMA,
            )
            issues = reader.frame(
                "SELECT ri.feed_id, cs.provider_code, cs.census_date, ri.row_number, ri.column_name,"
                " ri.kind, ri.reason, ri.raw_value FROM row_issue ri"
                " JOIN current_snapshot cs ON cs.feed_id = ri.feed_id WHERE ri.severity = 'rejected'",
                ISSUE_SCHEMA,
            )
            identity_review = _identity_review(connection)
            moves = read_frame(
                connection,
                "SELECT id AS move_id, transfer_id, person_id, treatment_function_code, "
                "original_clock_start, from_provider_code, from_pathway_id, from_pathway_id_issuer, "
                "to_provider_code, to_site_code FROM pathway_move",
                schema=dict(MOVE_SCHEMA),
            )
            for feed, _ in missing:
                future = frames[feed.feed_id]
                assert isinstance(future, Future)
                frames[feed.feed_id] = future.result()
                fresh.append((feed, frames[feed.feed_id]))  # type: ignore[arg-type]
            # One chunk per column (feeds, and ADBC's and COPY's batches, arrive as many chunks,
            # and chunked columns make every later group-by, join and sort slower): copied
            # while the store is still sending the identity flags, which take longer.
            pathways = _stack([frames[f.feed_id] for f in current_feeds],  # type: ignore[misc]
                              _PATHWAY_READ_SCHEMA).rechunk()
            older = _stack([frames[f.feed_id] for f in older_feeds], HISTORY_SCHEMA)  # type: ignore[misc]
            del frames
            flag_frame = flags.result()
            link_frame = links.result() if links is not None else None
        finally:
            reader.close()
    current = _conform(_with_identity(pathways, flag_frame, link_frame), CURRENT_SCHEMA)
    del pathways, flag_frame, link_frame
    # Completed mutual-aid moves: the receiving provider's pathway continues the original wait.
    current = continue_moved_waits(current, moves).rechunk()
    # History is left in one chunk per feed (the current part shares `current`'s columns):
    # copying two million rows into one chunk cost more than it saved, as views read history
    # one provider at a time (census transitions, equity trends).
    history = pl.concat([current.select(list(HISTORY_SCHEMA)), older], how="vertical")
    # What each provider's history rows are made of, for views that reuse per-provider work
    # across snapshots (`ptl.views.sites` census transitions, `ptl.views.equity` trends): its
    # feeds (id, file hash, received time: unique across stores), and what can drop or change
    # rows of its current feed without a new feed: completed moves, and the identity links
    # they are matched by.
    moves_digest = (moves.height, int(moves.hash_rows().sum()) if moves.height else 0)
    sources = {
        provider: (provider, tuple(f for f in (*current_feeds, *older_feeds) if f.provider_code == provider),
                   link_version, moves_digest)
        for provider in {f.provider_code for f in (*current_feeds, *older_feeds)}}
    remember_for_frame(history, "provider_fingerprints", sources)
    # The same, under a name only the reader gives (views tell a described frame by it).
    remember_for_frame(history, "provider_sources", sources)
    if frame_cache is not None and folder is not None:
        for feed, frame in fresh:
            frame_cache.write(folder, feed, frame)
        frame_cache.prune(folder, {*current_feeds, *older_feeds})
    return Snapshot(
        version=version,
        link_version=link_version,
        current=current,
        history=history,
        feeds=feeds,
        issues=issues,
        identity_review=identity_review,
        loaded_seconds=time.perf_counter() - started,
    )


def _stack(frames: list[pl.DataFrame], schema: dict[str, Any]) -> pl.DataFrame:
    if not frames:
        return _empty(schema)
    return pl.concat([frame.select(list(schema)) for frame in frames], how="vertical")


def _identity_review(connection: Connection) -> pl.DataFrame | None:
    """The identity review list (migration 0002) without identifying values; None if absent."""
    inspector = sa.inspect(connection)
    if not inspector.has_table("identity_review"):
        return None
    # `evidence` names the records (provider and local patient id): identifiable tier only.
    names = [c["name"] for c in inspector.get_columns("identity_review")
             if c["name"] not in IDENTIFIABLE_COLUMNS and c["name"] != "evidence"]
    if not names:
        return None
    quoted = ", ".join(f'"{n}"' for n in names)
    return read_frame(connection, f"SELECT {quoted} FROM identity_review")


# --- the process-level cache -------------------------------------------------------------------

_cache: dict[str, tuple[tuple[int, int, int], Snapshot]] = {}
_cache_lock = threading.Lock()
_build_locks: dict[str, threading.Lock] = {}


def _store_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def load_snapshot(engine: Engine, history_censuses: int = HISTORY_CENSUSES,
                  frame_cache: FeedFrameCache | None = None) -> Snapshot:
    """The snapshot of the store's current data version, rebuilt once per version.

    Each call costs one small query (the newest feed ids). The snapshot is rebuilt when a feed
    has been loaded (its `version` changes) or refused (feeds and rejection shares change);
    concurrent callers wait for one rebuild rather than each reading the store.
    """
    key = _store_key(engine)
    ids = newest_feed_ids(engine)
    cached = _cache.get(key)
    if cached is not None and cached[0] == ids:
        return cached[1]
    with _cache_lock:
        build_lock = _build_locks.setdefault(key, threading.Lock())
    with build_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == ids:
            return cached[1]
        snapshot = read_snapshot(engine, history_censuses, frame_cache)
        # Keyed by what was true before reading: a feed landing mid-read triggers a re-read next call.
        _cache[key] = (ids, snapshot)
        prepare(snapshot)
        log.info("analytics snapshot rebuilt: version %d, %d current pathways, %d history rows, %.2f s",
                 snapshot.version, snapshot.current.height, snapshot.history.height,
                 snapshot.loaded_seconds)
        return snapshot


def prepare(snapshot: Snapshot) -> threading.Thread:
    """Start computing, on a background thread, what most views of a new snapshot share: the
    duplicate groups and the sorted shared queue (queue, equity, equalisation, worklists), the
    equity trend counts and the census transitions (site statistics, equalisation). The
    first requests compute their own part on the other core meanwhile, and wait for (never
    repeat) a shared part under way (`once_per_frame`). Results are the ones the views
    compute themselves; a failure here is logged and the view computes it on request."""
    def run() -> None:
        from ptl.views.equity import prepare_trends
        from ptl.views.queue import shared_queue
        from ptl.views.sites import census_transitions

        for step in (lambda: shared_queue(snapshot.current), lambda: prepare_trends(snapshot.history),
                     lambda: census_transitions(snapshot.history)):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the view computes it again on request
                log.warning("preparing the views of snapshot %d failed (%s)", snapshot.version,
                            type(exc).__name__)
                return

    thread = threading.Thread(target=run, name="snapshot-prepare", daemon=True)
    thread.start()
    return thread


def invalidate_snapshot(engine: Engine | None = None) -> None:
    """Drop the cached snapshot (of one store, or all): call after re-linking identities, which
    changes `person_id` without loading a feed."""
    with _cache_lock:
        if engine is None:
            _cache.clear()
        else:
            _cache.pop(_store_key(engine), None)


def census_today() -> dt.date:
    """Today's date, the reference for staleness (a function so tests can pass their own)."""
    return dt.date.today()


# --- results derived from one frame --------------------------------------------------------

_frame_memo: dict[tuple[int, str], tuple[weakref.ref[pl.DataFrame], Any]] = {}
#: One lock per (frame, name) while its value is computed: concurrent callers (a request and
#: the warm-up thread, `prepare`) compute it once and share it.
_frame_locks: dict[tuple[int, str], tuple[threading.Lock, weakref.ref[pl.DataFrame]]] = {}
_frame_memo_lock = threading.Lock()


def remember_for_frame(frame: pl.DataFrame, name: str, value: Any) -> None:
    """Give `once_per_frame(frame, name, …)` its answer in advance (the snapshot reader knows
    things about its frames that would cost a scan to work out from them)."""
    once_per_frame(frame, name, lambda: value)


def once_per_frame(frame: pl.DataFrame, name: str, compute: Callable[[], T]) -> T:
    """`compute()` once per (frame object, name): the duplicate groups of a snapshot's
    `current`, say, are needed by the queue, equity, equalisation and the worklists, and
    frames are immutable. Concurrent first calls compute once (the others wait for it).
    Entries go when their frame is garbage-collected."""
    key = (id(frame), name)
    entry = _frame_memo.get(key)
    if entry is not None and entry[0]() is frame:
        return entry[1]  # type: ignore[no-any-return]

    def forget(_ref: weakref.ref[pl.DataFrame]) -> None:
        _frame_memo.pop(key, None)
        _frame_locks.pop(key, None)

    with _frame_memo_lock:
        held = _frame_locks.get(key)
        if held is None or held[1]() is not frame:
            held = (threading.Lock(), weakref.ref(frame, forget))
            _frame_locks[key] = held
    with held[0]:
        entry = _frame_memo.get(key)
        if entry is not None and entry[0]() is frame:
            return entry[1]  # type: ignore[no-any-return]
        value = compute()
        with _frame_memo_lock:
            _frame_memo[key] = (weakref.ref(frame, forget), value)
        return value
