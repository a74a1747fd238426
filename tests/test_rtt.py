"""RTT arithmetic against the rule table in DOMAIN.md, scalar and vectorised."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ptl import rtt

DAYS = st.integers(min_value=0, max_value=3000)


def test_rule_table_examples() -> None:
    # (days, week band, within 18, over 52, over 65, over 78, over 104)
    table = [
        (0, 0, True, False, False, False, False),
        (7, 0, True, False, False, False, False),
        (8, 1, True, False, False, False, False),
        (14, 1, True, False, False, False, False),
        (15, 2, True, False, False, False, False),
        (126, 17, True, False, False, False, False),
        (127, 18, False, False, False, False, False),
        (364, 51, False, False, False, False, False),
        (365, 52, False, True, False, False, False),
        (456, 65, False, True, True, False, False),
        (547, 78, False, True, True, True, False),
        (728, 103, False, True, True, True, False),
        (729, 104, False, True, True, True, True),
    ]
    for days, band, w18, o52, o65, o78, o104 in table:
        assert rtt.week_band(days) == band, days
        assert rtt.within_18_weeks(days) is w18
        assert [rtt.over_weeks(days, w) for w in (52, 65, 78, 104)] == [o52, o65, o78, o104]


@given(DAYS)
def test_week_band_is_the_published_formula(days: int) -> None:
    assert rtt.week_band(days) == (0 if days <= 7 else math.ceil(days / 7) - 1)


@settings(max_examples=50, deadline=None)
@given(st.lists(DAYS, min_size=1, max_size=200))
def test_vectorised_rules_agree_with_the_scalar_rules(days: list[int]) -> None:
    frame = pl.DataFrame({"d": days}, schema={"d": pl.Int32}).select(
        rtt.week_band_expr(pl.col("d")).alias("band"),
        rtt.within_18_weeks_expr(pl.col("d")).alias("w18"),
        *[rtt.over_weeks_expr(pl.col("d"), w).alias(f"o{w}") for w in (52, 65, 78, 104)],
    )
    assert frame["band"].to_list() == [rtt.week_band(d) for d in days]
    assert frame["w18"].to_list() == [rtt.within_18_weeks(d) for d in days]
    for w in (52, 65, 78, 104):
        assert frame[f"o{w}"].to_list() == [rtt.over_weeks(d, w) for d in days]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.dates(dt.date(1900, 1, 1), dt.date(2030, 12, 31)),
                          st.dates(dt.date(1900, 1, 1), dt.date(2030, 12, 31))), min_size=1, max_size=50))
def test_days_and_age_vectorised_agree(pairs: list[tuple[dt.date, dt.date]]) -> None:
    frame = pl.DataFrame({"census": [p[0] for p in pairs], "start": [p[1] for p in pairs]})
    out = frame.select(
        rtt.days_waited_expr(pl.col("census"), pl.col("start")).alias("days"),
        rtt.age_years_expr(pl.col("census"), pl.col("start")).alias("age"),
    )
    assert out["days"].to_list() == [rtt.days_waited(c, s) for c, s in pairs]
    assert out["age"].to_list() == [rtt.age_years(c, s) for c, s in pairs]


def test_age_counts_the_birthday_on_the_census_day() -> None:
    assert rtt.age_years(dt.date(2024, 6, 30), dt.date(2006, 6, 30)) == 18
    assert rtt.age_years(dt.date(2024, 6, 29), dt.date(2006, 6, 30)) == 17
