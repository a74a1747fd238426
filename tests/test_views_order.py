"""Sorting by packed integer keys gives exactly Polars' own sort (nulls first or last)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ptl.views.order import sort_integers


@st.composite
def frames(draw: st.DrawFn) -> tuple[pl.DataFrame, list[bool]]:
    rows = draw(st.integers(0, 40))
    scale = draw(st.sampled_from([3, 1000, 2**31, 2**62]))
    a = draw(st.lists(st.one_of(st.none(), st.integers(0, 12)), min_size=rows, max_size=rows))
    b = draw(st.lists(st.one_of(st.none(), st.integers(-scale, scale)), min_size=rows, max_size=rows))
    ids = draw(st.lists(st.integers(-max(scale, 50), max(scale, 50)), min_size=rows, max_size=rows, unique=True))
    frame = pl.DataFrame({"a": a, "b": b, "id": ids, "text": [str(i) for i in ids]},
                         schema={"a": pl.Int16, "b": pl.Int32 if scale < 2**31 else pl.Int64, "id": pl.Int64,
                                 "text": pl.String})
    return frame, draw(st.lists(st.booleans(), min_size=4, max_size=4))


@settings(max_examples=300, deadline=None)
@given(frames())
def test_packed_sort_is_polars_sort(case: tuple[pl.DataFrame, list[bool]]) -> None:
    frame, flags = case
    columns, descending, nulls_last = ["a", "b", "id"], flags[:3], flags[3]
    assert_frame_equal(sort_integers(frame, columns, descending, nulls_last=nulls_last),
                       frame.sort(columns, descending=descending, nulls_last=nulls_last))
