"""Values a person submits (an offer or a capacity declaration, from the API or the command
line), read leniently: each problem is added to a list against its field instead of raised,
so that one answer can name every problem at once."""

from __future__ import annotations

import datetime as dt
from typing import Any

#: (field, what is wrong with it)
Problems = list[tuple[str, str]]


def submitted_date(problems: Problems, name: str, value: Any) -> dt.date | None:
    """A date given as a date (or date and time) or as YYYY-MM-DD text; otherwise None, with
    the problem added against `name`."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    problems.append((name, f"'{str(value)[:20]}' is not a date; use YYYY-MM-DD"))
    return None
