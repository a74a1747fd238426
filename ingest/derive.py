"""Derived fields of a validated snapshot: wait arithmetic, age band, ethnic group, LSOA, IMD.

Pure over frames: the caller fetches the postcode and IMD lookups from the store.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from ptl import codes, rtt


def age_band_expr(age: pl.Expr) -> pl.Expr:
    bands = codes.AGE_BANDS
    label: pl.Expr = pl.lit(None, dtype=pl.String)
    # Walk from the top band down so each row gets the highest band it reaches.
    for lower, name in bands:
        label = pl.when(age >= lower).then(pl.lit(name)).otherwise(label)
    return pl.when(age.is_null() | (age < 0)).then(None).otherwise(label)


def priority_rank_expr(priority: pl.Expr) -> pl.Expr:
    return priority.replace_strict(
        codes.CLINICAL_PRIORITY_RANK, default=codes.UNKNOWN_PRIORITY_RANK, return_dtype=pl.Int16
    )


def derive(
    clean: pl.DataFrame,
    census_date: dt.date,
    postcodes: pl.DataFrame,
    imd: pl.DataFrame,
) -> pl.DataFrame:
    """Add the derived columns the store keeps on every pathway.

    `postcodes`: postcode → lookup_lsoa11; `imd`: lsoa11 → imd_decile, imd_quintile.
    LSOA comes from the postcode lookup first, else from the extract's own `lsoa11`.
    """
    census = pl.lit(census_date)
    is_rtt = pl.col("waiting_list_type").is_in(sorted(codes.RTT_WAITING_LIST_TYPES))
    days = rtt.days_waited_expr(census, pl.col("rtt_start_date"))
    frame = clean.with_columns(
        is_rtt.alias("is_rtt"),
        pl.when(is_rtt).then(days).otherwise(None).alias("days_waited"),
        rtt.age_years_expr(census, pl.col("date_of_birth")).alias("age_years"),
        pl.col("ethnic_category")
        .replace_strict(codes.ETHNIC_GROUP_OF_CATEGORY, default=None, return_dtype=pl.String)
        .alias("ethnic_group"),
        priority_rank_expr(pl.col("clinical_priority")).alias("priority_rank"),
    ).with_columns(
        rtt.week_band_expr(pl.col("days_waited")).alias("week_band"),
        age_band_expr(pl.col("age_years")).alias("age_band"),
    )
    frame = frame.join(postcodes.unique("postcode"), on="postcode", how="left")
    frame = frame.with_columns(
        pl.coalesce("lookup_lsoa11", "lsoa11").alias("lsoa11")
    ).drop("lookup_lsoa11")
    return frame.join(imd, on="lsoa11", how="left")
