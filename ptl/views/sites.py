"""Site statistics: per provider and site, how long the list is, how long people wait, and
whether the queue is growing -- with the queue arithmetic of NHS-R `NHSRwaitinglist`.

Populations:
- wait measures (`ptl.views.waits`): every open RTT *need* at the site; P5/P6 included, as in
  NHS England's RTT statistics. A need on two providers' lists (a duplicate group,
  `ptl.views.duplicates`) counts once, in the row of its kept pathway's provider and site (the
  earliest clock start, the row the shared queue shows), so the rows add up to the system row
  and the system row's open pathways equal the shared queue's length for every filter;
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

Declared capacity (`with_declared_capacity`; declarations and which one is in force:
`ptl.declared_capacity`), beside the history-based estimate, never replacing it:
- declared weekly capacity = the clock stops a week declared for the row's scope, in force at
  the provider's current census date (null when none matches, below);
- declared load = weekly additions / declared weekly capacity;
- declared expected wait (weeks) = capacity queue / declared weekly capacity.

Which declarations a row uses. A row's scope is its provider (or the whole system), its site
when grouped by site (or the `site` filter), and the `treatment_function` filter (none = every
specialty). Treatment function is matched exactly, never added up or split: a row filtered to
110 uses declarations made for 110, an unfiltered row only declarations made for every
specialty. Then:
- site row: the declaration for exactly that provider and site (a row without a site code has
  none; a provider-wide declaration is never split between sites);
- provider row: the provider-wide declaration when there is one and no `site` filter narrows
  the row; otherwise the sum of its sites' declarations, when every site of the provider with an
  open pathway in the row has one (a partial sum would understate capacity: null instead);
- system row: the sum of the provider values, when every provider in the row has one.
A `priority`, `waiting_list_type` or `procedure` filter leaves the declared figures null: a
declaration covers every patient in its scope, and comparing it with a slice of the queue would
overstate the headroom.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Final

import polars as pl

from ptl import codes
from ptl.declared_capacity import in_force
from ptl.views.duplicates import open_rtt_expr
from ptl.views.filters import FILTER_COLUMNS, NO_FILTER, ViewFilter
from ptl.views.queue import open_needs, provider_rows
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
#: What `with_declared_capacity` adds to the site statistics.
DECLARED_COLUMNS: Final[tuple[str, ...]] = (
    "declared_weekly_capacity", "declared_load", "declared_expected_wait_weeks",
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
    """The open RTT rows of the history, each with its provider's census sequence (`seq`,
    1 = oldest; `last_seq`, `history_weeks`), whether it is on the capacity queue there
    (`capacity`), and the same pathway's filter columns at the previous (`prev_…`) and next
    (`next_…`) census with `prev_capacity` / `next_capacity`: there and on the capacity queue
    (False when it was not there). Built once per history frame, so each filter's additions
    and removals are a scan, not a join.

    Neighbours are found by sorting on a 64-bit hash of the pathway key and census and
    comparing each row with the rows beside it (exact: the keys themselves are compared). If
    two keys share a hash, or a key appears twice in one census, the exact join is used."""
    from ptl.views.snapshot import once_per_frame

    return once_per_frame(history, "census_transitions", lambda: _transitions_by_provider(history))


#: Each provider's census transitions from the last history seen, keyed by a fingerprint of
#: everything they are computed from (see `_transitions_by_provider`).
_provider_transitions: dict[tuple[object, ...], pl.DataFrame] = {}
_provider_transitions_lock = threading.Lock()


def _transitions_by_provider(history: pl.DataFrame) -> pl.DataFrame:
    """`census_transitions`, reusing each provider's rows from the previous history when its
    input is unchanged. A provider's transitions depend only on its own rows (the pathway key
    includes the provider; census sequence and history weeks are per provider), so after one
    provider's weekly load only that provider is recomputed. The fingerprint of a snapshot's
    history comes from the reader (the provider's feeds, moves and identity-link run: see
    `read_snapshot`); of any other frame, from its content (`_content_fingerprints`): any
    changed, added or dropped row gives a new fingerprint."""
    from ptl.views.snapshot import once_per_frame

    described: dict[str, tuple[object, ...]] = once_per_frame(
        history, "provider_fingerprints", lambda: _content_fingerprints(history))
    # Row counts too (a cheap check that the rows are the ones described).
    counts = dict(history.group_by("provider_code").len().iter_rows())
    keys = {provider: (*key, counts.get(provider, 0)) for provider, key in described.items()}
    with _provider_transitions_lock:
        known = dict(_provider_transitions)
    parts = {provider: known[key] for provider, key in keys.items() if key in known}
    missing = [provider for provider in keys if provider not in parts]
    if missing:
        built = _build_transitions(history.filter(pl.col("provider_code").is_in(missing)))
        by_provider = built.partition_by("provider_code", as_dict=True)
        for provider in missing:
            parts[provider] = by_provider.get((provider,), built.clear())
    with _provider_transitions_lock:
        _provider_transitions.clear()
        _provider_transitions.update({keys[provider]: part for provider, part in parts.items()})
    if not parts:
        return _build_transitions(history)
    return pl.concat([parts[provider] for provider in sorted(parts, key=str)], how="vertical")


def _content_fingerprints(history: pl.DataFrame) -> dict[str, tuple[object, ...]]:
    """Per provider: its feed ids, row count and a 64-bit sum of row hashes over every column
    the transitions read (for a history frame the snapshot reader has not described)."""
    inputs = [*_PATHWAY_KEY, "census_date", *_TRANSITION_COLUMNS]
    feeds = pl.col("feed_id") if "feed_id" in history.columns else pl.lit(None, pl.Int64)
    fingerprints = history.group_by("provider_code").agg(
        feeds.unique().sort().alias("feeds"), pl.len().alias("rows"),
        pl.struct(inputs).hash().sum().alias("content"))
    return {row["provider_code"]: ("content", row["provider_code"], tuple(row["feeds"]), row["rows"],
                                   row["content"]) for row in fingerprints.iter_rows(named=True)}


def _build_transitions(history: pl.DataFrame) -> pl.DataFrame:
    """`census_transitions` computed from the rows of `history` (any providers)."""
    provider = "provider_code"
    rows = (
        history.select(*_PATHWAY_KEY, "census_date", *_TRANSITION_COLUMNS)
        .with_columns(
            pl.col("census_date").rank("dense").over(provider).cast(pl.Int32).alias("seq"),
            ((pl.col("census_date").max() - pl.col("census_date").min()).dt.total_days() / 7)
            .over(provider).alias("history_weeks"),
            pl.struct(_PATHWAY_KEY).hash().alias("__key"),
            capacity_expr().alias("capacity"),
            open_rtt_expr().alias("__open"),
        )
        .with_columns(pl.col("seq").max().over(provider).alias("last_seq"))
        # Only what the flows read goes through the sort.
        .select(*_PATHWAY_KEY, *_FILTERED_NEIGHBOUR, "seq", "last_seq", "history_weeks",
                "capacity", "__open", "__key")
        .sort("__key", "seq")
    )
    key_known = pl.all_horizontal([pl.col(c).is_not_null() for c in _PATHWAY_KEY])
    clash = rows.select(
        ((pl.col("__key") == pl.col("__key").shift(1))
         & (pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in _PATHWAY_KEY])
            | (pl.col("seq") == pl.col("seq").shift(1)))).any()
    ).item()
    if clash:
        return _transitions_by_join(
            history.select(*_PATHWAY_KEY, "census_date", *_TRANSITION_COLUMNS).with_columns(
                pl.col("census_date").rank("dense").over(provider).cast(pl.Int32).alias("seq"),
                ((pl.col("census_date").max() - pl.col("census_date").min()).dt.total_days()
                 / 7).over(provider).alias("history_weeks"),
            ).with_columns(pl.col("seq").max().over(provider).alias("last_seq")))

    def neighbour(shift: int, prefix: str) -> list[pl.Expr]:
        # The row beside this one in (key, census) order is the same pathway one census away.
        there = ((pl.col("__key").shift(shift) == pl.col("__key"))
                 & (pl.col("seq").shift(shift) == pl.col("seq") - shift)
                 & key_known).fill_null(False)
        return [(there & pl.col("capacity").shift(shift)).fill_null(False).alias(prefix + "capacity"),
                *[pl.when(there).then(pl.col(c).shift(shift)).alias(prefix + c)
                  for c in _FILTERED_NEIGHBOUR]]

    return (rows.with_columns(*neighbour(1, "prev_"), *neighbour(-1, "next_"))
            .filter(pl.col("__open"))
            .select(_TRANSITIONS_OUT))


def _transitions_by_join(rows: pl.DataFrame) -> pl.DataFrame:
    """`census_transitions` by joining each row to its neighbours on the pathway key (exact
    for any input; slower)."""
    def neighbour(shift: int, prefix: str) -> pl.DataFrame:
        return rows.select(*_PATHWAY_KEY, (pl.col("seq") + shift).alias("seq"),
                           pl.lit(True).alias(prefix + "present"),
                           *[pl.col(c).alias(prefix + c) for c in _TRANSITION_COLUMNS])

    joined = (rows.join(neighbour(1, "prev_"), on=[*_PATHWAY_KEY, "seq"], how="left")
              .join(neighbour(-1, "next_"), on=[*_PATHWAY_KEY, "seq"], how="left"))
    return _finish(joined.with_columns(pl.col("prev_present", "next_present").fill_null(False)))


#: Neighbour columns a filter can read (the rest are folded into `prev_/next_capacity`).
_FILTERED_NEIGHBOUR: Final[tuple[str, ...]] = (
    "site_code", "treatment_function_code", "procedure_code", "waiting_list_type",
    "clinical_priority",
)


_TRANSITIONS_OUT: Final[list[str]] = [
    *_PATHWAY_KEY, *_FILTERED_NEIGHBOUR, "seq", "last_seq", "history_weeks",
    "capacity", *[p + c for p in ("prev_", "next_") for c in (*_FILTERED_NEIGHBOUR, "capacity")],
]


def _finish(rows: pl.DataFrame) -> pl.DataFrame:
    """Capacity flags, then only the open RTT rows (the only ones any flow counts)."""
    return rows.with_columns(
        capacity_expr().alias("capacity"),
        *[(pl.col(p + "present") & capacity_expr(p)).fill_null(False).alias(p + "capacity")
          for p in ("prev_", "next_")],
    ).filter(open_rtt_expr()).select(_TRANSITIONS_OUT)


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
    from ptl.views.snapshot import once_per_frame

    return once_per_frame(history, f"weekly_flows:{filters!r}:{group!r}",
                          lambda: _weekly_flows(history, filters, group))


def _weekly_flows(history: pl.DataFrame, filters: ViewFilter, group: list[str]) -> pl.DataFrame:
    def counted(prefix: str) -> pl.Expr:
        return pl.col(prefix + "capacity") & filters.expr(prefix=prefix)

    # Every group with an open pathway meeting the filter in some census gets a rate (0 when
    # nothing moved), not only those on the capacity queue.
    return (
        census_transitions(history).lazy()
        .filter(filters.expr())
        .group_by(group)
        .agg(
            pl.col("history_weeks").first(),
            (pl.col("capacity") & (pl.col("seq") > 1) & ~counted("prev_")).sum().cast(pl.Int64)
            .alias("additions"),
            (pl.col("capacity") & (pl.col("seq") < pl.col("last_seq")) & ~counted("next_")).sum()
            .cast(pl.Int64).alias("removals"),
        )
        .with_columns(
            pl.when(pl.col("history_weeks") > 0).then(pl.col("additions") / pl.col("history_weeks"))
            .alias("weekly_additions"),
            pl.when(pl.col("history_weeks") > 0).then(pl.col("removals") / pl.col("history_weeks"))
            .alias("weekly_removals"),
        )
        .select(*group, "additions", "removals", "history_weeks", "weekly_additions",
                "weekly_removals")
        .collect()
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


def _open_rows(current: pl.DataFrame) -> pl.DataFrame:
    """The open RTT needs (one row per need: a duplicate group counts once, at its kept
    pathway, as in the shared queue), narrowed to what the measures and a filter read (once
    per frame: every site statistic and equalisation filters these)."""
    from ptl.views.snapshot import once_per_frame

    return once_per_frame(current, "site_open_rows", lambda: open_needs(current).select(
        *FILTER_COLUMNS, "days_waited", "week_band", "is_rtt", "rtt_status", "also_at",
    ))


def counted_needs(current: pl.DataFrame, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    """The needs a site statistic counts under `filters`: exactly the shared queue's rows
    (`ptl.views.queue.shared_queue`), so the system row's open pathways equal the queue's
    length for every filter. A provider filter takes the needs held at that provider under
    either pathway; each need stays in the row of its kept pathway's provider and site."""
    rows = filters.apply(_open_rows(current), provider=False)
    if filters.provider_code is not None:
        rows = rows.filter(provider_rows(filters.provider_code))
    return rows


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
    open_rows = counted_needs(snapshot.current, filters).with_columns(pl.lit("system").alias(_SYSTEM))
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




def _provider_census(current: pl.DataFrame) -> pl.DataFrame:
    """Each provider's current census date (once per frame)."""
    from ptl.views.snapshot import once_per_frame

    return once_per_frame(current, "provider_census", lambda: current.group_by("provider_code").agg(
        pl.col("census_date").max()))


def _row_sites(current: pl.DataFrame, filters: ViewFilter) -> pl.DataFrame:
    """The (provider, site) pairs with an open pathway meeting the filter: the parts the rows
    of `site_stats` are made of (once per frame and filter)."""
    from ptl.views.snapshot import once_per_frame

    return once_per_frame(current, f"declared_row_sites:{filters!r}", lambda: (
        counted_needs(current, filters).select(*SITE_KEYS).unique()))


def _sum_if_all_known(column: str) -> pl.Expr:
    return pl.when(pl.col(column).is_null().any()).then(None).otherwise(pl.col(column).sum()).alias(column)


def declared_weekly_capacity(snapshot: Snapshot, declarations: pl.DataFrame, filters: ViewFilter = NO_FILTER,
                             by: Sequence[str] = SITE_KEYS) -> pl.DataFrame:
    """Per row of `site_stats(snapshot, filters, by)`: its keys and `declared_weekly_capacity`
    (null when no declaration matches the row's scope: rules in the module docstring). Rows
    with nothing declared may be left out (a left join gives them null).
    `declarations`: every stored declaration (`ptl.declared_capacity.DECLARATION_SCHEMA`)."""
    keys = list(by)
    if keys not in (list(SITE_KEYS), ["provider_code"], []):
        raise ValueError("declared capacity is matched per provider_code and site_code, per provider_code or "
                         "for the whole system")
    capacity = "declared_weekly_capacity"
    nothing = pl.DataFrame(schema={**{k: pl.String for k in keys}, capacity: pl.Int64})
    narrowed = any(v is not None for v in (filters.priority, filters.waiting_list_type, filters.procedure_code))
    tfc = filters.treatment_function_code
    candidates = declarations.filter(
        pl.col("treatment_function_code").is_null() if tfc is None else pl.col("treatment_function_code") == tfc)
    # Nothing declared for this scope (the usual case for most filters): no need to read the list.
    if narrowed or candidates.is_empty():
        return nothing
    current = snapshot.current
    scoped = in_force(candidates, _provider_census(current))
    if scoped.is_empty():
        return nothing
    site_values = _row_sites(current, filters).join(
        scoped.filter(pl.col("site_code").is_not_null()).select(*SITE_KEYS, pl.col("weekly_capacity").alias(capacity)),
        on=list(SITE_KEYS), how="left")
    if keys == list(SITE_KEYS):
        return site_values
    providers = site_values.group_by("provider_code").agg(_sum_if_all_known(capacity))
    if filters.site_code is None:
        whole = scoped.filter(pl.col("site_code").is_null()).select(
            "provider_code", pl.col("weekly_capacity").alias("__whole"))
        providers = providers.join(whole, on="provider_code", how="left").select(
            "provider_code", pl.coalesce("__whole", capacity).alias(capacity))
    if keys:
        return providers
    return providers.select(_sum_if_all_known(capacity)) if providers.height else nothing


def with_declared_capacity(stats: pl.DataFrame, snapshot: Snapshot, declarations: pl.DataFrame,
                           filters: ViewFilter = NO_FILTER, by: Sequence[str] = SITE_KEYS) -> pl.DataFrame:
    """`stats` (from `site_stats` with the same snapshot, filters and grouping) with
    `DECLARED_COLUMNS` added: formulas and matching rules in the module docstring."""
    keys = list(by)
    values = declared_weekly_capacity(snapshot, declarations, filters, by)
    capacity = pl.col("declared_weekly_capacity")
    if keys:
        joined = stats.join(values, on=keys, how="left", nulls_equal=True, maintain_order="left")
    else:
        joined = stats.with_columns(pl.lit(values.item() if values.height else None, pl.Int64)
                                    .alias("declared_weekly_capacity"))
    return joined.with_columns(
        pl.when(capacity > 0).then(pl.col("weekly_additions") / capacity).alias("declared_load"),
        pl.when(capacity > 0).then(pl.col("capacity_queue") / capacity).alias("declared_expected_wait_weeks"),
    )
