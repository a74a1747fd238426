"""Duplicate pathways: the same need waiting twice in the system-wide list.

Two rules: the same person waiting on open RTT pathways for the same treatment function at two
or more providers, or the same pathway key (issuer + pathway id) at two or more providers.
Each group is one need: its earliest clock start stands (is kept) and the others are left out
of system totals. A pathway can belong to a group under each rule.
"""

from __future__ import annotations

from typing import Final

import polars as pl

SAME_PERSON: Final[str] = "same_person_same_treatment_function"
SAME_KEY: Final[str] = "same_pathway_key"

_COLUMNS: Final[tuple[str, ...]] = (
    "id", "provider_code", "pathway_id", "pathway_id_issuer", "person_id", "treatment_function_code",
    "rtt_start_date", "days_waited", "week_band", "is_rtt",
)


def _groups(current: pl.DataFrame, keys: list[str], reason: str) -> pl.DataFrame:
    members = current.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys)).filter(
        pl.col("provider_code").n_unique().over(keys) > 1
    )
    # The earliest clock start stands; unknown clock starts last; ties to the lowest row id.
    ranked = members.sort(["rtt_start_date", "id"], nulls_last=True).with_columns(
        (pl.int_range(pl.len()).over(keys) == 0).alias("keep"),
        pl.len().over(keys).cast(pl.Int32).alias("group_size"),
        pl.col("rtt_start_date").min().over(keys).alias("earliest_clock_start"),
        pl.concat_str([pl.lit(reason), *[pl.col(k).cast(pl.String) for k in keys]], separator=":")
        .alias("group_key"),
        pl.lit(reason).alias("reason"),
    )
    providers = ranked.group_by("group_key").agg(
        pl.col("provider_code").unique().sort().str.join(",").alias("group_providers"))
    return ranked.join(providers, on="group_key")


def duplicate_pathways(current: pl.DataFrame) -> pl.DataFrame:
    """One row per member of each duplicate group in the current snapshot.

    `current`: current pathways with at least id, provider_code, pathway_id, pathway_id_issuer,
    person_id, treatment_function_code, rtt_start_date, days_waited, week_band, is_rtt.
    Returns group_key, reason, keep, group_size, group_providers, earliest_clock_start,
    weeks_waited and those columns, ordered by group then clock start.
    """
    missing = [c for c in _COLUMNS if c not in current.columns]
    if missing:
        raise ValueError(f"duplicate_pathways needs the columns {', '.join(missing)}")
    frame = current.select(_COLUMNS)
    open_rtt = frame.filter(pl.col("is_rtt").fill_null(False))
    found = pl.concat([
        _groups(open_rtt, ["person_id", "treatment_function_code"], SAME_PERSON),
        _groups(frame, ["pathway_id_issuer", "pathway_id"], SAME_KEY),
    ], how="vertical_relaxed")
    return found.select(
        "group_key", "reason", "keep", "group_size", "group_providers", "earliest_clock_start",
        *_COLUMNS, pl.col("week_band").alias("weeks_waited"),
    ).sort("reason", "group_key", "rtt_start_date", "id", nulls_last=True)


def counted_once(current: pl.DataFrame) -> pl.DataFrame:
    """The current pathways with every duplicate but the one kept removed: system totals
    count each need once."""
    dropped = duplicate_pathways(current).filter(~pl.col("keep")).select("id").unique()
    return current.join(dropped, on="id", how="anti")
