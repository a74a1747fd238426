"""Equity by group, the headline rate ratio and small-number suppression, against references."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptl.views.duplicates import duplicate_pathways
from ptl.views.equity import (
    EQUITY_COLUMNS,
    HEADLINE_COLUMNS,
    equity,
    rate_ratio_ci,
    suppress,
    suppress_groups,
)
from ptl.views.filters import ViewFilter
from tests.test_views_queue import filters_strategy, is_open_rtt, matches
from tests.test_views_sites import approx_equal, assert_rows_equal, interpolate
from tests.test_views_strategies import GeneratedPtl, examples, ptls

REFERENCE = {"imd_quintile": "5", "ethnic_group": "White", "ethnic_category": "A", "age_band": "18-34",
             "sex": "1", "learning_disability": "false"}
NOT_KNOWN = {"ethnic_group": {"Not stated/known"}, "ethnic_category": {"Z", "99"}, "sex": {"X", "9"}}


def group_of(row: dict[str, Any], by: str) -> str:
    value = row[by]
    if value is None or str(value) in NOT_KNOWN.get(by, set()):
        return "Unknown"
    return str(value).lower() if isinstance(value, bool) else str(value)


def katz(a: int, n1: int, c: int, n0: int) -> tuple[float | None, float | None, float | None]:
    """Risk ratio with the log-method interval, written out (reference)."""
    if a == 0 or c == 0 or n1 == 0 or n0 == 0:
        return None, None, None
    rr = (a / n1) / (c / n0)
    half_width = 1.959963984540054 * math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n0)
    return rr, rr * math.exp(-half_width), rr * math.exp(half_width)


def reference_table(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[group_of(row, by)].append(row)
    total = len(rows)
    stats = {}
    for name, members in groups.items():
        days = [m["days_waited"] for m in members if m["days_waited"] is not None]
        stats[name] = {
            "group": name, "is_reference": name == REFERENCE[by], "open_pathways": len(members),
            "share": len(members) / total, "known_clock_start": len(days),
            "median_weeks": interpolate([m["week_band"] for m in members if m["week_band"] is not None], 0.5),
            "within_18": sum(d <= 126 for d in days),
            "pct_within_18": 100 * sum(d <= 126 for d in days) / len(days) if days else None,
            "over_52": sum(d >= 365 for d in days),
            "pct_over_52": 100 * sum(d >= 365 for d in days) / len(days) if days else None,
        }
    reference = stats.get(REFERENCE[by])
    for name, s in stats.items():
        if reference is None or name == "Unknown":
            s["rate_ratio"] = s["rr_ci_low"] = s["rr_ci_high"] = None
        else:
            s["rate_ratio"], s["rr_ci_low"], s["rr_ci_high"] = katz(
                s["over_52"], s["known_clock_start"], reference["over_52"], reference["known_clock_start"])
    return sorted(stats.values(), key=lambda s: (s["group"] == "Unknown", s["group"]))


def reference_population(ptl: GeneratedPtl, f: ViewFilter) -> list[dict[str, Any]]:
    dropped = {m["id"] for m in duplicate_pathways(ptl.current).to_dicts() if not m["keep"]}
    return [r for r in ptl.current.to_dicts() if is_open_rtt(r) and r["id"] not in dropped and matches(r, f)]


dimensions = st.sampled_from(sorted(REFERENCE))


@settings(max_examples=examples(50), deadline=None)
@given(ptls(), dimensions, filters_strategy)
def test_equity_groups_trend_and_headline_match_reference(ptl: GeneratedPtl, by: str, f: ViewFilter) -> None:
    result = equity(ptl.current, by, f, trend_history=ptl.history)
    population = reference_population(ptl, f)
    assert result.groups.columns == list(EQUITY_COLUMNS)
    assert_rows_equal(result.groups.to_dicts(), reference_table(population, by))
    unknown = sum(group_of(r, by) == "Unknown" for r in population)
    assert approx_equal(result.share_unknown, unknown / len(population) if population else None)

    history = [r for r in ptl.history.to_dicts() if is_open_rtt(r) and matches(r, f)]
    expected_trend = []
    for census in sorted({r["census_date"] for r in history}):
        expected_trend += [{"census_date": census, **row}
                           for row in reference_table([r for r in history if r["census_date"] == census], by)]
    assert result.trend is not None
    assert_rows_equal(result.trend.to_dicts(), expected_trend)

    expected_headline = []
    known = [r for r in population if r["days_waited"] is not None]
    for scope in ["system", *sorted({r["provider_code"] for r in known})]:
        rows = [r for r in known if scope in ("system", r["provider_code"])]
        most = [r for r in rows if r["imd_quintile"] == 1]
        least = [r for r in rows if r["imd_quintile"] == 5]
        a, c = sum(r["days_waited"] >= 365 for r in most), sum(r["days_waited"] >= 365 for r in least)
        rr, low, high = katz(a, len(most), c, len(least))
        expected_headline.append(dict(zip(HEADLINE_COLUMNS, (scope, a, len(most), c, len(least), rr, low, high),
                                          strict=True)))
    assert_rows_equal(result.headline.to_dicts(), expected_headline)


def test_rate_ratio_worked_example() -> None:
    # 30 of 100 most deprived over 52 weeks vs 15 of 100 least deprived: RR 2.0,
    # SE = sqrt(1/30 − 1/100 + 1/15 − 1/100) = sqrt(0.08) = 0.2828; CI = 2·exp(±1.96·0.2828) = 1.149 … 3.482.
    rr, low, high = rate_ratio_ci(30, 100, 15, 100)
    assert rr == pytest.approx(2.0)
    assert low == pytest.approx(1.1489, abs=1e-4) and high == pytest.approx(3.4817, abs=1e-4)
    assert rate_ratio_ci(0, 100, 15, 100) == (None, None, None)


def test_equity_refuses_an_unknown_dimension() -> None:
    with pytest.raises(ValueError, match="cannot break the list down by 'religion'"):
        equity(pl.DataFrame(), "religion")


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 12)), st.integers(0, 12)), max_size=12),
       st.integers(1, 8))
def test_suppress_withholds_exactly_the_small_counts_and_their_rates(rows: list[tuple[int | None, int]],
                                                                      threshold: int) -> None:
    frame = pl.DataFrame({"n": [r[0] for r in rows], "m": [r[1] for r in rows]},
                         schema={"n": pl.Int64, "m": pl.Int64}).with_columns(
        (pl.col("n") / 10).alias("n_rate"), (pl.col("m") * 2).alias("m_rate"), pl.lit("x").alias("label"))
    out = suppress(frame, ["n", "m"], threshold, {"n": ["n_rate"], "m": ["m_rate"]})
    for (n, m), before, got in zip(rows, frame.to_dicts(), out.to_dicts(), strict=True):
        small_n = n is not None and 0 < n < threshold
        small_m = 0 < m < threshold
        assert got["n"] == (None if small_n else n)
        assert got["n_rate"] == (None if small_n else before["n_rate"])
        assert got["m"] == (None if small_m else m)
        assert got["m_rate"] == (None if small_m else m * 2)
        assert got["suppressed"] == (small_n or small_m)
        assert got["label"] == "x"


def test_suppressing_the_reference_group_withholds_every_ratio() -> None:
    groups = pl.DataFrame({
        "group": ["1", "5"], "is_reference": [False, True], "open_pathways": [100, 40],
        "share": [0.7, 0.3], "known_clock_start": [100, 40], "median_weeks": [10.0, 8.0],
        "within_18": [60, 30], "pct_within_18": [60.0, 75.0], "over_52": [20, 3],
        "pct_over_52": [20.0, 7.5], "rate_ratio": [2.67, 1.0], "rr_ci_low": [0.8, 1.0], "rr_ci_high": [8.0, 1.0],
    })
    out = suppress_groups(groups, 5)
    # Quintile 1's own counts are large, but its ratio would reveal the reference's 3.
    assert out["rate_ratio"].to_list() == [None, None]
    assert out["over_52"].to_list() == [20, None]
    assert out["suppressed"].to_list() == [False, True]
