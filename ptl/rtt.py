"""RTT clock arithmetic: days waited, week bands and long-wait thresholds.

The rules (NHS England RTT guidance; DOMAIN.md): days waited `d = census_date - clock_start`;
week band `0 if d <= 7 else ceil(d / 7) - 1`; within 18 weeks iff `d <= 126`; over 52, 65, 78
and 104 weeks iff `d >= 365, 456, 547, 729`. Each rule exists twice: a plain function (the
reference, used in tests and one-off code) and a Polars expression (used over whole snapshots).
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import polars as pl

WITHIN_18_WEEKS_DAYS: Final[int] = 126
#: Long-wait thresholds: weeks → minimum days waited to count as "over" that many weeks.
OVER_WEEKS_DAYS: Final[dict[int, int]] = {52: 365, 65: 456, 78: 547, 104: 729}
#: Share of incomplete pathways that must be within 18 weeks (the constitutional standard).
RTT_STANDARD: Final[float] = 0.92


def days_waited(census_date: dt.date, clock_start: dt.date) -> int:
    return (census_date - clock_start).days


def week_band(days: int) -> int:
    """The completed-weeks band NHS England reports a wait in (0 means 0–1 weeks)."""
    return 0 if days <= 7 else -(-days // 7) - 1


def within_18_weeks(days: int) -> bool:
    return days <= WITHIN_18_WEEKS_DAYS


def over_weeks(days: int, weeks: int) -> bool:
    return days >= OVER_WEEKS_DAYS[weeks]


def days_waited_expr(census: pl.Expr, clock_start: pl.Expr) -> pl.Expr:
    return (census - clock_start).dt.total_days().cast(pl.Int32)


def week_band_expr(days: pl.Expr) -> pl.Expr:
    return (
        pl.when(days.is_null())
        .then(None)
        .when(days <= 7)
        .then(0)
        .otherwise((days + 6) // 7 - 1)
        .cast(pl.Int32)
    )


def within_18_weeks_expr(days: pl.Expr) -> pl.Expr:
    return days <= WITHIN_18_WEEKS_DAYS


def over_weeks_expr(days: pl.Expr, weeks: int) -> pl.Expr:
    return days >= OVER_WEEKS_DAYS[weeks]


def age_years_expr(census: pl.Expr, birth: pl.Expr) -> pl.Expr:
    """Whole years of age at the census (birthday on the census day counts)."""
    # month()/day() are Int8: widen before arithmetic or 12 * 100 wraps round.
    def month_day(date: pl.Expr) -> pl.Expr:
        return date.dt.month().cast(pl.Int32) * 100 + date.dt.day().cast(pl.Int32)

    had_birthday = month_day(census) >= month_day(birth)
    years = census.dt.year() - birth.dt.year() - pl.when(had_birthday).then(0).otherwise(1)
    return years.cast(pl.Int16)


def age_years(census_date: dt.date, birth_date: dt.date) -> int:
    had_birthday = (census_date.month, census_date.day) >= (birth_date.month, birth_date.day)
    return census_date.year - birth_date.year - (0 if had_birthday else 1)
