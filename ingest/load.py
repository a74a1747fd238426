"""Loading one provider-census snapshot into the store, in one transaction.

Within a single transaction (per-provider lock held): the feed row, new and changed source
identities, every pathway, the row issues, and the provider's *current snapshot* pointer when
the census is at least as new as the current one. A crash at any point leaves the previous
snapshot exactly as it was. Bulk paths only: COPY on PostgreSQL, executemany on SQLite.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl
from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ptl.store.bulk import insert_frame, read_frame
from ptl.store.engine import write_connection
from ptl.store.models import CurrentSnapshot, Feed, Organisation, Pathway

log = logging.getLogger("ptl.ingest.load")

IDENTITY_VALUES = (
    "nhs_number",
    "nhs_number_status",
    "family_name",
    "given_name",
    "date_of_birth",
    "sex",
    "postcode",
)
PATHWAY_COLUMNS = tuple(
    c.name for c in Pathway.__table__.columns if c.name not in ("id", "feed_id", "source_identity_id")
)
ISSUE_COLUMNS = ("row_number", "column_name", "source_column", "severity", "kind", "reason",
                 "raw_value", "raw_row")


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


def loaded_feed_with_sha(connection: Connection, provider_code: str, sha256: str) -> int | None:
    return connection.execute(
        select(Feed.id).where(
            Feed.provider_code == provider_code, Feed.sha256 == sha256, Feed.status == "loaded"
        )
    ).scalar()


def _lock_provider(connection: Connection, provider_code: str) -> None:
    """Serialise loads of one provider (SQLite: BEGIN IMMEDIATE already holds the write lock)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                           {"key": f"ptl-feed:{provider_code}"})


def _ensure_organisation(connection: Connection, provider_code: str) -> None:
    insert_fn = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(
        insert_fn(Organisation)
        .values(code=provider_code, kind="other", updated_at=dt.datetime.now(dt.UTC))
        .on_conflict_do_nothing(index_elements=["code"])
    )


def _insert_feed(connection: Connection, record: FeedRecord, status: str) -> int:
    values = {k: v for k, v in record.__dict__.items()}
    values["status"] = status
    return int(connection.execute(insert(Feed).values(**values).returning(Feed.id)).scalar_one())


def _issue_rows(issues: pl.DataFrame, feed_id: int) -> pl.DataFrame:
    return issues.select(
        pl.lit(feed_id, dtype=pl.Int64).alias("feed_id"),
        pl.col("row").alias("row_number"),
        pl.col("column").alias("column_name"),
        *[pl.col(c) for c in ISSUE_COLUMNS[2:]],
    )


def record_refused(engine: Engine, record: FeedRecord, issues: pl.DataFrame | None) -> int:
    """Write a refused feed and its row issues (nothing else is touched)."""
    with write_connection(engine) as connection, connection.begin():
        _ensure_organisation(connection, record.provider_code)
        feed_id = _insert_feed(connection, record, "refused")
        if issues is not None and issues.height:
            insert_frame(connection, "row_issue", _issue_rows(issues, feed_id))
    return feed_id


def _allocate_ids(connection: Connection, count: int) -> int:
    """Reserve `count` consecutive source_identity ids; return the first."""
    if count == 0:
        return 0
    if connection.dialect.name == "postgresql":
        # Sequences are not transactional: reserve a block under a short session lock.
        connection.execute(text("SELECT pg_advisory_lock(hashtext('ptl-source-identity-ids'))"))
        try:
            first = connection.execute(
                text("SELECT nextval(pg_get_serial_sequence('source_identity', 'id'))")
            ).scalar_one()
            if count > 1:
                connection.execute(
                    text("SELECT setval(pg_get_serial_sequence('source_identity', 'id'), :last)"),
                    {"last": int(first) + count - 1},
                )
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext('ptl-source-identity-ids'))"))
        return int(first)
    highest = connection.execute(text("SELECT COALESCE(MAX(id), 0) FROM source_identity")).scalar_one()
    return int(highest) + 1


def _identities(connection: Connection, feed_id: int, provider_code: str,
                census_date: dt.date, pathways: pl.DataFrame) -> pl.DataFrame:
    """Insert new source identities, update changed ones; return local_patient_id → id."""
    incoming = (
        pathways.select("local_patient_id", *IDENTITY_VALUES)
        .unique("local_patient_id", keep="first", maintain_order=True)
    )
    existing = read_frame(
        connection,
        "SELECT id, local_patient_id, " + ", ".join(IDENTITY_VALUES) + ", values_census_date "
        "FROM source_identity WHERE provider_code = :provider",
        {"provider": provider_code},
        schema={"id": pl.Int64, "date_of_birth": pl.Date, "values_census_date": pl.Date},
    )
    joined = incoming.join(existing, on="local_patient_id", how="left", suffix="__old")
    # In key order, so the unique (provider, local id) index grows at its right edge instead
    # of splitting pages all over: several times faster for a first load of a big provider.
    new = joined.filter(pl.col("id").is_null()).sort("local_patient_id")
    first = _allocate_ids(connection, new.height)
    new = new.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + first).alias("id"))
    if new.height:
        insert_frame(
            connection,
            "source_identity",
            new.select(
                "id",
                pl.lit(provider_code).alias("provider_code"),
                "local_patient_id",
                *IDENTITY_VALUES,
                pl.lit(feed_id, dtype=pl.Int64).alias("first_feed_id"),
                pl.lit(census_date).alias("values_census_date"),
            ),
        )
    differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}__old")) for c in IDENTITY_VALUES])
    changed = joined.filter(
        pl.col("id").is_not_null() & (pl.col("values_census_date") <= census_date) & differs
    ).select("id", *IDENTITY_VALUES)
    if changed.height:
        _update_identities(connection, changed, census_date)
    return pl.concat([new.select("local_patient_id", "id"),
                      joined.filter(pl.col("id").is_not_null()).select("local_patient_id", "id")])


def _update_identities(connection: Connection, changed: pl.DataFrame, census_date: dt.date) -> None:
    assignments = ", ".join(f"{c} = t.{c}" for c in IDENTITY_VALUES)
    if connection.dialect.name == "postgresql":
        connection.execute(text(
            "CREATE TEMPORARY TABLE identity_change ON COMMIT DROP AS "
            "SELECT id, " + ", ".join(IDENTITY_VALUES) + " FROM source_identity WITH NO DATA"
        ))
        insert_frame(connection, "identity_change", changed)
        connection.execute(text(
            f"UPDATE source_identity s SET {assignments}, values_census_date = :census "
            "FROM identity_change t WHERE s.id = t.id"
        ), {"census": census_date})
        return
    _sqlite_update_identities(connection, changed, census_date)


def _sqlite_update_identities(connection: Connection, changed: pl.DataFrame, census_date: dt.date) -> None:
    prepared = changed.with_columns(pl.col("date_of_birth").dt.strftime("%Y-%m-%d"))
    sets = ", ".join(f"{c} = ?" for c in IDENTITY_VALUES)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.executemany(
        f"UPDATE source_identity SET {sets}, values_census_date = '{census_date.isoformat()}' WHERE id = ?",
        prepared.select(*IDENTITY_VALUES, "id").iter_rows(),
    )


def load_snapshot(
    engine: Engine,
    record: FeedRecord,
    pathways: pl.DataFrame,
    issues: pl.DataFrame,
    progress: Callable[[str], None] | None = None,
) -> LoadOutcome:
    """Load a validated, derived snapshot as one feed; all or nothing."""
    assert record.census_date is not None
    started = time.perf_counter()
    with write_connection(engine) as connection, connection.begin():
        _lock_provider(connection, record.provider_code)
        log.debug("loading snapshot", extra={"provider": record.provider_code,
                                            "census_date": str(record.census_date),
                                            "rows": pathways.height})
        duplicate = loaded_feed_with_sha(connection, record.provider_code, record.sha256)
        if duplicate is not None:
            return LoadOutcome(feed_id=duplicate, duplicate=True, became_current=False)
        _ensure_organisation(connection, record.provider_code)
        feed_id = _insert_feed(connection, record, "loaded")
        ids = _identities(connection, feed_id, record.provider_code, record.census_date, pathways)
        rows = (
            pathways.join(ids.rename({"id": "source_identity_id"}), on="local_patient_id", how="left")
            .select(pl.lit(feed_id, dtype=pl.Int64).alias("feed_id"), "source_identity_id", *PATHWAY_COLUMNS)
        )
        total = rows.height

        def report(done: int) -> None:
            if progress:
                progress(f"loading pathways {done:,}/{total:,}")

        insert_frame(connection, "pathway", rows, progress=report)
        if issues.height:
            insert_frame(connection, "row_issue", _issue_rows(issues, feed_id))
        became_current = _advance_current(connection, record.provider_code, feed_id, record.census_date)
        connection.execute(
            update(Feed).where(Feed.id == feed_id).values(load_seconds=time.perf_counter() - started)
        )
    return LoadOutcome(feed_id=feed_id, duplicate=False, became_current=became_current)


def _advance_current(connection: Connection, provider_code: str, feed_id: int, census: dt.date) -> bool:
    """Make this feed current unless the provider already has a newer census (history load)."""
    current = connection.execute(
        select(CurrentSnapshot.census_date).where(CurrentSnapshot.provider_code == provider_code)
    ).scalar()
    if current is not None and census < current:
        return False
    insert_fn = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = insert_fn(CurrentSnapshot).values(
        provider_code=provider_code, feed_id=feed_id, census_date=census,
        updated_at=dt.datetime.now(dt.UTC),
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["provider_code"],
            set_={"feed_id": statement.excluded.feed_id, "census_date": statement.excluded.census_date,
                  "updated_at": statement.excluded.updated_at},
        )
    )
    return True
