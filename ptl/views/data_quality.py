"""Data quality per provider: is what each provider sends complete, clean and fresh?

Per provider (every provider that has sent a feed):
- completeness over its current pathways: `ethnicity_known_share` (an ethnic category A–S;
  Z "not stated" and 99 "not known" count as unknown), `nhs_number_share` (a valid NHS number
  on the patient's source record: computed from a presence flag, the numbers never leave the
  store), `postcode_share` (a valid postcode on the source record), `lsoa_share` (an LSOA,
  from the postcode or the extract) and `imd_share` (an IMD quintile found for it);
- `duplicate_share`: share of its open RTT pathways that belong to a duplicate group;
- the last feed received (loaded or refused): id, status, census date, rows read and rejected,
  `rejected_share` = rows rejected / rows read;
- `staleness_days`: days from the current snapshot's census date to `today`.
Filters narrow the pathway figures (specialty, site, priority, list type); feed figures are
about whole files and ignore them, except the provider.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import polars as pl

from ptl import codes
from ptl.views.duplicates import duplicate_pathways, open_rtt_expr
from ptl.views.filters import FILTER_COLUMNS, NO_FILTER, ViewFilter
from ptl.views.snapshot import Snapshot

DATA_QUALITY_COLUMNS: Final[tuple[str, ...]] = (
    "provider_code", "current_feed_id", "census_date", "pathways", "open_rtt_pathways",
    "ethnicity_known_share", "nhs_number_share", "postcode_share", "lsoa_share", "imd_share",
    "duplicate_share", "last_feed_id", "last_feed_status", "last_feed_census_date",
    "last_feed_rows_read", "last_feed_rows_rejected", "rejected_share", "staleness_days",
)
_KNOWN_ETHNICITY: Final[list[str]] = sorted(
    c for c, g in codes.ETHNIC_GROUP_OF_CATEGORY.items() if g != "Not stated/known")


def data_quality(snapshot: Snapshot, filters: ViewFilter = NO_FILTER,
                 today: dt.date | None = None) -> pl.DataFrame:
    """One row per provider, columns `DATA_QUALITY_COLUMNS` (meanings: module docstring)."""
    today = today or dt.date.today()
    # One lazy plan over the columns read, both groupings collected together (in parallel).
    rows = snapshot.current.lazy().select(
        *FILTER_COLUMNS, "id", "feed_id", "census_date", "ethnic_category", "has_nhs_number",
        "has_postcode", "lsoa11", "imd_quintile", "is_rtt", "rtt_status")
    if filters.as_dict():
        rows = rows.filter(filters.expr())
    members = duplicate_pathways(snapshot.current).get_column("id")
    share = {
        "ethnicity_known_share": pl.col("ethnic_category").is_in(_KNOWN_ETHNICITY).fill_null(False),
        "nhs_number_share": pl.col("has_nhs_number").fill_null(False),
        "postcode_share": pl.col("has_postcode").fill_null(False),
        "lsoa_share": pl.col("lsoa11").is_not_null(),
        "imd_share": pl.col("imd_quintile").is_not_null(),
    }
    completeness, duplicates, present = pl.collect_all([
        rows.group_by("provider_code").agg(
            pl.col("feed_id").max().alias("current_feed_id"),
            pl.col("census_date").max(),
            pl.len().cast(pl.Int64).alias("pathways"),
            *[expr.mean().alias(name) for name, expr in share.items()],
        ),
        rows.filter(open_rtt_expr()).group_by("provider_code").agg(
            pl.len().cast(pl.Int64).alias("open_rtt_pathways"),
            pl.col("id").is_in(members.implode()).mean().alias("duplicate_share"),
        ),
        rows.select("provider_code").unique(),
    ])
    feeds = snapshot.feeds
    if filters.provider_code is not None:
        feeds = feeds.filter(pl.col("provider_code") == filters.provider_code)
    last_feed = (
        feeds.sort("id").group_by("provider_code").last()
        .select(
            "provider_code",
            pl.col("id").alias("last_feed_id"),
            pl.col("status").alias("last_feed_status"),
            pl.col("census_date").alias("last_feed_census_date"),
            pl.col("rows_read").alias("last_feed_rows_read"),
            pl.col("rows_rejected").alias("last_feed_rows_rejected"),
            pl.when(pl.col("rows_read") > 0).then(pl.col("rows_rejected") / pl.col("rows_read"))
            .alias("rejected_share"),
        )
    )
    current_census = (feeds.filter(pl.col("is_current")).group_by("provider_code")
                      .agg(pl.col("census_date").max().alias("current_census")))
    providers = pl.concat([feeds.select("provider_code"), present]).unique()
    return (
        providers.join(completeness, on="provider_code", how="left")
        .join(duplicates, on="provider_code", how="left")
        .join(last_feed, on="provider_code", how="left")
        .join(current_census, on="provider_code", how="left")
        .with_columns(
            pl.col("census_date").fill_null(pl.col("current_census")),
            pl.col("pathways", "open_rtt_pathways").fill_null(0),
        )
        .with_columns((pl.lit(today) - pl.col("census_date")).dt.total_days().alias("staleness_days"))
        .select(DATA_QUALITY_COLUMNS)
        .sort("provider_code")
    )
