"""Equity: who waits longer, by deprivation, ethnicity, age, sex and learning disability.

Population: open RTT pathways of the current snapshot, one per need (duplicate pathways
collapsed as in the shared queue, so nobody counts twice). Per group: open pathways, share of
the list, median weeks (NHS England interpolation, `ptl.views.waits`), % within 18 weeks,
% over 52 weeks, and the rate ratio of over-52-week waits against a reference group.

Rate ratio (risk ratio of waiting over 52 weeks), group g vs reference r, among pathways of
known clock start: a = over-52 in g, n1 = known in g, c = over-52 in r, n0 = known in r:

    RR = (a / n1) / (c / n0)
    95% CI = exp(ln RR ± 1.96 × sqrt(1/a − 1/n1 + 1/c − 1/n0))      (log method, Katz)

RR and its interval are null when a or c is 0 (the log is undefined; no continuity correction
is applied) or a group has no known waits.

Reference groups (the group others are compared with):
- imd_quintile: 5, the least deprived fifth (the national headline compares quintile 1, the
  most deprived "Core20" fifth, with it);
- ethnic_category: A, White British; ethnic_group: White;
- age_band: 18-34 (youngest adult band, so older groups read as "times the young-adult rate");
- sex: 1 (male, the lowest code; any choice gives the same comparison inverted);
- learning_disability: False (no recorded learning disability).
Records with no value (and ethnic categories Z/99 "not stated/known") form the group
`Unknown`; they get a row and a count but no rate ratio, and their share is the data-quality
figure `share_unknown`.

Headline for a board pack: the over-52-week rate ratio of IMD quintile 1 vs quintile 5, for the
system and for each provider.

Small numbers: `suppress` nulls counts under the threshold (`Settings.suppress_below`, 5) and
every rate derived from them, and flags the row: apply it to anything that leaves the
identifiable tier.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

from ptl import rtt
from ptl.views.duplicates import open_rtt_expr
from ptl.views.filters import FILTER_COLUMNS, NO_FILTER, ViewFilter
from ptl.views.queue import open_needs
from ptl.views.waits import measures_from_bands

EquityDimension = Literal["imd_quintile", "ethnic_group", "ethnic_category", "age_band", "sex",
                          "learning_disability"]

#: The reference group of each dimension, as text (the `group` column is text).
REFERENCE_GROUPS: Final[dict[str, str]] = {
    "imd_quintile": "5",
    "ethnic_group": "White",
    "ethnic_category": "A",
    "age_band": "18-34",
    "sex": "1",
    "learning_disability": "false",
}
#: Values that mean "not known" for a dimension besides null.
UNKNOWN_VALUES: Final[dict[str, tuple[str, ...]]] = {
    "ethnic_group": ("Not stated/known",),
    "ethnic_category": ("Z", "99"),
    "sex": ("X", "9"),
}
UNKNOWN: Final[str] = "Unknown"
Z_95: Final[float] = 1.959963984540054

EQUITY_COLUMNS: Final[tuple[str, ...]] = (
    "group", "is_reference", "open_pathways", "share", "known_clock_start", "median_weeks",
    "within_18", "pct_within_18", "over_52", "pct_over_52", "rate_ratio", "rr_ci_low",
    "rr_ci_high",
)
HEADLINE_COLUMNS: Final[tuple[str, ...]] = (
    "scope", "over_52_most_deprived", "known_most_deprived", "over_52_least_deprived",
    "known_least_deprived", "rate_ratio", "rr_ci_low", "rr_ci_high",
)

#: Count columns and the rates computed from each, for `suppress`.
EQUITY_DERIVED: Final[dict[str, tuple[str, ...]]] = {
    "open_pathways": ("share",),
    "known_clock_start": ("median_weeks", "pct_within_18", "pct_over_52"),
    "within_18": ("pct_within_18",),
    "over_52": ("pct_over_52", "rate_ratio", "rr_ci_low", "rr_ci_high"),
}


@dataclass(frozen=True)
class EquityResult:
    """Per-group figures, the unknown share, the optional trend and the headline."""

    by: str
    reference: str
    groups: pl.DataFrame
    share_unknown: float | None
    trend: pl.DataFrame | None
    headline: pl.DataFrame


def group_expr(by: str) -> pl.Expr:
    """The dimension as text, with nulls and not-known codes folded into `Unknown`."""
    value = pl.col(by).cast(pl.String)
    if by == "learning_disability":
        value = value.str.to_lowercase()
    unknown = value.is_null()
    for code in UNKNOWN_VALUES.get(by, ()):
        unknown = unknown | (value == code)
    return pl.when(unknown).then(pl.lit(UNKNOWN)).otherwise(value).alias("group")


def rate_ratio_ci(a: int, n1: int, c: int, n0: int) -> tuple[float | None, float | None, float | None]:
    """(RR, low, high) by the log method for one comparison (the plain-arithmetic version of
    `rate_ratio_exprs`, for one-off use and tests)."""
    if min(a, n1, c, n0) <= 0:
        return None, None, None
    ratio = (a / n1) / (c / n0)
    se = math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n0)
    return ratio, math.exp(math.log(ratio) - Z_95 * se), math.exp(math.log(ratio) + Z_95 * se)


def rate_ratio_exprs(a: pl.Expr, n1: pl.Expr, c: pl.Expr, n0: pl.Expr) -> list[pl.Expr]:
    """`rate_ratio`, `rr_ci_low`, `rr_ci_high` over columns (log method; null when undefined)."""
    defined = (a > 0) & (n1 > 0) & (c > 0) & (n0 > 0)
    log_rr = ((a / n1) / (c / n0)).log()
    se = (1 / a - 1 / n1 + 1 / c - 1 / n0).sqrt()
    return [
        pl.when(defined).then(log_rr.exp()).alias("rate_ratio"),
        pl.when(defined).then((log_rr - Z_95 * se).exp()).alias("rr_ci_low"),
        pl.when(defined).then((log_rr + Z_95 * se).exp()).alias("rr_ci_high"),
    ]


def _with_rate_ratio(measures: pl.DataFrame, by_keys: list[str], reference: str) -> pl.DataFrame:
    """Add RR vs the reference group within each `by_keys` partition (e.g. per census)."""
    ref = (
        measures.filter(pl.col("group") == reference)
        .select(*by_keys, pl.col("over_52").alias("__c"), pl.col("known_clock_start").alias("__n0"))
    )
    joined = (measures.join(ref, on=by_keys, how="left") if by_keys
              else measures.join(ref, how="cross") if ref.height else
              measures.with_columns(pl.lit(None, pl.Int64).alias("__c"), pl.lit(None, pl.Int64).alias("__n0")))
    comparable = pl.col("group") != UNKNOWN
    return joined.with_columns(
        [pl.when(comparable).then(e).alias(e.meta.output_name()) for e in
         rate_ratio_exprs(pl.col("over_52"), pl.col("known_clock_start"), pl.col("__c"),
                          pl.col("__n0"))]
    ).drop("__c", "__n0")


def _population(current: pl.DataFrame, filters: ViewFilter) -> pl.DataFrame:
    """Open RTT pathways, one per need, meeting the filter."""
    from ptl.views.snapshot import once_per_frame

    def narrow() -> pl.DataFrame:
        needs = open_needs(current)
        # Narrow to what equity reads before filtering (a filter copies every column it keeps).
        read = [c for c in needs.columns if c in (*FILTER_COLUMNS, *REFERENCE_GROUPS,
                                                   "days_waited", "week_band", "imd_quintile")]
        return needs.select(read)

    # The narrowed needs once per frame (every dimension and the headline read them).
    return filters.apply(once_per_frame(current, "equity_population", narrow))


def group_table(frame: pl.DataFrame, by: str, partition: Sequence[str] = ()) -> pl.DataFrame:
    """Per group (and partition, e.g. census_date): `EQUITY_COLUMNS` over open pathways."""
    return _table_from_counts(_value_counts(frame, by, partition), by, partition)


def _value_counts(frame: pl.DataFrame, by: str, partition: Sequence[str] = ()) -> pl.DataFrame:
    """Per partition, raw value of `by` and week band: pathways `f` and their days waited."""
    return frame.group_by([*partition, by, "week_band"]).agg(
        pl.len().cast(pl.Int64).alias("f"), pl.col("days_waited").cast(pl.Int64).sum().alias("days"))


def _table_from_counts(counts: pl.DataFrame, by: str, partition: Sequence[str] = ()) -> pl.DataFrame:
    """`group_table` from `_value_counts` (or sums of them over disjoint sets of pathways)."""
    keys = [*partition, "group"]
    # Count per raw value and week band first (few groups), then fold values into `group`:
    # the text labels are built for a few hundred rows, not for every pathway.
    fine = (
        counts.with_columns(group_expr(by))
        .group_by([*keys, "week_band"])
        .agg(pl.col("f").sum(), pl.col("days").sum())
    )
    measures = measures_from_bands(fine, keys)
    total = pl.col("open_pathways").sum().over(list(partition)) if partition else pl.col("open_pathways").sum()
    measures = measures.with_columns(
        (pl.col("open_pathways") / total).alias("share"),
        (pl.col("group") == REFERENCE_GROUPS[by]).alias("is_reference"),
    )
    return _with_rate_ratio(measures, list(partition), REFERENCE_GROUPS[by]).select(
        *partition, *EQUITY_COLUMNS
    )


def headline(current: pl.DataFrame, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    """Over-52-week rate ratio, IMD quintile 1 (most deprived) vs 5 (least), for the system
    (`scope` = "system") and each provider (`scope` = its code). Columns `HEADLINE_COLUMNS`."""
    from ptl.views.snapshot import once_per_frame

    # The same for every dimension: computed once per `current` frame and filter.
    return once_per_frame(current, f"equity_headline:{filters!r}", lambda: _headline(current, filters))


def _headline(current: pl.DataFrame, filters: ViewFilter) -> pl.DataFrame:
    population = _population(current, filters).filter(pl.col("days_waited").is_not_null())
    over = rtt.over_weeks_expr(pl.col("days_waited"), 52)
    per_provider = population.group_by("provider_code").agg(
        (over & (pl.col("imd_quintile") == 1)).sum().cast(pl.Int64).alias("over_52_most_deprived"),
        (pl.col("imd_quintile") == 1).sum().cast(pl.Int64).alias("known_most_deprived"),
        (over & (pl.col("imd_quintile") == 5)).sum().cast(pl.Int64).alias("over_52_least_deprived"),
        (pl.col("imd_quintile") == 5).sum().cast(pl.Int64).alias("known_least_deprived"),
    ).rename({"provider_code": "scope"})
    # The system row is the providers' sum, and always there (zeros when nothing is known),
    # so a board pack never shows a missing headline.
    counts = [c for c in per_provider.columns if c != "scope"]
    system = pl.DataFrame({"scope": ["system"]}).with_columns(
        *[pl.lit(int(per_provider[c].sum()), pl.Int64).alias(c) for c in counts])
    per_scope = pl.concat([system, per_provider])
    return per_scope.with_columns(
        rate_ratio_exprs(pl.col("over_52_most_deprived"), pl.col("known_most_deprived"),
                         pl.col("over_52_least_deprived"), pl.col("known_least_deprived"))
    ).sort(pl.col("scope") != "system", "scope").select(HEADLINE_COLUMNS)


def equity(current: pl.DataFrame, by: EquityDimension | str, filters: ViewFilter = NO_FILTER,
           trend_history: pl.DataFrame | None = None) -> EquityResult:
    """Equity figures by one dimension (see the module docstring for every formula).

    `groups`: `EQUITY_COLUMNS`, one row per group (reference flagged, `Unknown` last).
    `trend` (when `trend_history` is given, e.g. `Snapshot.history`): `census_date` then
    `EQUITY_COLUMNS` per census; history pathways are counted per pathway (duplicate groups
    are only known for the current census).
    `headline`: `headline(current, filters)`.
    """
    if by not in REFERENCE_GROUPS:
        raise ValueError(f"cannot break the list down by '{by}'; use one of "
                         + ", ".join(REFERENCE_GROUPS))
    population = _population(current, filters)
    groups = group_table(population, by).sort(pl.col("group") == UNKNOWN, "group")
    unknown = int(groups.filter(pl.col("group") == UNKNOWN)["open_pathways"].sum())
    total = int(groups["open_pathways"].sum())
    trend = None
    if trend_history is not None:
        trend = _table_from_counts(_trend_counts(trend_history, by, filters), by, ("census_date",)).sort(
            "census_date", pl.col("group") == UNKNOWN, "group")
    return EquityResult(
        by=by,
        reference=REFERENCE_GROUPS[by],
        groups=groups,
        share_unknown=(unknown / total) if total else None,
        trend=trend,
        headline=headline(current, filters),
    )


def _trend_rows(history: pl.DataFrame, filters: ViewFilter) -> pl.DataFrame:
    """Open RTT history rows meeting the filter, with every dimension's column (the open rows
    once per history frame: each dimension's trend reads them)."""
    from ptl.views.snapshot import once_per_frame

    def build() -> pl.DataFrame:
        columns = [c for c in (*FILTER_COLUMNS, "census_date", *REFERENCE_GROUPS, "days_waited",
                               "week_band", "is_rtt", "rtt_status") if c in history.columns]
        return history.select(columns).filter(open_rtt_expr())

    return filters.apply(once_per_frame(history, "equity_trend_rows", build))


def prepare_trends(history: pl.DataFrame) -> None:
    """Count the unfiltered trends of every dimension (for `ptl.views.snapshot.prepare`)."""
    _trend_counts(history, next(iter(REFERENCE_GROUPS)), NO_FILTER)


#: Each provider's trend counts from the histories seen, keyed by what its rows are made of
#: (see `_trend_counts`), the filter and the dimension.
_provider_trends: dict[tuple[object, ...], pl.DataFrame] = {}
_provider_trends_lock = threading.Lock()
#: How many filters' counts `_provider_trends` keeps besides the unfiltered ones.
_TREND_FILTERS_KEPT: Final[int] = 8


def _trend_counts(history: pl.DataFrame, by: str, filters: ViewFilter) -> pl.DataFrame:
    """`_value_counts` of the open RTT history rows meeting the filter, per census.

    History pathways are counted per pathway, so a provider's counts depend on its own rows
    alone. When the snapshot reader described the frame (each provider's feeds, moves and
    identity-link run: `read_snapshot`), each provider's counts are reused from the previous
    history while that description and its row count are unchanged: after one provider's
    weekly load only that provider is counted again (sums of counts over disjoint sets of
    pathways are exact). Other frames are counted whole."""
    from ptl.views.snapshot import once_per_frame

    described: dict[str, tuple[object, ...]] | None = once_per_frame(
        history, "provider_sources", lambda: None)
    if described is None:
        return _value_counts(_trend_rows(history, filters), by, ("census_date",))
    rows = once_per_frame(history, "provider_rows",
                          lambda: dict(history.group_by("provider_code").len().iter_rows()))
    if set(rows) - set(described):
        return _value_counts(_trend_rows(history, filters), by, ("census_date",))
    keys: dict[str, tuple[object, ...]] = {
        provider: (described[provider], rows.get(provider, 0), filters) for provider in described}
    # Once per frame and filter, every dimension: concurrent callers share one count.
    parts = once_per_frame(history, f"equity_trend_parts:{filters!r}",
                           lambda: _provider_trend_parts(history, filters, keys))
    if not parts:
        return _value_counts(_trend_rows(history, filters), by, ("census_date",))
    return pl.concat([parts[(*keys[provider], by)] for provider in sorted(keys, key=str)],
                     how="vertical")


def _provider_trend_parts(history: pl.DataFrame, filters: ViewFilter,
                          keys: dict[str, tuple[object, ...]]) -> dict[tuple[object, ...], pl.DataFrame]:
    """Every dimension's counts per provider (keyed `(*keys[provider], dimension)`): kept ones
    reused, the others counted from the provider's rows of `history` and kept."""
    wanted = {provider: [(*key, dimension) for dimension in REFERENCE_GROUPS] for provider, key in keys.items()}
    with _provider_trends_lock:
        known = {k: _provider_trends[k] for ks in wanted.values() for k in ks if k in _provider_trends}
    missing = [provider for provider, ks in wanted.items() if any(k not in known for k in ks)]
    found: dict[tuple[object, ...], pl.DataFrame] = {}
    if missing:
        selected = [c for c in (*FILTER_COLUMNS, "census_date", *REFERENCE_GROUPS, "days_waited",
                                "week_band", "is_rtt", "rtt_status") if c in history.columns]
        fresh = filters.apply(history.filter(pl.col("provider_code").is_in(missing))
                              .select(selected).filter(open_rtt_expr()))
        for dimension in REFERENCE_GROUPS:
            counted = _value_counts(fresh, dimension, ("provider_code", "census_date"))
            split = counted.partition_by("provider_code", as_dict=True, include_key=False)
            for provider in missing:
                found[(*keys[provider], dimension)] = split.get((provider,), counted.drop("provider_code").clear())
        # Forget providers' rows no longer in the history (kept: every filter's counts of these).
        live = {key[:2] for key in keys.values()}
        with _provider_trends_lock:
            for key in [k for k in _provider_trends if k[:2] not in live]:
                del _provider_trends[key]
            _provider_trends.update(found)
            # Bounded: the unfiltered counts and those of the filters used most recently.
            recent = list(dict.fromkeys(k[2] for k in reversed(_provider_trends)))
            dropped = {f for f in recent[_TREND_FILTERS_KEPT:] if f != NO_FILTER}
            for key in [k for k in _provider_trends if k[2] in dropped]:
                del _provider_trends[key]
    return {**known, **found}


def suppress(frame: pl.DataFrame, count_columns: Sequence[str], threshold: int,
             derived: Mapping[str, Sequence[str]] | None = None) -> pl.DataFrame:
    """Small-number suppression for output leaving the identifiable tier.

    Every count in `count_columns` with 0 < count < `threshold` becomes null, as does every
    column `derived[count]` computed from it (rates, medians, ratios); a boolean `suppressed`
    says whether anything in the row was withheld. Zero is shown: a true zero identifies nobody
    and is what a board needs to see (e.g. no 104-week waiters).
    """
    derived = derived or {}
    small = {name: pl.col(name).is_not_null() & (pl.col(name) > 0) & (pl.col(name) < threshold)
             for name in count_columns}
    withheld: dict[str, pl.Expr] = {}
    for name, condition in small.items():
        for target in (name, *derived.get(name, ())):
            if target in frame.columns:
                withheld[target] = withheld[target] | condition if target in withheld else condition
    any_small = pl.any_horizontal(list(small.values())) if small else pl.lit(False)
    return frame.with_columns(
        *[pl.when(condition).then(None).otherwise(pl.col(name)).alias(name)
          for name, condition in withheld.items()],
        any_small.fill_null(False).alias("suppressed"),
    )


def suppress_groups(groups: pl.DataFrame, threshold: int) -> pl.DataFrame:
    """`suppress` applied to an equity table (`groups` or `trend`), plus one rule of its own:
    every rate ratio is computed from the reference group's counts, so when those are
    withheld all ratios in the same table (per census for a trend) are withheld too."""
    counts = ["open_pathways", "known_clock_start", "within_18", "over_52"]
    partition = ["census_date"] if "census_date" in groups.columns else []
    small_reference = (
        pl.col("is_reference")
        & pl.any_horizontal([(pl.col(c) > 0) & (pl.col(c) < threshold)
                             for c in ("known_clock_start", "over_52")])
    )
    hidden = (small_reference.any().over(partition) if partition else small_reference.any())
    masked = groups.with_columns(
        *[pl.when(hidden).then(None).otherwise(pl.col(c)).alias(c)
          for c in ("rate_ratio", "rr_ci_low", "rr_ci_high")]
    )
    return suppress(masked, counts, threshold, EQUITY_DERIVED)


def suppress_headline(frame: pl.DataFrame, threshold: int) -> pl.DataFrame:
    """`suppress` applied to the headline table."""
    ratio = ("rate_ratio", "rr_ci_low", "rr_ci_high")
    return suppress(frame, ["over_52_most_deprived", "known_most_deprived",
                            "over_52_least_deprived", "known_least_deprived"], threshold,
                    {name: ratio for name in ("over_52_most_deprived", "known_most_deprived",
                                              "over_52_least_deprived", "known_least_deprived")})
