"""Wait statistics by group, computed the way NHS England publishes them.

Owns the grouped wait measures every aggregate view shares: open pathways, median and
92nd-percentile weeks waited, mean weeks, % within 18 weeks and counts over 52/65/78/104 weeks.

Percentiles (NHS England's method for its published RTT medians and 92nd percentiles): waits are
counted in completed-week bands (band k holds waits of k to k+1 weeks; band 0 is 0–1 weeks,
`ptl.rtt.week_band`), and waits are taken as spread evenly inside a band. With N pathways of
known clock start, the p-th percentile lies in the first band b whose cumulative count reaches
p·N, at

    percentile = b + (p·N − F) / f   weeks

where F is the count in the bands below b and f the count in band b. Pathways with an unknown
clock start are left out of every wait measure (they count in `open_pathways` only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from ptl import rtt

#: Percentiles published by NHS England (the standard is about the 92nd).
MEDIAN: Final[float] = 0.5
P92: Final[float] = 0.92

_GROUP = "__group"


def _keys(by: Sequence[str]) -> list[str]:
    return list(by) if by else [_GROUP]


def band_counts(frame: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Per group and week band (null band: unknown clock start): pathways `f` and the sum of
    their days waited. Every wait measure is computed from this one small table."""
    keys = _keys(by)
    source = frame if by else frame.with_columns(pl.lit(0).alias(_GROUP))
    return source.group_by([*keys, "week_band"]).agg(
        pl.len().cast(pl.Int64).alias("f"),
        pl.col("days_waited").cast(pl.Int64).sum().alias("days"),
    )


def _percentile(bands: pl.DataFrame, keys: list[str], quantile: float, name: str) -> pl.DataFrame:
    known = (
        bands.filter(pl.col("week_band").is_not_null())
        .sort([*keys, "week_band"])
        .with_columns(
            pl.col("f").cum_sum().over(keys).alias("cumulative"),
            (pl.col("f").sum().over(keys) * quantile).alias("target"),
        )
    )
    return (
        known.filter(pl.col("cumulative") >= pl.col("target"))
        .group_by(keys, maintain_order=True)
        .first()
        .select(
            *keys,
            (pl.col("week_band") + (pl.col("target") - (pl.col("cumulative") - pl.col("f")))
             / pl.col("f")).alias(name),
        )
    )


def interpolated_weeks(frame: pl.DataFrame, by: Sequence[str], quantile: float,
                       name: str) -> pl.DataFrame:
    """Per group of `by` (one group when empty): the interpolated `quantile` of weeks waited,
    from the `week_band` column, as column `name` (no row for a group with no known wait)."""
    keys = _keys(by)
    found = _percentile(band_counts(frame, by), keys, quantile, name)
    return found if by else found.drop(_GROUP)


def wait_measures(frame: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Per group of `by` (open pathways): counts and wait measures.

    Columns: `by`…, `open_pathways`, `known_clock_start`, `median_weeks`, `p92_weeks`,
    `mean_weeks` (mean of days waited / 7), `within_18` (count, days ≤ 126),
    `pct_within_18` (100 × within_18 / known_clock_start), `over_52`, `over_65`, `over_78`,
    `over_104` (days ≥ 365, 456, 547, 729), `pct_over_52`.

    One pass over the pathways (a count per group and week band); the thresholds are read off
    the bands because they fall on band edges: days ≤ 126 ⇔ band ≤ 17 and days ≥ 365, 456,
    547, 729 ⇔ band ≥ 52, 65, 78, 104 (`ptl.rtt.week_band`; the store derives both columns
    together).
    """
    return measures_from_bands(band_counts(frame, by), by)


def measures_from_bands(bands: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """`wait_measures` from a `band_counts` table (columns `by`…, `week_band`, `f`, `days`;
    a constant group column when `by` is empty), e.g. one re-grouped from finer bands."""
    keys = _keys(by)
    band = pl.col("week_band")
    known_f = pl.when(band.is_not_null()).then(pl.col("f")).otherwise(0)
    counts = bands.group_by(keys).agg(
        pl.col("f").sum().alias("open_pathways"),
        known_f.sum().alias("known_clock_start"),
        (pl.col("days").sum() / known_f.sum() / 7).alias("mean_weeks"),
        pl.when(band <= rtt.week_band(rtt.WITHIN_18_WEEKS_DAYS)).then(pl.col("f")).otherwise(0)
        .sum().alias("within_18"),
        *[pl.when(band >= weeks).then(pl.col("f")).otherwise(0).sum().alias(f"over_{weeks}")
          for weeks in rtt.OVER_WEEKS_DAYS],
    )
    known = pl.col("known_clock_start")
    result = (
        counts.join(_percentile(bands, keys, MEDIAN, "median_weeks"), on=keys, how="left",
                    nulls_equal=True)
        .join(_percentile(bands, keys, P92, "p92_weeks"), on=keys, how="left", nulls_equal=True)
        .with_columns(
            pl.col("open_pathways", "known_clock_start", "within_18",
                   *[f"over_{w}" for w in rtt.OVER_WEEKS_DAYS]).cast(pl.Int64),
            pl.when(known > 0).then(pl.col("mean_weeks")).alias("mean_weeks"),
            pl.when(known > 0).then(100 * pl.col("within_18") / known).alias("pct_within_18"),
            pl.when(known > 0).then(100 * pl.col("over_52") / known).alias("pct_over_52"),
        )
        .select(*keys, "open_pathways", "known_clock_start", "median_weeks", "p92_weeks",
                "mean_weeks", "within_18", "pct_within_18", "over_52", "pct_over_52",
                "over_65", "over_78", "over_104")
        .sort(keys, nulls_last=True)
    )
    return result if by else result.drop(_GROUP)
