"""The identity review list: linkage conflicts a person must look at, with their evidence.

Kinds:
- `nhs_number_dob_conflict`: records linked on the same NHS number carry different dates of
  birth (a typo, or a number recorded against the wrong patient);
- `nhs_number_shared_in_provider`: one provider holds the same NHS number for two or more of
  its local patients (a duplicate registration, or a wrong number);
- `ambiguous_match`: a record (or chain of records) scores above the threshold against two
  different persons or NHS numbers; the persons were kept apart, not merged.

Evidence names records by source identity id, provider and local patient id (identifiable
tier, like the review list itself) and describes disagreements without quoting dates of birth.
Detection is idempotent: an item is keyed by its kind and the records involved, so re-running
never lists a conflict twice. The NHS-number kinds are re-detected every run and clear
themselves when the data no longer shows them; an ambiguous match stays until resolved.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import duckdb
import polars as pl
from sqlalchemy import Connection, bindparam, text

from ptl.store.bulk import insert_frame, read_frame

#: Kinds re-detected from all records every run (cleared automatically when gone).
REDETECTED_KINDS: Final[tuple[str, ...]] = ("nhs_number_dob_conflict", "nhs_number_shared_in_provider")
#: Most edges quoted in an ambiguous match's evidence.
_EVIDENCE_EDGES = 50

ITEM_SCHEMA: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    "kind": pl.String, "subject_key": pl.String, "source_identity_ids": pl.String,
    "provider_codes": pl.String, "person_ids": pl.String, "evidence": pl.String,
}


def _subject_keys(items: pl.DataFrame) -> pl.DataFrame:
    """kind + a digest of the record ids: fixed length, the same for the same records."""
    connection = duckdb.connect()
    try:
        connection.register("items", items.to_arrow())
        return connection.sql(
            "SELECT * EXCLUDE (subject_key), kind || ':' || left(md5(source_identity_ids), 24) "
            "AS subject_key FROM items"
        ).pl().select(list(ITEM_SCHEMA))
    finally:
        connection.close()


def _record_fields(extra: list[pl.Expr] | None = None) -> pl.Expr:
    return pl.struct(
        pl.col("source_identity_id"), pl.col("provider_code"), pl.col("local_patient_id"),
        pl.col("person_id"), *(extra or []),
    )


def _items(members: pl.DataFrame, group: str, kind: str, summary: pl.Expr, record: pl.Expr,
           pairs: pl.DataFrame | None = None) -> pl.DataFrame:
    """One item per `group` of `members`: sorted record ids, providers, persons and evidence
    (JSON: summary, records[, pairs])."""
    if members.height == 0:
        return pl.DataFrame(schema=ITEM_SCHEMA)
    grouped = members.sort("source_identity_id").group_by(group).agg(
        pl.col("source_identity_id").cast(pl.String).str.join(",").alias("source_identity_ids"),
        pl.col("provider_code").unique().sort().str.join(",").alias("provider_codes"),
        pl.col("person_id").drop_nulls().unique().sort().cast(pl.String).str.join(",").alias("person_ids"),
        summary.first().alias("summary"),
        record.alias("records"),
    )
    parts = [pl.col("summary"), pl.col("records")]
    if pairs is not None:
        grouped = grouped.join(pairs, on=group, how="left")
        parts.append(pl.col("pairs"))
    return _subject_keys(grouped.select(
        pl.lit(kind).alias("kind"),
        pl.lit("").alias("subject_key"),
        "source_identity_ids", "provider_codes", "person_ids",
        pl.struct(parts).struct.json_encode().alias("evidence"),
    ))


def number_conflicts(records: pl.DataFrame) -> pl.DataFrame:
    """Review items for NHS-number conflicts among all records.

    `records`: source_identity_id, provider_code, local_patient_id, person_id, nhs_key (the
    deterministic number), nhs_number (any valid number), date_of_birth.
    """
    keyed = records.filter(pl.col("nhs_key").is_not_null())
    dob_groups = keyed.group_by("nhs_key").agg(
        pl.col("date_of_birth").drop_nulls().n_unique().alias("dates"),
        pl.col("date_of_birth").min().alias("_first"),
        pl.col("date_of_birth").max().alias("_last"),
    ).filter(pl.col("dates") > 1)
    dob_members = keyed.join(dob_groups, on="nhs_key").with_columns(
        # Which date each record carries, as a letter: disagreement without the dates.
        pl.col("date_of_birth").rank("dense").over("nhs_key").cast(pl.Int32).alias("_rank"),
        (pl.col("_last") - pl.col("_first")).dt.total_days().alias("_span"),
    )
    dob_items = _items(
        dob_members, "nhs_key", "nhs_number_dob_conflict",
        pl.format("records sharing one NHS number carry {} different dates of birth, up to {} "
                  "days apart; check the number and date of birth on each PAS", "dates", "_span"),
        _record_fields([
            pl.when(pl.col("_rank").is_null()).then(pl.lit("missing"))
            .otherwise(pl.format("date {}", pl.col("_rank"))).alias("date_of_birth"),
        ]),
    )
    numbered = records.filter(pl.col("nhs_number").is_not_null())
    shared = numbered.group_by("provider_code", "nhs_number").agg(pl.len().alias("patients")).filter(
        pl.col("patients") > 1)
    shared_members = numbered.join(shared, on=["provider_code", "nhs_number"]).with_columns(
        pl.concat_str("provider_code", "nhs_number", separator="|").alias("_group"))
    shared_items = _items(
        shared_members, "_group", "nhs_number_shared_in_provider",
        pl.format("one provider holds the same NHS number for {} local patients: a duplicate "
                  "registration or a wrong number; merge or correct them on the PAS", "patients"),
        _record_fields(),
    )
    return pl.concat([dob_items, shared_items])


def ambiguous_matches(conflicts: pl.DataFrame, records: pl.DataFrame, edges: pl.DataFrame,
                      previous: pl.DataFrame) -> pl.DataFrame:
    """Review items for conflicting components found by clustering.

    `conflicts`: source_identity_id, component; `records`: source_identity_id, provider_code,
    local_patient_id, person_id (this run's); `edges`: scored pairs; `previous`:
    source_identity_id, person_id before this run.
    """
    if conflicts.height == 0:
        return pl.DataFrame(schema=ITEM_SCHEMA)
    members = conflicts.join(records, on="source_identity_id").join(
        previous.rename({"person_id": "previous_person_id"}), on="source_identity_id", how="left")
    pairs = (
        edges.join(conflicts.rename({"source_identity_id": "source_identity_id_l"}), on="source_identity_id_l")
        .join(conflicts.rename({"source_identity_id": "source_identity_id_r", "component": "_c"}),
              on="source_identity_id_r")
        .filter(pl.col("component") == pl.col("_c"))
        .sort("match_probability", descending=True)
        .group_by("component", maintain_order=True).agg(
            pl.struct(
                pl.col("source_identity_id_l").alias("a"), pl.col("source_identity_id_r").alias("b"),
                pl.col("match_probability").round(6).alias("match_probability"),
            ).head(_EVIDENCE_EDGES).alias("pairs"),
            pl.len().alias("scored_pairs"),
        )
    )
    members = members.join(pairs.select("component", "scored_pairs"), on="component", how="left")
    return _items(
        members, "component", "ambiguous_match",
        pl.format("{} scored pairs put these records above the match threshold against more than "
                  "one person or NHS number; they were kept apart. Check whether they are one "
                  "patient", pl.col("scored_pairs").fill_null(0)),
        _record_fields([pl.col("previous_person_id")]),
        pairs.select("component", "pairs"),
    )


def sync_review_items(connection: Connection, detected: pl.DataFrame, link_run_id: int,
                      now: dt.datetime) -> tuple[int, int]:
    """List newly detected items; clear re-detected kinds no longer seen. Returns (opened, cleared)."""
    known = read_frame(connection, "SELECT id, kind, status, subject_key FROM identity_review",
                       schema={"id": pl.Int64})
    fresh = detected.unique("subject_key").join(known.select("subject_key"), on="subject_key", how="anti")
    if fresh.height:
        insert_frame(connection, "identity_review", fresh.select(
            "kind", pl.lit("open").alias("status"), "subject_key", "source_identity_ids",
            "provider_codes", "person_ids", "evidence",
            pl.lit(link_run_id, dtype=pl.Int64).alias("link_run_id"),
            pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("created_at"),
        ))
    gone = known.filter(
        (pl.col("status") == "open") & pl.col("kind").is_in(list(REDETECTED_KINDS))
    ).join(detected.select("subject_key"), on="subject_key", how="anti")
    if gone.height:
        connection.execute(
            text("UPDATE identity_review SET status = 'resolved', resolved_at = :now, "
                 "resolution = 'no longer detected' WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)),
            {"now": now, "ids": gone["id"].to_list()},
        )
    return fresh.height, gone.height


def review_items(connection: Connection, *, status: str | None = None) -> pl.DataFrame:
    """The identity review list, open items first, newest first (optionally one status)."""
    where = "WHERE status = :status" if status else ""
    return read_frame(
        connection,
        "SELECT id, kind, status, source_identity_ids, provider_codes, person_ids, evidence, "
        f"link_run_id, created_at, resolved_at, resolution FROM identity_review {where} "
        "ORDER BY CASE status WHEN 'open' THEN 0 ELSE 1 END, id DESC",
        {"status": status} if status else None,
        schema={"id": pl.Int64, "link_run_id": pl.Int64},
    )


def resolve_review_item(connection: Connection, item_id: int, note: str, now: dt.datetime) -> bool:
    """Mark one item resolved with the reviewer's note; False when there is no such open item."""
    result = connection.execute(
        text("UPDATE identity_review SET status = 'resolved', resolved_at = :now, resolution = :note "
             "WHERE id = :id AND status = 'open'"),
        {"now": now, "note": note, "id": item_id},
    )
    return bool(result.rowcount)
