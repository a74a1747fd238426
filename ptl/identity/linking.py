"""One identity-linking run over the store: every source identity assigned to a person.

Reads source identities and their current links (bulk; COPY on PostgreSQL), decides which
records are *pending* (never linked, identifying values changed since, or every record in a
full run), links them — deterministically on a usable NHS number, probabilistically with
Splink for the rest — clusters, carries person ids over from the previous run, and writes the
changes back in one transaction: new persons, changed links only, merges and splits, review
items and the run record. A run over unchanged data changes no link.

A run is *full* (everything re-linked, ids still carried by overlap) on the first run, when the
model file or the threshold changed since the last run, or when asked (`ptl link --full`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, bindparam, insert, select, text, update

from ptl.identity.clustering import cluster
from ptl.identity.continuity import carry_person_ids, person_changes
from ptl.identity.features import (
    SOURCE_COLUMNS,
    SOURCE_SCHEMA,
    conformed,
    linkage_features,
    values_digest,
)
from ptl.identity.model import load_model, model_path, model_version
from ptl.identity.review import ambiguous_matches, number_conflicts, sync_review_items
from ptl.identity.scoring import score_pairs
from ptl.settings import Settings
from ptl.store.bulk import insert_frame, read_frame
from ptl.store.engine import write_connection
from ptl.store.identity import LinkRun, Person

log = logging.getLogger("ptl.identity")

_ATTEMPTS = 3


class LinkRaced(Exception):
    """Another link run finished while this one was computing; nothing was written."""


@dataclass(frozen=True)
class LinkReport:
    """What a run did (`ptl link --json`, the scheduler's log line)."""

    run_id: int
    mode: str
    model_version: str
    match_threshold: float
    identities: int
    pending: int
    pairs_estimated: int
    links_changed: int
    persons: int
    persons_created: int
    persons_merged: int
    persons_split: int
    linked_nhs_number: int
    linked_probabilistic: int
    singletons: int
    reviews_opened: int
    reviews_cleared: int
    reviews_open: int
    seconds: float
    #: Why the probabilistic step did not run (no field it compares has data), else None.
    probabilistic_skipped: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


_IDENTITY_SQL = (
    "SELECT " + ", ".join(f"s.{c}" for c in SOURCE_COLUMNS) + ", l.person_id, l.method, "
    "l.match_probability, l.values_digest AS linked_digest "
    "FROM source_identity s LEFT JOIN identity_link l ON l.source_identity_id = s.id"
)
_IDENTITY_SCHEMA: dict[str, pl.DataType] = {
    **SOURCE_SCHEMA, "person_id": pl.Int64(), "method": pl.String(), "match_probability": pl.Float64(),
    "linked_digest": pl.String(),
}


@dataclass(frozen=True)
class _Plan:
    """Everything a run will write, computed before the write transaction."""

    mode: str
    identities: int
    pending: int
    pairs_estimated: int
    probabilistic_skipped: str | None
    links: pl.DataFrame  # source_identity_id, cluster, method, match_probability, values_digest
    previous: pl.DataFrame  # affected records' last links: source_identity_id, person_id, method, …
    settled: pl.DataFrame  # links this run leaves alone: source_identity_id, person_id, method
    cluster_person: pl.DataFrame  # cluster → existing person id or null
    retired: pl.DataFrame  # person_id
    conflicts: pl.DataFrame
    edges: pl.DataFrame
    records: pl.DataFrame  # source_identity_id, provider_code, local_patient_id


def link(engine: Engine, settings: Settings, *, full: bool = False) -> LinkReport:
    """Link every source identity to a person (idempotent). Raises `PairBudgetExceeded` when
    blocking would exceed `settings.link_pair_budget`, `ModelError` for an unusable model."""
    started = time.perf_counter()
    path = model_path(settings.link_model_path)
    version = model_version(path)
    model = load_model(path)
    for attempt in range(_ATTEMPTS):
        with engine.connect() as connection:
            identities = read_frame(connection, _IDENTITY_SQL, schema=_IDENTITY_SCHEMA)
            # An empty store reads as untyped columns, and SQLite types a column no row fills as
            # Null: conform to the schema so every rule downstream sees the types it expects.
            identities = conformed(identities, _IDENTITY_SCHEMA)
            last = connection.execute(
                select(LinkRun.id, LinkRun.model_version, LinkRun.match_threshold)
                .order_by(LinkRun.id.desc()).limit(1)
            ).first()
        whole = full or last is None or last.model_version != version or \
            last.match_threshold != settings.link_match_threshold
        plan = _plan(identities, model, settings, full=whole)
        try:
            report = _write(engine, plan, version, settings, None if last is None else last.id, started)
        except LinkRaced:
            if attempt == _ATTEMPTS - 1:
                raise
            log.info("another link run finished meanwhile; linking again")
            continue
        log.info("identity linking finished", extra={k: v for k, v in report.as_json().items()
                                                     if k != "model_version"})
        return report
    raise AssertionError("unreachable")  # pragma: no cover


def has_unlinked_identities(engine: Engine) -> bool:
    """Whether any source identity has no link yet (one indexed probe per identity at most;
    stops at the first): with none, and no identity written since the last run, a run would
    change nothing."""
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT 1 FROM source_identity s WHERE NOT EXISTS "
            "(SELECT 1 FROM identity_link l WHERE l.source_identity_id = s.id) LIMIT 1"
        )).first() is not None


def _affected(features: pl.DataFrame, edges: pl.DataFrame) -> pl.Series:
    """Records whose person this run may change: pending ones, those in a scored pair, and
    every record of a person one of those belongs to or whose NHS number they carry. Every
    other record keeps its person and link untouched (and is not re-clustered)."""
    touched = pl.concat([
        features.filter(pl.col("pending")).select("source_identity_id"),
        edges.select(pl.col("source_identity_id_l").alias("source_identity_id")),
        edges.select(pl.col("source_identity_id_r").alias("source_identity_id")),
    ]).unique()
    touched_records = features.join(touched, on="source_identity_id", how="semi")
    keys = touched_records.select("nhs_key").drop_nulls().unique()
    persons = pl.concat([
        touched_records.select("old_person_id"),
        features.join(keys, on="nhs_key", how="semi").select("old_person_id"),
    ]).drop_nulls().unique()
    return (
        features["source_identity_id"].is_in(touched["source_identity_id"].implode())
        | features["old_person_id"].is_in(persons["old_person_id"].implode())
    )


def _plan(identities: pl.DataFrame, model: dict[str, Any], settings: Settings, *, full: bool) -> _Plan:
    features = linkage_features(identities).join(
        values_digest(identities).rename({"id": "source_identity_id"}), on="source_identity_id"
    ).with_columns(
        (pl.lit(None, dtype=pl.Int64) if full else identities["person_id"]).alias("old_person_id"),
        identities["linked_digest"].alias("linked_digest"),
    )
    pending = (
        pl.lit(full) | pl.col("old_person_id").is_null()
        | pl.col("linked_digest").ne_missing(pl.col("values_digest"))
    )
    features = features.with_columns(pending.alias("pending"))
    scored = score_pairs(
        features.drop("values_digest", "linked_digest", "old_person_id"),
        model, threshold=settings.link_match_threshold, pair_budget=settings.link_pair_budget,
    )
    previous_all = identities.filter(pl.col("person_id").is_not_null()).select(
        pl.col("id").alias("source_identity_id"), "person_id", "method", "match_probability",
        pl.col("linked_digest"),
    )
    work = features if full else features.filter(_affected(features, scored.edges))
    clusters = cluster(work.select("source_identity_id", "nhs_key", "pending", "old_person_id"), scored.edges)
    previous = previous_all.join(work.select("source_identity_id"), on="source_identity_id", how="semi")
    continuity = carry_person_ids(clusters.assignment, previous.select("source_identity_id", "person_id"))
    links = _links(work, clusters.assignment, scored.edges, previous)
    settled = previous_all.join(work.select("source_identity_id"), on="source_identity_id", how="anti")
    base = identities.select(pl.col("id").alias("source_identity_id"), "provider_code", "local_patient_id")
    return _Plan(
        mode="full" if full else "incremental",
        identities=identities.height,
        pending=int(features["pending"].sum()),
        pairs_estimated=scored.pairs_estimated,
        probabilistic_skipped=scored.skipped,
        links=links,
        previous=previous,
        settled=settled.select("source_identity_id", "person_id", "method"),
        cluster_person=continuity.cluster_person,
        retired=continuity.retired,
        conflicts=clusters.conflicts,
        edges=scored.edges,
        records=base.join(
            features.select("source_identity_id", "nhs_key", "nhs_number", "date_of_birth"),
            on="source_identity_id"),
    )


def _links(features: pl.DataFrame, assignment: pl.DataFrame, edges: pl.DataFrame,
           previous: pl.DataFrame) -> pl.DataFrame:
    """Each record's cluster, link method and match probability (best edge inside its cluster)."""
    cluster_of = assignment.select("source_identity_id", "cluster")
    inside = (
        edges.join(cluster_of.rename({"source_identity_id": "source_identity_id_l", "cluster": "cl"}),
                   on="source_identity_id_l")
        .join(cluster_of.rename({"source_identity_id": "source_identity_id_r", "cluster": "cr"}),
              on="source_identity_id_r")
        .filter(pl.col("cl") == pl.col("cr"))
    )
    best = pl.concat([
        inside.select(pl.col("source_identity_id_l").alias("source_identity_id"), "match_probability"),
        inside.select(pl.col("source_identity_id_r").alias("source_identity_id"), "match_probability"),
    ]).group_by("source_identity_id").agg(pl.col("match_probability").max().alias("best"))
    frame = (
        features.select("source_identity_id", "nhs_key", "values_digest")
        .join(cluster_of, on="source_identity_id")
        .join(best, on="source_identity_id", how="left")
        .join(previous.select("source_identity_id", pl.col("match_probability").alias("old_p"),
                              pl.col("method").alias("old_method")), on="source_identity_id", how="left")
        .with_columns(pl.len().over("cluster").alias("size"))
    )
    method = (
        pl.when(pl.col("nhs_key").is_not_null()).then(pl.lit("nhs_number"))
        .when(pl.col("size") > 1).then(pl.lit("probabilistic"))
        .otherwise(pl.lit("singleton"))
    )
    probability = (
        pl.when(method == "probabilistic")
        .then(pl.coalesce("best", pl.when(pl.col("old_method") == "probabilistic").then("old_p")))
    )
    return frame.select("source_identity_id", "cluster", method.alias("method"),
                        probability.cast(pl.Float64).alias("match_probability"), "values_digest")


def _allocate_person_ids(connection: Connection, count: int) -> int:
    """Reserve `count` consecutive person ids (the run holds the link lock); return the first."""
    if connection.dialect.name == "postgresql":
        first = int(connection.execute(text("SELECT nextval(pg_get_serial_sequence('person', 'id'))"))
                    .scalar_one())
        if count > 1:
            connection.execute(text("SELECT setval(pg_get_serial_sequence('person', 'id'), :last)"),
                               {"last": first + count - 1})
        return first
    return int(connection.execute(text("SELECT COALESCE(MAX(id), 0) FROM person")).scalar_one()) + 1


def _replace_links(connection: Connection, changed: pl.DataFrame) -> None:
    """Delete the changed records' old links and insert the new ones (bulk on both backends)."""
    postgres = connection.dialect.name == "postgresql"
    connection.execute(text(
        "CREATE TEMPORARY TABLE link_change (source_identity_id BIGINT PRIMARY KEY)"
        + (" ON COMMIT DROP" if postgres else "")
    ))
    insert_frame(connection, "link_change", changed.select("source_identity_id"))
    connection.execute(text("DELETE FROM identity_link WHERE source_identity_id IN "
                            "(SELECT source_identity_id FROM link_change)"))
    if not postgres:
        connection.execute(text("DROP TABLE link_change"))
    insert_frame(connection, "identity_link", changed)


def _write(engine: Engine, plan: _Plan, version: str, settings: Settings, last_run_id: int | None,
           started: float) -> LinkReport:
    now = dt.datetime.now(dt.UTC)
    with write_connection(engine) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('ptl-identity-link'))"))
        latest = connection.execute(select(LinkRun.id).order_by(LinkRun.id.desc()).limit(1)).scalar()
        if latest != last_run_id:
            raise LinkRaced()
        run_id = int(connection.execute(
            insert(LinkRun).values(started_at=now, mode=plan.mode, model_version=version,
                                   match_threshold=settings.link_match_threshold, identities=plan.identities,
                                   pending=plan.pending, pairs_scored=plan.pairs_estimated, links_changed=0,
                                   persons_created=0, persons_merged=0, persons_split=0, reviews_opened=0)
            .returning(LinkRun.id)
        ).scalar_one())

        new_clusters = plan.cluster_person.filter(pl.col("person_id").is_null()).sort("cluster")
        first = _allocate_person_ids(connection, new_clusters.height) if new_clusters.height else 0
        created = new_clusters.select("cluster", (pl.int_range(pl.len(), dtype=pl.Int64) + first)
                                      .alias("new_id"))
        insert_frame(connection, "person", created.select(
            pl.col("new_id").alias("id"),
            pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("created_at"),
            pl.lit(run_id, dtype=pl.Int64).alias("created_by_run_id"),
        ))
        cluster_person = plan.cluster_person.join(created, on="cluster", how="left").select(
            "cluster", pl.coalesce("person_id", "new_id").alias("person_id"))
        links = plan.links.join(cluster_person, on="cluster").drop("cluster")

        previous = plan.previous.select("source_identity_id", "person_id")
        changes = person_changes(links.select("source_identity_id", "person_id"), previous, plan.retired)
        _retire(connection, changes, plan.retired, now)
        if changes.height:
            insert_frame(connection, "person_change", changes.with_columns(
                pl.lit(run_id, dtype=pl.Int64).alias("link_run_id"),
                pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("changed_at"),
            ))

        old = plan.previous.rename({"person_id": "old_person_id", "method": "old_method",
                                    "match_probability": "old_p", "linked_digest": "old_digest"})
        compared = links.join(old, on="source_identity_id", how="left")
        changed = compared.filter(
            pl.col("person_id").ne_missing(pl.col("old_person_id"))
            | pl.col("method").ne_missing(pl.col("old_method"))
            | pl.col("match_probability").ne_missing(pl.col("old_p"))
            | pl.col("values_digest").ne_missing(pl.col("old_digest"))
        ).select("source_identity_id", "person_id", "method", "match_probability",
                 pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("linked_at"), "values_digest")
        if changed.height:
            _replace_links(connection, changed)

        final = pl.concat([links.select("source_identity_id", "person_id", "method"), plan.settled])
        records = plan.records.join(final.select("source_identity_id", "person_id"), on="source_identity_id")
        detected = pl.concat([
            number_conflicts(records),
            ambiguous_matches(plan.conflicts, records.select("source_identity_id", "provider_code",
                                                             "local_patient_id", "person_id"),
                              plan.edges, previous),
        ])
        opened, cleared = sync_review_items(connection, detected, run_id, now)
        open_items = int(connection.execute(
            text("SELECT COUNT(*) FROM identity_review WHERE status = 'open'")).scalar_one())
        merged = int((changes["kind"] == "merge").sum()) if changes.height else 0
        split = int((changes["kind"] == "split").sum()) if changes.height else 0
        seconds = time.perf_counter() - started
        connection.execute(update(LinkRun).where(LinkRun.id == run_id).values(
            finished_at=dt.datetime.now(dt.UTC), links_changed=changed.height, persons_created=created.height,
            persons_merged=merged, persons_split=split, reviews_opened=opened, seconds=seconds,
        ))
    methods = final["method"].value_counts()
    count = dict(zip(methods["method"].to_list(), methods["count"].to_list(), strict=True))
    return LinkReport(
        run_id=run_id, mode=plan.mode, model_version=version,
        match_threshold=settings.link_match_threshold, identities=plan.identities, pending=plan.pending,
        pairs_estimated=plan.pairs_estimated, links_changed=changed.height,
        persons=int(final["person_id"].n_unique()) if final.height else 0,
        persons_created=created.height, persons_merged=merged, persons_split=split,
        linked_nhs_number=int(count.get("nhs_number", 0)),
        linked_probabilistic=int(count.get("probabilistic", 0)),
        singletons=int(count.get("singleton", 0)), reviews_opened=opened, reviews_cleared=cleared,
        reviews_open=open_items, seconds=round(seconds, 3),
        probabilistic_skipped=plan.probabilistic_skipped,
    )


def _retire(connection: Connection, changes: pl.DataFrame, retired: pl.DataFrame, now: dt.datetime) -> None:
    """Mark absorbed persons retired, pointing at the person that took most of their records."""
    if retired.height == 0:
        return
    survivor = (
        changes.filter(pl.col("kind") == "merge")
        .sort("records", "person_id", descending=[True, False])
        .unique("other_person_id", keep="first")
        .select(pl.col("other_person_id").alias("retired_id"), pl.col("person_id").alias("survivor_id"))
    )
    rows = retired.select(pl.col("person_id").alias("retired_id")).join(survivor, on="retired_id", how="left")
    connection.execute(
        update(Person).where(Person.id == bindparam("retired_id")).values(
            retired_at=now, merged_into_id=bindparam("survivor_id")),
        rows.to_dicts(),
    )


def person_ids(connection: Connection) -> pl.DataFrame:
    """source_identity_id → person_id for every linked source identity."""
    return read_frame(
        connection, "SELECT source_identity_id, person_id FROM identity_link ORDER BY source_identity_id",
        schema={"source_identity_id": pl.Int64, "person_id": pl.Int64},
    )


def identity_export(connection: Connection) -> pl.DataFrame:
    """Every source identity with its person, link method and probability (identifiable tier)."""
    return read_frame(
        connection,
        "SELECT s.provider_code, s.local_patient_id, l.person_id, l.method AS link_method, "
        "l.match_probability FROM source_identity s "
        "LEFT JOIN identity_link l ON l.source_identity_id = s.id "
        "ORDER BY s.provider_code, s.local_patient_id",
        schema={"person_id": pl.Int64, "match_probability": pl.Float64},
    )
