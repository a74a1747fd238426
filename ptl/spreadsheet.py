"""Cells a spreadsheet would run as a formula, made safe to open (CSV formula injection).

Values in exports come from providers' files and from API clients: a site code `=1+1` or a
name `@SUM(A1)` in a CSV a coordinator opens in Excel or LibreOffice would be evaluated, and a
crafted one can fetch data or run commands. OWASP's rule, applied to every text cell of every
CSV the product writes: a value beginning with `=`, `+`, `-`, `@`, a tab or a carriage return
gets a leading `'`, which spreadsheets show as text, unless it is a plain number such as `-1.5`
(so negative numbers held as text stay numbers). Number, date and boolean columns are written
by Polars and cannot begin with a formula character other than a minus sign of a number.

The rule is a Polars expression over whole columns (no loop over rows).
"""

from __future__ import annotations

import polars as pl

#: What makes a spreadsheet treat a cell as a formula (OWASP: CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
#: A plain number: an optional minus, digits with an optional fraction, an optional exponent.
#: ASCII digits only (`\d` would accept other scripts' digits, which a spreadsheet reads as text).
_PLAIN_NUMBER = r"^-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"
_STARTS_WITH_TRIGGER = r"^[=+\-@\t\r]"
_PREFIX = "'"


def formula_safe(text: pl.Expr) -> pl.Expr:
    """`text` (a String expression) with every cell that a spreadsheet would run as a formula
    prefixed with `'`; other cells, plain numbers and nulls unchanged."""
    runs = text.str.contains(_STARTS_WITH_TRIGGER) & ~text.str.contains(_PLAIN_NUMBER)
    # `name.keep`: the result is named for the column, not for the prefix literal.
    return pl.when(runs).then(pl.concat_str([pl.lit(_PREFIX), text])).otherwise(text).name.keep()


def formula_safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with `formula_safe` applied to every text column (categoricals and enums are
    written as text, so they are made text first); other columns are untouched."""
    text_types = (pl.String, pl.Categorical, pl.Enum)
    columns = [
        formula_safe(pl.col(name).cast(pl.String)).alias(name) if isinstance(dtype, text_types)
        else pl.col(name)
        for name, dtype in frame.schema.items()
    ]
    return frame.select(columns)
