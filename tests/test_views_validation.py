"""Validation worklists and data quality: production (Polars) against plain references."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ptl import codes
from ptl.views.data_quality import DATA_QUALITY_COLUMNS, data_quality
from ptl.views.duplicates import duplicate_pathways
from ptl.views.filters import NO_FILTER, ViewFilter
from ptl.views.snapshot import FEED_SCHEMA, ISSUE_SCHEMA, Snapshot
from ptl.views.validation import WORKLIST_COLUMNS, WORKLIST_KINDS, worklist
from tests.test_views_queue import filters_strategy, is_open_rtt, matches
from tests.test_views_sites import assert_rows_equal
from tests.test_views_strategies import CENSUS, PROVIDERS, GeneratedPtl, examples, ptls

ISSUE_KINDS = ("clock_stop_on_open_pathway", "clock_start_after_census", "bad_date", "bad_code")


@st.composite
def systems(draw: st.DrawFn) -> Snapshot:
    """A generated PTL with rejected rows and feed records for its providers."""
    ptl: GeneratedPtl = draw(ptls())
    providers = sorted(set(ptl.current["provider_code"].to_list()))
    issues = [
        {"feed_id": 100 + PROVIDERS.index(p), "provider_code": p, "census_date": CENSUS[p], "row_number": n,
         "column_name": draw(st.sampled_from(["rtt_start_date", "rtt_status", "tci_date"])),
         "kind": draw(st.sampled_from(ISSUE_KINDS)), "reason": "why", "raw_value": "x"}
        for p in providers for n in range(draw(st.integers(0, 3)))
    ]
    feeds = []
    for p in providers:
        feeds.append({"id": 100 + PROVIDERS.index(p), "provider_code": p, "census_date": CENSUS[p],
                      "status": "loaded", "rows_read": 10, "rows_rejected": draw(st.integers(0, 3)),
                      "is_current": True})
        if draw(st.booleans()):  # a later file that was refused
            feeds.append({"id": 200 + PROVIDERS.index(p), "provider_code": p, "census_date": CENSUS[p],
                          "status": "refused", "rows_read": 8, "rows_rejected": 5, "is_current": False})
    return Snapshot(version=1, current=ptl.current, history=ptl.history,
                    feeds=pl.DataFrame([{k: x.get(k) for k in FEED_SCHEMA} for x in feeds], schema=FEED_SCHEMA),
                    issues=pl.DataFrame(issues, schema=ISSUE_SCHEMA))


def rejected(snapshot: Snapshot, kinds: Any, f: ViewFilter) -> list[tuple[Any, ...]]:
    if set(f.as_dict()) - {"provider_code"}:
        return []
    rows = [i for i in snapshot.issues.to_dicts() if kinds(i)
            and f.provider_code in (None, i["provider_code"])]
    rows.sort(key=lambda i: (i["provider_code"], i["feed_id"], i["row_number"]))
    return [("rejected_row", None, i["feed_id"], i["row_number"]) for i in rows]


def reference_worklist(snapshot: Snapshot, kind: str, f: ViewFilter) -> list[tuple[Any, ...]]:
    rows = snapshot.current.to_dicts()

    def pathway(r: dict[str, Any], *extra: Any) -> tuple[Any, ...]:
        return ("pathway", r["id"], r["feed_id"], None, *extra)

    if kind == "duplicate_pathways":
        members = {m["id"]: m for m in duplicate_pathways(snapshot.current).to_dicts()}
        chosen = [r for r in rows if r["id"] in members and matches(r, f, provider=False)]
        if f.provider_code is not None:
            groups = {members[r["id"]]["duplicate_group"] for r in chosen if r["provider_code"] == f.provider_code}
            chosen = [r for r in chosen if members[r["id"]]["duplicate_group"] in groups]
        chosen.sort(key=lambda r: (members[r["id"]]["duplicate_group"], not members[r["id"]]["keep"], r["id"]))
        return [pathway(r, members[r["id"]]["duplicate_group"], members[r["id"]]["keep"]) for r in chosen]
    if kind == "clock_stop_status":
        chosen = sorted((r for r in rows if r["is_rtt"] and r["rtt_status"] in codes.RTT_CLOCK_STOP_STATUSES
                         and matches(r, f)), key=lambda r: (r["provider_code"], r["id"]))
        return [pathway(r) for r in chosen] + rejected(
            snapshot, lambda i: i["kind"] == "clock_stop_on_open_pathway", f)
    if kind == "clock_start":
        chosen = sorted((r for r in rows if r["is_rtt"] and (r["rtt_start_date"] is None
                                                               or r["rtt_start_date"] > r["census_date"])
                         and matches(r, f)), key=lambda r: (r["provider_code"], r["id"]))
        return [pathway(r) for r in chosen] + rejected(
            snapshot, lambda i: i["kind"] == "clock_start_after_census"
            or (i["kind"] == "bad_date" and i["column_name"] == "rtt_start_date"), f)
    if kind == "not_validated":
        chosen = []
        for r in rows:
            band = r["week_band"]
            last = r["last_validated_date"]
            if (is_open_rtt(r) and band is not None and band >= 12 and matches(r, f)
                    and (last is None or (r["census_date"] - last).days > 84)):
                chosen.append((52 if band >= 52 else 26 if band >= 26 else 12, r))
        chosen.sort(key=lambda t: (-t[0], -t[1]["days_waited"], t[1]["id"]))
        return [pathway(r, tier) for tier, r in chosen]
    if kind == "pcode_missing":
        chosen = sorted((r for r in rows if is_open_rtt(r) and r["waiting_list_type"] == "IRTT"
                         and r["clinical_priority"] is None and matches(r, f)),
                        key=lambda r: (r["days_waited"] is None, -(r["days_waited"] or 0), r["id"]))
        return [pathway(r) for r in chosen]
    raise AssertionError(kind)


def produced_keys(frame: pl.DataFrame, kind: str) -> list[tuple[Any, ...]]:
    extra = {"duplicate_pathways": ("duplicate_group", "keep"), "not_validated": ("wait_tier",)}.get(kind, ())
    return [(r["source"], r["id"], r["feed_id"], r["row_number"], *[r[e] for e in extra])
            for r in frame.to_dicts()]


@settings(max_examples=examples(40), deadline=None)
@given(systems(), filters_strategy)
def test_worklists_match_reference(snapshot: Snapshot, f: ViewFilter) -> None:
    for kind in WORKLIST_KINDS[:-1]:
        produced = worklist(snapshot, kind, f)
        assert produced.columns == list(WORKLIST_COLUMNS), kind
        assert produced_keys(produced, kind) == reference_worklist(snapshot, kind, f), kind


def test_identity_conflicts_leave_identifying_columns_out_and_follow_the_provider() -> None:
    empty = Snapshot(version=0, current=pl.DataFrame(), history=pl.DataFrame())
    assert worklist(empty, "identity_conflicts").height == 0
    review = pl.DataFrame({"id": [1, 2], "provider_code": ["RA1", "RB2"], "reason": ["dob differs", "two persons"]})
    snapshot = Snapshot(version=1, current=pl.DataFrame(), history=pl.DataFrame(), identity_review=review)
    assert worklist(snapshot, "identity_conflicts", ViewFilter(provider_code="RB2"))["id"].to_list() == [2]


def reference_data_quality(snapshot: Snapshot, f: ViewFilter, today: dt.date) -> list[dict[str, Any]]:
    rows = [r for r in snapshot.current.to_dicts() if matches(r, f)]
    members = {m["id"] for m in duplicate_pathways(snapshot.current).to_dicts()}
    feeds = [x for x in snapshot.feeds.to_dicts() if f.provider_code in (None, x["provider_code"])]
    providers = sorted({x["provider_code"] for x in feeds} | {r["provider_code"] for r in rows})
    result = []
    for p in providers:
        mine = [r for r in rows if r["provider_code"] == p]
        open_rtt = [r for r in mine if is_open_rtt(r)]
        last = max((x for x in feeds if x["provider_code"] == p), key=lambda x: x["id"], default=None)
        current_feed = [x for x in feeds if x["provider_code"] == p and x["is_current"]]
        census = max((r["census_date"] for r in mine), default=None) or (
            current_feed[0]["census_date"] if current_feed else None)

        def share(test: Any, rows: list[dict[str, Any]] = mine) -> float | None:
            return sum(1 for r in rows if test(r)) / len(rows) if rows else None

        result.append({
            "provider_code": p,
            "current_feed_id": max((r["feed_id"] for r in mine), default=None),
            "census_date": census, "pathways": len(mine), "open_rtt_pathways": len(open_rtt),
            "ethnicity_known_share": share(lambda r: r["ethnic_category"] not in (None, "Z", "99")),
            "nhs_number_share": share(lambda r: r["has_nhs_number"]),
            "postcode_share": share(lambda r: r["has_postcode"]),
            "lsoa_share": share(lambda r: r["lsoa11"] is not None),
            "imd_share": share(lambda r: r["imd_quintile"] is not None),
            "duplicate_share": share(lambda r: r["id"] in members, open_rtt),
            "last_feed_id": last and last["id"], "last_feed_status": last and last["status"],
            "last_feed_census_date": last and last["census_date"],
            "last_feed_rows_read": last and last["rows_read"],
            "last_feed_rows_rejected": last and last["rows_rejected"],
            "rejected_share": last and last["rows_rejected"] / last["rows_read"],
            "staleness_days": None if census is None else (today - census).days,
        })
    return result


@settings(max_examples=examples(40), deadline=None)
@given(systems(), filters_strategy)
def test_data_quality_matches_reference(snapshot: Snapshot, f: ViewFilter) -> None:
    today = dt.date(2025, 3, 10)
    produced = data_quality(snapshot, f, today)
    assert produced.columns == list(DATA_QUALITY_COLUMNS)
    assert_rows_equal(produced.to_dicts(), reference_data_quality(snapshot, f, today))


def test_data_quality_of_an_empty_store() -> None:
    from ptl.views.snapshot import CURRENT_SCHEMA, HISTORY_SCHEMA
    empty = Snapshot(version=0, current=pl.DataFrame(schema=CURRENT_SCHEMA),
                     history=pl.DataFrame(schema=HISTORY_SCHEMA))
    assert data_quality(empty, NO_FILTER).height == 0
