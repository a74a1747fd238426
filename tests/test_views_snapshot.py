"""The analytics snapshot read from the store (SQLite and PostgreSQL), its cache, and the
published-figure check: a PTL built from NHS England-style week-band counts gives back the
published % within 18 weeks exactly and the median within 0.15 weeks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from ptl import codes, rtt
from ptl.store import identity_partitions
from ptl.store.bulk import insert_frame
from ptl.store.models import CurrentSnapshot, Feed, Organisation
from ptl.store.pathway_partitions import ensure_partition
from ptl.views.feed_frames import FeedFrameCache
from ptl.views.filters import ViewFilter
from ptl.views.sites import _build_transitions, census_transitions, site_stats
from ptl.views.snapshot import (
    CURRENT_SCHEMA,
    HISTORY_SCHEMA,
    IDENTIFIABLE_COLUMNS,
    Snapshot,
    invalidate_snapshot,
    load_snapshot,
    read_snapshot,
)
from ptl.views.validation import worklist

CENSUS = dt.date(2025, 3, 2)
PATHWAY_TEXT = ("pathway_id", "pathway_id_issuer", "site_code", "treatment_function_code",
                "waiting_list_type", "rtt_status", "clinical_priority", "ethnic_category", "ethnic_group",
                "sex", "age_band", "lsoa11")


def add_feed(connection: sa.Connection, feed_id: int, provider: str, census: dt.date,
             status: str = "loaded", current: bool = True, rows_rejected: int = 0) -> None:
    now = dt.datetime.now(dt.UTC)
    if connection.execute(sa.select(Organisation.code).where(Organisation.code == provider)).first() is None:
        connection.execute(sa.insert(Organisation).values(code=provider, kind="trust", updated_at=now))
    connection.execute(sa.insert(Feed).values(
        id=feed_id, provider_code=provider, census_date=census, filename="f.csv", sha256=f"{feed_id:064d}",
        file_format="csv", profile="wlmds", source="cli", status=status, rows_read=10, rows_loaded=10,
        rows_rejected=rows_rejected, rows_warned=0, received_at=now))
    if status == "loaded":  # PostgreSQL: the feed's pathway partition (a loader makes its own)
        ensure_partition(connection, feed_id)
    if current:
        connection.execute(sa.delete(CurrentSnapshot).where(CurrentSnapshot.provider_code == provider))
        connection.execute(sa.insert(CurrentSnapshot).values(
            provider_code=provider, feed_id=feed_id, census_date=census, updated_at=now))


def pathway_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Pathway rows with their derived columns (days, week band, rank) for the store."""
    full = []
    for r in rows:
        days = None if r.get("rtt_start_date") is None else rtt.days_waited(r["census_date"], r["rtt_start_date"])
        full.append({
            "waiting_list_type": "IRTT", "is_rtt": True, "rtt_status": "20", "treatment_function_code": "110",
            "source_identity_id": 1, **r, "days_waited": days,
            "week_band": None if days is None else rtt.week_band(days),
            "priority_rank": codes.CLINICAL_PRIORITY_RANK.get(r.get("clinical_priority") or "",
                                                              codes.UNKNOWN_PRIORITY_RANK),
        })
    columns = [c for c in CURRENT_SCHEMA if c not in ("person_id", "has_nhs_number", "has_postcode")]
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in full],
                        schema={c: CURRENT_SCHEMA[c] for c in columns}, orient="row")


def add_identities(connection: sa.Connection) -> None:
    identity_partitions.ensure(connection, ["RA1", "RB2"])
    insert_frame(connection, "source_identity", pl.DataFrame({
        "id": [1, 2], "provider_code": ["RA1", "RB2"], "local_patient_id": ["L1", "L2"],
        "nhs_number": ["9434765919", None], "postcode": [None, "LS1 4AP"],
        "first_feed_id": [1, 2], "values_census_date": [CENSUS, CENSUS]}))


@pytest.fixture
def store(store_engine: Engine) -> Engine:
    invalidate_snapshot()
    with store_engine.begin() as connection:
        add_feed(connection, 1, "RA1", CENSUS - dt.timedelta(weeks=1), current=False)
        add_feed(connection, 2, "RA1", CENSUS)
        add_feed(connection, 3, "RB2", CENSUS)
        add_feed(connection, 4, "RB2", CENSUS, status="refused", current=False, rows_rejected=9)
        add_identities(connection)
        week_ago = CENSUS - dt.timedelta(weeks=1)
        insert_frame(connection, "pathway", pathway_frame([
            {"id": 10, "feed_id": 1, "provider_code": "RA1", "census_date": week_ago, "pathway_id": "A",
             "pathway_id_issuer": "RA1", "rtt_start_date": dt.date(2024, 1, 1)},
            {"id": 11, "feed_id": 1, "provider_code": "RA1", "census_date": week_ago, "pathway_id": "GONE",
             "pathway_id_issuer": "RA1", "rtt_start_date": dt.date(2024, 1, 1)},
            {"id": 20, "feed_id": 2, "provider_code": "RA1", "census_date": CENSUS, "pathway_id": "A",
             "pathway_id_issuer": "RA1", "rtt_start_date": dt.date(2024, 1, 1), "clinical_priority": "P2",
             "learning_disability": True, "imd_quintile": 1, "site_code": "RA101"},
            {"id": 21, "feed_id": 2, "provider_code": "RA1", "census_date": CENSUS, "pathway_id": "NEW",
             "pathway_id_issuer": "RA1", "rtt_start_date": None, "source_identity_id": 2},
            {"id": 30, "feed_id": 3, "provider_code": "RB2", "census_date": CENSUS, "pathway_id": "B",
             "pathway_id_issuer": "RB2", "rtt_start_date": dt.date(2025, 1, 1), "tci_date": dt.date(2025, 3, 9),
             "ethnic_category": "A", "ethnic_group": "White", "source_identity_id": 2},
        ]))
        insert_frame(connection, "row_issue", pl.DataFrame({
            "feed_id": [3, 3, 1], "row_number": [7, 8, 9], "column_name": ["rtt_status", "rtt_start_date", "rtt_status"],
            "severity": ["rejected", "rejected", "rejected"],
            "kind": ["clock_stop_on_open_pathway", "bad_date", "clock_stop_on_open_pathway"],
            "reason": ["stop", "not a date", "old feed"], "raw_value": ["30", "31/02/2025", "30"],
            "raw_row": ['{"NHS_NUMBER": "9434765919"}'] * 3}))
    return store_engine


def test_snapshot_reads_current_feeds_history_and_issues(store: Engine) -> None:
    snapshot = load_snapshot(store)
    assert snapshot.version == 3  # newest loaded feed (4 was refused)
    current = snapshot.current
    assert current.schema == pl.Schema(CURRENT_SCHEMA)
    assert sorted(current["id"].to_list()) == [20, 21, 30]
    row = current.filter(pl.col("id") == 20).row(0, named=True)
    assert row["days_waited"] == (CENSUS - dt.date(2024, 1, 1)).days and row["is_rtt"] is True
    assert row["learning_disability"] is True and row["imd_quintile"] == 1 and row["site_code"] == "RA101"
    assert row["has_nhs_number"] is True and row["has_postcode"] is False
    assert row["person_id"] is None  # identity_link not there yet (or empty)
    assert current.filter(pl.col("id") == 30)["tci_date"].to_list() == [dt.date(2025, 3, 9)]
    assert snapshot.history.schema == pl.Schema(HISTORY_SCHEMA)
    assert sorted(zip(snapshot.history["census_date"].to_list(), snapshot.history["pathway_id"].to_list(),
                      strict=True)) == sorted([(CENSUS - dt.timedelta(weeks=1), "A"),
                                               (CENSUS - dt.timedelta(weeks=1), "GONE"),
                                               (CENSUS, "A"), (CENSUS, "NEW"), (CENSUS, "B")])
    # Only the current feeds' rejected rows, and never the raw row (identifiable).
    assert sorted(snapshot.issues["row_number"].to_list()) == [7, 8]
    assert "raw_row" not in snapshot.issues.columns
    assert snapshot.feeds.filter(pl.col("is_current"))["id"].sort().to_list() == [2, 3]
    stats = site_stats(snapshot, ViewFilter(), ("provider_code",)).row(0, named=True)
    assert (stats["provider_code"], stats["weekly_additions"], stats["weekly_removals"]) == ("RA1", 1.0, 1.0)
    assert worklist(snapshot, "clock_stop_status")["row_number"].to_list() == [7]
    assert worklist(snapshot, "clock_start")["source"].to_list() == ["pathway", "rejected_row"]


def test_snapshot_is_cached_per_data_version(store: Engine) -> None:
    first = load_snapshot(store)
    assert load_snapshot(store) is first
    assert first.cached(("k",), lambda: object()) is first.cached(("k",), lambda: object())
    with store.begin() as connection:
        add_feed(connection, 5, "RB2", CENSUS + dt.timedelta(weeks=1))
    second = load_snapshot(store)
    assert second is not first and second.version == 5
    assert second.current.filter(pl.col("provider_code") == "RB2").height == 0  # the new feed is empty
    with store.begin() as connection:
        add_feed(connection, 6, "RA1", CENSUS, status="refused", current=False)
    assert load_snapshot(store) is not second  # a refused feed changes data quality
    invalidate_snapshot(store)


def test_person_id_comes_from_identity_link_and_conflicts_from_identity_review(store: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    with store.begin() as connection:
        connection.execute(sa.text("INSERT INTO person (id, created_at) VALUES (77, :now)"), {"now": now})
        connection.execute(sa.text(
            "INSERT INTO identity_link (source_identity_id, person_id, method, linked_at) "
            "VALUES (2, 77, 'nhs_number', :now)"), {"now": now})
        connection.execute(sa.text(
            "INSERT INTO identity_review (kind, status, subject_key, source_identity_ids, provider_codes, "
            "evidence, created_at) VALUES ('dob_conflict', 'open', 'k1', '1,2', 'RA1,RB2', 'dates differ', :now)"),
            {"now": now})
    invalidate_snapshot(store)
    snapshot = load_snapshot(store)
    current = snapshot.current
    assert dict(zip(current["id"].to_list(), current["person_id"].to_list(), strict=True)) == {20: None, 21: 77, 30: 77}
    conflicts = worklist(snapshot, "identity_conflicts", ViewFilter(provider_code="RB2"))
    assert conflicts["kind"].to_list() == ["dob_conflict"]
    assert worklist(snapshot, "identity_conflicts", ViewFilter(provider_code="NT3")).height == 0


# --- published-figure check ----------------------------------------------------------------

#: Incomplete pathways by week band (>0-1, >1-2, … >103-104, 104+) for one treatment function
#: at three providers, in the shape of NHS England's monthly RTT "Incomplete Provider" tables.
#: Made up, but with a published list's shape: a peak in the first weeks and a long tail.
def published_counts(scale: int, tail: float) -> list[int]:
    counts = [int(scale * (1.0 - 0.035 * w)) for w in range(18)]             # 0–18 weeks
    counts += [int(scale * 0.37 * (0.93 ** (w - 18)) + tail) for w in range(18, 52)]
    counts += [int(tail * (0.97 ** (w - 52))) for w in range(52, 104)]
    return counts + [int(tail / 3)]                                          # 104+


PUBLISHED = {"RA1": published_counts(180, 12.0), "RB2": published_counts(95, 4.0), "NT3": published_counts(40, 1.0)}


def nhs_england_median(counts: list[int], p: float = 0.5) -> float:
    """The published method, from band counts alone: linear interpolation inside the band."""
    total, target, below = sum(counts), p * sum(counts), 0
    assert total
    for band, count in enumerate(counts):
        if below + count >= target:
            return band + (target - below) / count
        below += count
    raise AssertionError("unreachable")


def test_published_week_band_counts_give_back_the_published_figures(store_engine: Engine) -> None:
    rows, next_id = [], iter(range(1, 10**7))
    for feed_id, (provider, counts) in enumerate(PUBLISHED.items(), start=1):
        for band, count in enumerate(counts):
            # Spread each band's pathways over the band's days: band 0 is 0–7 days, band k
            # (k ≥ 1) is 7k+1 … 7k+7 days; the 104+ band sits at 104–110 weeks.
            first = 0 if band == 0 else 7 * band + 1
            width = 8 if band == 0 else 7
            for n in range(count):
                pid = next(next_id)
                rows.append({"id": pid, "feed_id": feed_id, "provider_code": provider, "census_date": CENSUS,
                             "pathway_id": str(pid), "pathway_id_issuer": provider,
                             "rtt_start_date": CENSUS - dt.timedelta(days=first + n % width)})
    invalidate_snapshot()
    with store_engine.begin() as connection:
        for feed_id, provider in enumerate(PUBLISHED, start=1):
            add_feed(connection, feed_id, provider, CENSUS)
        insert_frame(connection, "pathway", pathway_frame(rows))
    snapshot = load_snapshot(store_engine)
    filters = ViewFilter(treatment_function_code="110")
    per_provider = {r["provider_code"]: r for r in site_stats(snapshot, filters, ("provider_code",)).to_dicts()}
    system = site_stats(snapshot, filters, ()).row(0, named=True)
    combined = [sum(c) for c in zip(*PUBLISHED.values(), strict=True)]
    for counts, figures in [*[(PUBLISHED[p], per_provider[p]) for p in PUBLISHED], (combined, system)]:
        published_pct = 100 * sum(counts[:18]) / sum(counts)
        assert figures["open_pathways"] == sum(counts)
        assert round(figures["pct_within_18"], 1) == round(published_pct, 1)
        assert figures["within_18"] == sum(counts[:18])  # exactly the published numerator
        assert abs(figures["median_weeks"] - nhs_england_median(counts)) <= 0.15
        assert abs(figures["p92_weeks"] - nhs_england_median(counts, 0.92)) <= 0.15
        assert figures["over_104"] == counts[-1] and figures["over_52"] == sum(counts[52:])


# --- the feed frame cache --------------------------------------------------------------------


def sorted_frames(snapshot: Snapshot) -> tuple[pl.DataFrame, pl.DataFrame]:
    return (snapshot.current.sort("id"),
            snapshot.history.sort("feed_id", "pathway_id_issuer", "pathway_id", nulls_last=True))


def assert_same_snapshot(cached: Snapshot, store: Engine) -> None:
    fresh = read_snapshot(store)
    for left, right in zip(sorted_frames(cached), sorted_frames(fresh), strict=True):
        assert left.schema == right.schema
        assert left.equals(right)


def test_feed_frame_cache_gives_the_store_snapshot_and_keeps_no_identity(store: Engine, tmp_path: Path) -> None:
    cache = FeedFrameCache(tmp_path / "frames")
    assert_same_snapshot(read_snapshot(store, frame_cache=cache), store)
    folder = cache.folder(store)
    files = sorted(folder.iterdir())
    assert len(files) == 3  # feeds 1, 2 and 3; not the refused feed 4
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600
        columns = set(pl.read_ipc_schema(path))
        assert not columns & (IDENTIFIABLE_COLUMNS | {"person_id", "has_nhs_number", "has_postcode"})
    assert folder.stat().st_mode & 0o777 == 0o700
    # A restarted process reads the files (checked against the store's row counts).
    assert_same_snapshot(read_snapshot(store, frame_cache=FeedFrameCache(tmp_path / "frames")), store)


def test_feed_frame_cache_reads_only_new_feeds_and_drops_files_that_disagree(store: Engine, tmp_path: Path) -> None:
    cache = FeedFrameCache(tmp_path / "frames")
    census_transitions(read_snapshot(store, frame_cache=cache).history)
    with store.begin() as connection:
        add_feed(connection, 5, "RB2", CENSUS + dt.timedelta(weeks=1))
        insert_frame(connection, "pathway", pathway_frame([
            {"id": 50, "feed_id": 5, "provider_code": "RB2", "census_date": CENSUS + dt.timedelta(weeks=1),
             "pathway_id": "B", "pathway_id_issuer": "RB2", "rtt_start_date": dt.date(2025, 1, 1)}]))
    # Feed 3 moved from current to history and comes from the cache; feed 5 from the store.
    after_load = read_snapshot(store, frame_cache=cache)
    assert_same_snapshot(after_load, store)
    assert sorted(after_load.current["id"].to_list()) == [20, 21, 50]
    # Census transitions kept per provider from the first read are exact for the new one.
    order = ["provider_code", "pathway_id", "seq"]
    assert census_transitions(after_load.history).sort(order).equals(
        _build_transitions(after_load.history).sort(order))
    # Rows of a loaded feed never change, so this process does not read feed 1 again...
    with store.begin() as connection:
        connection.execute(sa.text("DELETE FROM pathway WHERE id = 11"))
    assert "GONE" in read_snapshot(store, frame_cache=cache).history["pathway_id"].to_list()
    # ...but a process starting on these files checks them against the store and rereads.
    restarted = read_snapshot(store, frame_cache=FeedFrameCache(tmp_path / "frames"))
    assert "GONE" not in restarted.history["pathway_id"].to_list()
    assert_same_snapshot(restarted, store)
    # A damaged file is a miss, not an error.
    victim = next(p for p in cache.folder(store).iterdir() if p.name.startswith("feed-2-"))
    victim.write_bytes(b"not arrow")
    assert_same_snapshot(read_snapshot(store, frame_cache=FeedFrameCache(tmp_path / "frames")), store)


def test_census_transitions_reused_per_provider_are_exact(store: Engine) -> None:
    history = read_snapshot(store).history
    first = census_transitions(history)
    # A change at one provider only: the other's transitions are reused, the result is exact.
    changed = history.with_columns(
        pl.when((pl.col("provider_code") == "RA1") & (pl.col("pathway_id") == "GONE"))
        .then(pl.lit("RA109")).otherwise(pl.col("site_code")).alias("site_code"))
    for frame in (changed, history):
        reused = census_transitions(frame).sort("provider_code", "pathway_id", "seq")
        assert reused.equals(_build_transitions(frame).sort("provider_code", "pathway_id", "seq"))
    assert first.height == census_transitions(history).height
