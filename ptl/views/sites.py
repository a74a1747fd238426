"""Site statistics: per provider and site, how long the list is, how long people wait, and
whether the queue is growing -- with the queue arithmetic of NHS-R `NHSRwaitinglist`.

Populations:
- wait measures (`ptl.views.waits`): every open RTT pathway at the site; P5/P6 included, as in
  NHS England's RTT statistics;
- queue arithmetic (the "capacity queue"): open RTT pathways not deferred by the patient
  (P5/P6 excluded: they are not waiting for capacity). Additions and removals are counted on the
  same population, so a pathway moving P4 → P5 leaves the capacity queue as a removal.

Flows from the census history (each provider's weekly censuses, `Snapshot.history`): between
consecutive censuses of a provider, an *addition* is a pathway key (`pathway_id_issuer`,
`pathway_id`) present in the later census and not the earlier (counted at its later site), a
*removal* one present in the earlier and not the later (counted at its earlier site). Weekly
rates = total additions (removals) over the history / weeks the history spans
((newest census − oldest census) / 7 days, per provider). A provider with one census has no
flows (null).

Queue arithmetic (Little's law; Fong et al. 2022, NHS-R NHSRwaitinglist), target T = 18 weeks:
- load = weekly additions / weekly removals (≥ 1: the list grows);
- expected wait for a new addition (weeks) = capacity queue / weekly removals;
- target queue size = weekly additions × T / 4 (mean wait T/4 keeps ~98% within T);
- relief capacity (per week) = weekly additions + (capacity queue − target queue size) / 26,
  the removals a week needed to reach the target queue in 26 weeks;
- waiting-list pressure = 2 × mean weeks waited / T (> 1: the target is being missed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from ptl import codes
from ptl.views.duplicates import open_rtt_expr
from ptl.views.filters import FILTER_COLUMNS, NO_FILTER, ViewFilter
from ptl.views.snapshot import Snapshot
from ptl.views.waits import wait_measures

#: The RTT standard the queue arithmetic aims at, in weeks.
TARGET_WEEKS: Final[float] = 18.0
#: NHS-R: a mean wait of target / 4 keeps about 98% of waits inside the target.
TARGET_FACTOR: Final[float] = 4.0
#: NHS-R: weeks over which relief capacity brings the queue to its target size.
WEEKS_TO_TARGET: Final[float] = 26.0

SITE_KEYS: Final[tuple[str, str]] = ("provider_code", "site_code")
_SYSTEM = "__system"

SITE_STATS_COLUMNS: Final[tuple[str, ...]] = (
    "open_pathways", "known_clock_start", "median_weeks", "p92_weeks", "mean_weeks",
    "within_18", "pct_within_18", "over_52", "pct_over_52", "over_65", "over_78", "over_104",
    "capacity_queue", "weekly_additions", "weekly_removals", "history_weeks", "load",
    "expected_wait_weeks", "target_queue_size", "relief_capacity", "pressure",
)


def capacity_expr(prefix: str = "") -> pl.Expr:
    """Open RTT pathways waiting for capacity (P5/P6 deferrals excluded)."""
    return open_rtt_expr(prefix) & ~pl.col(prefix + "clinical_priority").is_in(
        sorted(codes.DEFERRED_PRIORITIES)).fill_null(False)


#: What a filter or the capacity queue can look at, carried from the neighbouring censuses.
_TRANSITION_COLUMNS: Final[tuple[str, ...]] = (
    "site_code", "treatment_function_code", "procedure_code", "waiting_list_type",
    "clinical_priority", "is_rtt", "rtt_status",
)
_PATHWAY_KEY: Final[list[str]] = ["provider_code", "pathway_id_issuer", "pathway_id"]


def census_transitions(history: pl.DataFrame) -> pl.DataFrame:
    """Every history row with its provider's census sequence (`seq`, 1 = oldest; `last_seq`,
    `history_weeks`) and the same pathway's columns at the previous (`prev_…`) and next
    (`next_…`) census, null when it was not there. Built once per history frame, so each
    filter's additions and removals are a scan, not a join."""
    from ptl.views.snapshot import once_per_frame

    def build() -> pl.DataFrame:
        censuses = (
            history.select("provider_code", "census_date").unique()
            .with_columns(pl.col("census_date").rank("dense").over("provider_code").cast(pl.Int32)
                          .alias("seq"))
            .with_columns(
                pl.col("seq").max().over("provider_code").alias("last_seq"),
                ((pl.col("census_date").max() - pl.col("census_date").min()).dt.total_days() / 7)
                .over("provider_code").alias("history_weeks"),
            )
        )
        rows = history.select(*_PATHWAY_KEY, "census_date", *_TRANSITION_COLUMNS).join(
            censuses, on=["provider_code", "census_date"])

        def neighbour(shift: int, prefix: str) -> pl.DataFrame:
            return rows.select(*_PATHWAY_KEY, (pl.col("seq") + shift).alias("seq"),
                               pl.lit(True).alias(prefix + "present"),
                               *[pl.col(c).alias(prefix + c) for c in _TRANSITION_COLUMNS])

        return (rows.join(neighbour(1, "prev_"), on=[*_PATHWAY_KEY, "seq"], how="left")
                .join(neighbour(-1, "next_"), on=[*_PATHWAY_KEY, "seq"], how="left"))

    return once_per_frame(history, "census_transitions", build)


def weekly_flows(history: pl.DataFrame, filters: ViewFilter = NO_FILTER,
                 by: Sequence[str] = SITE_KEYS) -> pl.DataFrame:
    """Per group of `by` (which must include `provider_code`): additions, removals,
    the weeks of history they span, and the weekly rates. Columns: `by`…, `additions`,
    `removals`, `history_weeks`, `weekly_additions`, `weekly_removals`.

    A pathway is in the counted population at a census when it is on the capacity queue and
    meets the filter there; an addition is a census where it is in and was not at the
    previous census, a removal one where it is in and is not at the next."""
    group = list(by)
    if "provider_code" not in group:
        raise ValueError("weekly flows are measured per provider census: group by provider_code")
    # The rows meeting the filter at their own census.
    rows = filters.apply(census_transitions(history))

    def counted(prefix: str) -> pl.Expr:
        present = pl.col(prefix + "present").fill_null(False)
        return present & capacity_expr(prefix) & filters.expr(prefix=prefix)

    events = rows.filter(capacity_expr()).group_by(group).agg(
        ((pl.col("seq") > 1) & ~counted("prev_")).sum().cast(pl.Int64).alias("additions"),
        ((pl.col("seq") < pl.col("last_seq")) & ~counted("next_")).sum().cast(pl.Int64)
        .alias("removals"),
    )
    # Every group with an open pathway in some census gets a rate (0 when nothing moved), not
    # only those on the capacity queue.
    groups = rows.filter(open_rtt_expr()).group_by(group).agg(
        pl.col("history_weeks").first())
    return (
        groups.join(events, on=group, how="left", nulls_equal=True)
        .with_columns(pl.col("additions", "removals").fill_null(0))
        .with_columns(
            pl.when(pl.col("history_weeks") > 0).then(pl.col("additions") / pl.col("history_weeks"))
            .alias("weekly_additions"),
            pl.when(pl.col("history_weeks") > 0).then(pl.col("removals") / pl.col("history_weeks"))
            .alias("weekly_removals"),
        )
        .select(*group, "additions", "removals", "history_weeks", "weekly_additions",
                "weekly_removals")
    )


def queue_arithmetic(frame: pl.DataFrame) -> pl.DataFrame:
    """Add load, expected wait, target queue size, relief capacity and pressure to a frame with
    `capacity_queue`, `weekly_additions`, `weekly_removals`, `mean_weeks` (formulas: module)."""
    demand = pl.col("weekly_additions")
    capacity = pl.col("weekly_removals")
    queue = pl.col("capacity_queue")
    target_queue = demand * TARGET_WEEKS / TARGET_FACTOR
    return frame.with_columns(
        pl.when(capacity > 0).then(demand / capacity).alias("load"),
        pl.when(capacity > 0).then(queue / capacity).alias("expected_wait_weeks"),
        target_queue.alias("target_queue_size"),
        (demand + (queue - target_queue) / WEEKS_TO_TARGET).alias("relief_capacity"),
        (2 * pl.col("mean_weeks") / TARGET_WEEKS).alias("pressure"),
    )


def site_stats(snapshot: Snapshot, filters: ViewFilter = NO_FILTER,
               by: Sequence[str] = SITE_KEYS) -> pl.DataFrame:
    """Per provider and site (or per `by`: `("provider_code",)` per provider, `()` the whole
    system in one row): columns `by`… then `SITE_STATS_COLUMNS` (meanings and formulas: the
    module docstring and `ptl.views.waits.wait_measures`). Groups with an open pathway only."""
    keys = list(by)
    if not set(keys) <= set(SITE_KEYS):
        raise ValueError("site statistics are grouped by provider_code and/or site_code")
    # The whole system is one group: a constant key keeps a single code path.
    group = keys or [_SYSTEM]
    # Only the columns the measures and the filter read go through the filter.
    open_rows = (
        snapshot.current.select(*FILTER_COLUMNS, "days_waited", "week_band", "is_rtt", "rtt_status")
        .filter(open_rtt_expr() & filters.expr())
        .with_columns(pl.lit("system").alias(_SYSTEM))
    )
    measures = wait_measures(open_rows, group)
    capacity_queue = (open_rows.filter(capacity_expr()).group_by(group)
                      .agg(pl.len().cast(pl.Int64).alias("capacity_queue")))
    # Rates are measured per provider census, then summed up to the requested grouping.
    fine = ["provider_code", *[k for k in keys if k != "provider_code"]]
    flows = (
        weekly_flows(snapshot.history, filters, fine)
        .with_columns(pl.lit("system").alias(_SYSTEM))
        .group_by(group)
        .agg(
            *[pl.when(pl.col(c).is_not_null().any()).then(pl.col(c).sum()).alias(c)
              for c in ("weekly_additions", "weekly_removals")],
            pl.col("history_weeks").max(),
        )
    )
    joined = (
        measures.join(capacity_queue, on=group, how="left", nulls_equal=True)
        .join(flows, on=group, how="left", nulls_equal=True)
        .with_columns(pl.col("capacity_queue").fill_null(0))
    )
    return queue_arithmetic(joined).select(*keys, *SITE_STATS_COLUMNS).sort(keys or SITE_STATS_COLUMNS[0],
                                                                           nulls_last=True)


