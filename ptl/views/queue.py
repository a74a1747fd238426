"""The shared queue: every open RTT pathway across providers, one row per need, in clinical order.

Order: clinical priority (P1a, P1b, P2, P3, P4, then no P-code, then the patient-deferred
P5/P6, marked `deferred`), then longest wait first (unknown clock starts last within their
band), then pathway `id`. That triple (`priority_rank`, `days_waited`, `id`) is the keyset
cursor; `queue_page` answers "the next N after this cursor" by binary search over the sorted
columns, so paging never scans the list.

One row per need: when a need is on two lists (a duplicate group, `ptl.views.duplicates`), the
pathway with the earliest clock start is kept and carries `also_at`, the other providers.
A provider filter matches a need held at that provider under either pathway (so a trust sees
its own patients even when another provider's pathway is the one kept); every other filter
applies to the kept pathway.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from ptl import codes, rtt
from ptl.views.duplicates import duplicate_pathways, open_rtt_expr
from ptl.views.filters import FILTER_COLUMNS, NO_FILTER, ViewFilter
from ptl.views.order import sort_integers
from ptl.views.snapshot import once_per_frame

#: Output columns, in order.
QUEUE_COLUMNS: Final[tuple[str, ...]] = (
    "position", "id", "person_id", "provider_code", "site_code", "treatment_function_code",
    "procedure_code", "clinical_priority", "priority_rank", "deferred", "waiting_list_type",
    "rtt_start_date", "census_date", "days_waited", "weeks_waited",
    "breach_18", "breach_52", "breach_65", "breach_78", "breach_104",
    "tci_date", "imd_quintile", "ethnic_group", "age_band", "last_validated_date", "also_at",
)

#: The keyset cursor: the sort key of the last row a client has seen.
Cursor = tuple[int, int | None, int]


def open_needs(current: pl.DataFrame) -> pl.DataFrame:
    """Open RTT pathways with collapsed duplicates removed and `also_at` on the kept rows
    (computed once per `current` frame)."""
    return once_per_frame(current, "open_needs", lambda: _open_needs(current))


def _open_needs(current: pl.DataFrame) -> pl.DataFrame:
    open_rtt = current.filter(open_rtt_expr())
    members = duplicate_pathways(current).join(
        open_rtt.select("id", "provider_code"), on="id", how="inner"
    )
    held_at = members.group_by("duplicate_group").agg(pl.col("provider_code").alias("group_providers"))
    kept = (
        members.filter(pl.col("keep"))
        .join(held_at, on="duplicate_group")
        .select(
            "id",
            pl.col("group_providers").list.set_difference(pl.concat_list(pl.col("provider_code")))
            .list.unique().list.sort().alias("also_at"),
        )
    )
    dropped = members.filter(~pl.col("keep")).get_column("id")
    needs = open_rtt.filter(~pl.col("id").is_in(dropped.implode()))
    # `also_at` by joining the id column alone (not every column of a million rows).
    also_at = (needs.select("id").join(kept, on="id", how="left", maintain_order="left")
               .get_column("also_at").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    return needs.with_columns(also_at)


def shared_queue(current: pl.DataFrame, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    """The shared queue for `filters`: columns `QUEUE_COLUMNS`, sorted, `position` 1-based.

    `breach_N` is True when the wait is over N weeks (`days_waited` ≥ 365/456/547/729 for
    52/65/78/104; `breach_18`: more than 126 days, i.e. outside the 18-week standard); null
    when the clock start is unknown. `weeks_waited` is the NHS England week band.
    """
    whole = once_per_frame(current, "shared_queue", lambda: _whole_queue(current))
    if not filters.as_dict():
        return whole
    # Every column a filter reads is a queue column, and the sort key ends in the unique id:
    # filtering the sorted whole queue gives the same rows in the same order as sorting the
    # filtered needs, for the cost of a scan.
    rows = filters.apply(whole, provider=False)
    if filters.provider_code is not None:
        rows = rows.filter(provider_rows(filters.provider_code))
    return rows.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("position"))


def provider_rows(provider_code: str) -> pl.Expr:
    """Queue rows of needs held at the provider: the kept pathway's, or one it also holds."""
    return (pl.col("provider_code") == provider_code) | pl.col("also_at").list.contains(provider_code)


def _whole_queue(current: pl.DataFrame) -> pl.DataFrame:
    """The unfiltered shared queue (see `shared_queue`)."""
    needs = open_needs(current)
    # Only the columns the queue shows go through the sort.
    carried = [c for c in needs.columns if c in QUEUE_COLUMNS or c in FILTER_COLUMNS or c == "week_band"]
    needs = needs.select(carried)
    days = pl.col("days_waited")
    return (
        sort_integers(needs, ["priority_rank", "days_waited", "id"], [False, True, False], nulls_last=True)
        .with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("position"),
            pl.col("clinical_priority").is_in(sorted(codes.DEFERRED_PRIORITIES)).fill_null(False)
            .alias("deferred"),
            pl.col("week_band").alias("weeks_waited"),
            (~rtt.within_18_weeks_expr(days)).alias("breach_18"),
            *[rtt.over_weeks_expr(days, weeks).alias(f"breach_{weeks}") for weeks in rtt.OVER_WEEKS_DAYS],
        )
        .select(QUEUE_COLUMNS)
    )


def cursor_of(row: dict[str, object]) -> Cursor:
    """The keyset cursor of a queue row (as returned by `queue.row(i, named=True)`)."""
    days = row["days_waited"]
    return (int(row["priority_rank"]), None if days is None else int(days), int(row["id"]))  # type: ignore[call-overload]


def position_after(queue: pl.DataFrame, cursor: Cursor | None) -> int:
    """How many rows of the sorted `queue` come at or before `cursor` (0 for no cursor): the
    offset of the next page. Binary search on each key in turn, O(log n)."""
    if cursor is None or queue.height == 0:
        return 0
    rank, days, row_id = cursor
    ranks = queue["priority_rank"].to_numpy()
    lo, hi = int(np.searchsorted(ranks, rank, "left")), int(np.searchsorted(ranks, rank, "right"))
    if lo == hi:
        return lo
    # Within the band, days descend with unknown (null) last: search the negated days, null → +inf.
    negated = (-queue["days_waited"][lo:hi].cast(pl.Float64)).fill_null(np.inf).to_numpy()
    key = np.inf if days is None else -float(days)
    d_lo = lo + int(np.searchsorted(negated, key, "left"))
    d_hi = lo + int(np.searchsorted(negated, key, "right"))
    if d_lo == d_hi:
        return d_lo
    ids = queue["id"][d_lo:d_hi].to_numpy()
    return d_lo + int(np.searchsorted(ids, row_id, "right"))


def queue_page(queue: pl.DataFrame, after: Cursor | None = None, limit: int = 100) -> pl.DataFrame:
    """The next `limit` rows of a sorted shared queue after the keyset cursor `after`."""
    return queue.slice(position_after(queue, after), limit)
