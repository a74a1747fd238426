"""Work the views keep across snapshots (per provider, per feed) gives exactly what computing it
afresh gives, after one provider's new census (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine

from ptl.store.bulk import insert_frame
from ptl.views.equity import REFERENCE_GROUPS, _trend_rows, equity, group_table
from ptl.views.feed_frames import FeedFrameCache
from ptl.views.filters import NO_FILTER, ViewFilter
from ptl.views.snapshot import Snapshot, invalidate_snapshot, read_snapshot
from tests.test_views_snapshot import CENSUS, add_feed, pathway_frame

FILTERS = (NO_FILTER, ViewFilter(provider_code="RB2"), ViewFilter(treatment_function_code="110"),
           ViewFilter(priority="unknown"))


def _rows(feed_id: int, provider: str, census: dt.date, first_id: int, count: int) -> pl.DataFrame:
    return pathway_frame([
        {"id": first_id + i, "feed_id": feed_id, "provider_code": provider, "census_date": census,
         "pathway_id": f"{provider}-{i}", "pathway_id_issuer": provider,
         "rtt_start_date": census - dt.timedelta(days=40 * i + 3 * feed_id),
         "imd_quintile": i % 5 + 1, "ethnic_category": "ABHZ"[i % 4], "sex": "12"[i % 2],
         "age_band": ("18-34", "65-74")[i % 2], "learning_disability": i % 7 == 0,
         "treatment_function_code": ("110", "130")[i % 2], "clinical_priority": (None, "P2")[i % 3 == 0]}
        for i in range(count)])


@pytest.fixture
def store(store_engine: Engine) -> Engine:
    invalidate_snapshot()
    week = dt.timedelta(weeks=1)
    with store_engine.begin() as connection:
        add_feed(connection, 1, "RA1", CENSUS - week, current=False)
        add_feed(connection, 2, "RA1", CENSUS)
        add_feed(connection, 3, "RB2", CENSUS - week, current=False)
        add_feed(connection, 4, "RB2", CENSUS)
        for feed_id, provider, census in ((1, "RA1", CENSUS - week), (2, "RA1", CENSUS),
                                          (3, "RB2", CENSUS - week), (4, "RB2", CENSUS)):
            insert_frame(connection, "pathway", _rows(feed_id, provider, census, feed_id * 100, 30))
    return store_engine


def _trends_afresh(snapshot: Snapshot, by: str, filters: ViewFilter) -> pl.DataFrame:
    return group_table(_trend_rows(snapshot.history, filters), by, ("census_date",))


def _assert_trends_exact(snapshot: Snapshot) -> None:
    for filters in FILTERS:
        for by in REFERENCE_GROUPS:
            trend = equity(snapshot.current, by, filters, snapshot.history).trend
            assert trend is not None
            order = ["census_date", "group"]
            assert_frame_equal(trend.sort(order), _trends_afresh(snapshot, by, filters).sort(order))


def test_equity_trends_reused_per_provider_are_exact(store: Engine, tmp_path: Path) -> None:
    cache = FeedFrameCache(tmp_path / "frames")
    _assert_trends_exact(read_snapshot(store, frame_cache=cache))
    kept = importlib.import_module("ptl.views.equity")._provider_trends
    ra1_before = {k[2:]: v for k, v in kept.items() if k[0][0] == "RA1"}
    # RB2's next census: RA1's counts are reused, RB2's counted again, every figure exact.
    with store.begin() as connection:
        add_feed(connection, 5, "RB2", CENSUS + dt.timedelta(weeks=1))
        insert_frame(connection, "pathway", _rows(5, "RB2", CENSUS + dt.timedelta(weeks=1), 500, 25))
    after_load = read_snapshot(store, frame_cache=cache)
    assert sorted(after_load.history["census_date"].unique().to_list()) == [
        CENSUS - dt.timedelta(weeks=1), CENSUS, CENSUS + dt.timedelta(weeks=1)]
    _assert_trends_exact(after_load)
    ra1_after = {k[2:]: v for k, v in kept.items() if k[0][0] == "RA1"}
    assert ra1_after and all(ra1_after[k] is v for k, v in ra1_before.items())  # reused, not recounted
    # A frame the reader did not describe is counted whole.
    changed = after_load.history.with_columns(pl.lit("Z").alias("ethnic_category"))
    trend = equity(after_load.current, "ethnic_category", NO_FILTER, changed).trend
    assert trend is not None
    assert trend["group"].unique().to_list() == ["Unknown"]
