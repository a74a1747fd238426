"""The formula-injection rule (`ptl.spreadsheet`) against a plain reference function, and on
the values an attacker would send."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ptl.spreadsheet import formula_safe, formula_safe_frame


def _plain_number(value: str) -> bool:
    """-1.5, 2, .5, 3., 1e-5: what a spreadsheet reads as a number, written out by hand."""
    body = value[1:] if value.startswith("-") else value
    mantissa, _, exponent = body.replace("E", "e").partition("e")
    if "e" in body.replace("E", "e") and not exponent.lstrip("+-"):
        return False
    if exponent:
        digits = exponent[1:] if exponent[0] in "+-" else exponent
        if not digits or any(c not in "0123456789" for c in digits):
            return False
    whole, dot, fraction = mantissa.partition(".")
    if "." in fraction:
        return False
    allowed = set("0123456789")
    return bool(whole or fraction) and set(whole) <= allowed and set(fraction) <= allowed


def reference(value: str | None) -> str | None:
    if value is None or value == "" or value[0] not in "=+-@\t\r" or _plain_number(value):
        return value
    return "'" + value


def test_reference_agrees_with_hand_picked_cases() -> None:
    cases = {
        "=1+1": "'=1+1", "@SUM(A1)": "'@SUM(A1)", "-2+3": "'-2+3", "+447700900123": "'+447700900123",
        "\t=cmd": "'\t=cmd", "\r=cmd": "'\r=cmd", "-1.5": "-1.5", "-3": "-3", "-.5": "-.5",
        "-1e-5": "-1e-5", "-": "'-", "--1": "'--1", "-1.2.3": "'-1.2.3", "-1e": "'-1e",
        "-١٢": "'-١٢", "RAA01": "RAA01", "W37.1": "W37.1", "": "", " =1": " =1",
        "=HYPERLINK(\"http://x\")": "'=HYPERLINK(\"http://x\")",
    }
    for value, expected in cases.items():
        assert reference(value) == expected, value
    got = pl.DataFrame({"v": list(cases)}).select(formula_safe(pl.col("v"))).get_column("v").to_list()
    assert got == list(cases.values())


_edgy = st.text(alphabet=st.sampled_from("=+-@\t\r.eE0123456789 aZ'\"١\n;,"), max_size=8)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(values=st.lists(st.none() | _edgy | st.text(max_size=12), max_size=30))
def test_formula_safe_is_the_reference_rule(values: list[str | None]) -> None:
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    got = frame.select(formula_safe(pl.col("v"))).get_column("v").to_list()
    assert got == [reference(v) for v in values]


def test_only_text_columns_change() -> None:
    frame = pl.DataFrame({
        "site": ["=1+1", "RAA01"], "days": [-3, 4], "ratio": [-1.5, 2.0],
        "name": pl.Series(["@SUM(A1)", "Smith"], dtype=pl.Categorical),
        "day": pl.Series(["2025-01-05", None]).str.to_date(),
    })
    safe = formula_safe_frame(frame)
    assert safe.get_column("site").to_list() == ["'=1+1", "RAA01"]
    assert safe.get_column("name").to_list() == ["'@SUM(A1)", "Smith"]
    assert safe.select("days", "ratio", "day").equals(frame.select("days", "ratio", "day"))
    assert safe.schema["days"] == pl.Int64 and safe.schema["ratio"] == pl.Float64
