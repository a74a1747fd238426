"""The shared queue and duplicate pathways: production (Polars) against plain references."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptl import codes
from ptl.views.duplicates import (
    DUPLICATE_COLUMNS,
    REASON_SAME_KEY,
    REASON_SAME_PERSON,
    duplicate_pathways,
    duplicate_pathways_by_rule,
)
from ptl.views.filters import InvalidFilter, ViewFilter
from ptl.views.queue import QUEUE_COLUMNS, cursor_of, position_after, queue_page, shared_queue
from tests.test_views_strategies import (
    PROVIDERS,
    TREATMENT_FUNCTIONS,
    GeneratedPtl,
    derived,
    examples,
    frame_of,
    ptls,
)

BANDS = {"P1": {"P1a", "P1b"}, "deferred": {"P5", "P6"}, "unknown": {None},
         **{c: {c} for c in codes.CLINICAL_PRIORITIES}}

filters_strategy = st.builds(
    ViewFilter,
    treatment_function_code=st.one_of(st.none(), st.sampled_from(TREATMENT_FUNCTIONS)),
    provider_code=st.one_of(st.none(), st.sampled_from(PROVIDERS)),
    site_code=st.one_of(st.none(), st.sampled_from(["RA101", "RB202", "NT301"])),
    priority=st.one_of(st.none(), st.sampled_from(sorted(BANDS))),
    waiting_list_type=st.one_of(st.none(), st.sampled_from(["IRTT", "ORTT"])),
)


def is_open_rtt(row: dict[str, Any]) -> bool:
    return bool(row["is_rtt"]) and row["rtt_status"] not in codes.RTT_CLOCK_STOP_STATUSES


def matches(row: dict[str, Any], f: ViewFilter, provider: bool = True) -> bool:
    """The filter, field by field (reference)."""
    checks = [
        f.treatment_function_code is None or row["treatment_function_code"] == f.treatment_function_code,
        f.site_code is None or row["site_code"] == f.site_code,
        f.waiting_list_type is None or row["waiting_list_type"] == f.waiting_list_type,
        f.procedure_code is None or row["procedure_code"] == f.procedure_code,
        f.priority is None or row["clinical_priority"] in BANDS[f.priority],
        not provider or f.provider_code is None or row["provider_code"] == f.provider_code,
    ]
    return all(checks)


# --- duplicates -----------------------------------------------------------------------------


def reference_duplicates(rows: list[dict[str, Any]]) -> dict[int, tuple[int, bool, str]]:
    """Union-find over pairwise links; id → (group = smallest id, keep, reason)."""
    rows = [r for r in rows if is_open_rtt(r)]
    parent = {r["id"]: r["id"] for r in rows}

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    link_kinds: dict[int, set[str]] = {r["id"]: set() for r in rows}
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if a["provider_code"] == b["provider_code"]:
                continue
            kinds = set()
            if (a["pathway_id_issuer"], a["pathway_id"]) == (b["pathway_id_issuer"], b["pathway_id"]):
                kinds.add("key")
            if a["person_id"] is not None and (a["person_id"], a["treatment_function_code"]) == (
                    b["person_id"], b["treatment_function_code"]):
                kinds.add("person")
            if kinds:
                parent[find(a["id"])] = find(b["id"])
                link_kinds[a["id"]] |= kinds
                link_kinds[b["id"]] |= kinds
    components: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        components.setdefault(find(r["id"]), []).append(r)
    result = {}
    for members in components.values():
        if len(members) < 2:
            continue
        kinds = set().union(*(link_kinds[m["id"]] for m in members))
        reason = "; ".join(text for kind, text in (("key", REASON_SAME_KEY), ("person", REASON_SAME_PERSON))
                           if kind in kinds)
        best = min(members, key=lambda m: (m["rtt_start_date"] is None, m["rtt_start_date"] or 0,
                                           m["days_waited"] is None, -(m["days_waited"] or 0), m["id"]))
        group = min(m["id"] for m in members)
        for m in members:
            result[m["id"]] = (group, m["id"] == best["id"], reason)
    return result


@settings(max_examples=examples(80), deadline=None)
@given(ptls())
def test_duplicate_rule_matches_union_find_reference(ptl: GeneratedPtl) -> None:
    produced = duplicate_pathways_by_rule(ptl.current)
    got = {r["id"]: (r["duplicate_group"], r["keep"], r["reason"]) for r in produced.iter_rows(named=True)}
    assert got == reference_duplicates(ptl.current.to_dicts())


def test_duplicates_join_a_chain_of_key_and_person_links() -> None:
    census = {"census_date": __import__("datetime").date(2025, 3, 2), "waiting_list_type": "IRTT",
              "rtt_status": "20", "treatment_function_code": "110"}
    import datetime as dt
    rows = [
        derived({**census, "id": 1, "provider_code": "RA1", "pathway_id_issuer": "RA1", "pathway_id": "X",
                 "person_id": None, "rtt_start_date": dt.date(2024, 6, 1)}),
        derived({**census, "id": 2, "provider_code": "RB2", "pathway_id_issuer": "RA1", "pathway_id": "X",
                 "person_id": 7, "rtt_start_date": dt.date(2024, 5, 1)}),
        derived({**census, "id": 3, "provider_code": "NT3", "pathway_id_issuer": "NT3", "pathway_id": "Y",
                 "person_id": 7, "rtt_start_date": dt.date(2024, 7, 1)}),
        derived({**census, "id": 4, "provider_code": "NT3", "pathway_id_issuer": "NT3", "pathway_id": "Z",
                 "person_id": 8, "rtt_start_date": dt.date(2024, 7, 1)}),
    ]
    for found in (duplicate_pathways_by_rule(frame_of(rows)), duplicate_pathways(frame_of(rows))):
        found = found.sort("id")
        assert found["id"].to_list() == [1, 2, 3]
        assert found["duplicate_group"].n_unique() == 1
        assert found["keep"].to_list() == [False, True, False]  # earliest clock start
    assert duplicate_pathways_by_rule(frame_of(rows))["reason"][0] == f"{REASON_SAME_KEY}; {REASON_SAME_PERSON}"
    queue = shared_queue(frame_of(rows))
    assert queue["id"].to_list() == [2, 4]
    assert queue.filter(pl.col("id") == 2)["also_at"].to_list() == [["NT3", "RA1"]]


@settings(max_examples=examples(40), deadline=None)
@given(ptls())
def test_duplicates_in_use_keep_the_contract(ptl: GeneratedPtl) -> None:
    """Whichever rule is installed (the identity package's or the views' own): one row per
    open RTT pathway, groups spanning two or more providers, exactly one kept per group."""
    found = duplicate_pathways(ptl.current)
    assert found.columns == list(DUPLICATE_COLUMNS)
    assert found["id"].is_unique().all()
    rows = found.join(ptl.current, on="id")
    assert rows.height == found.height
    assert all(is_open_rtt(r) for r in rows.to_dicts())
    per_group = rows.group_by("duplicate_group").agg(
        pl.col("keep").sum().alias("kept"), pl.col("provider_code").n_unique().alias("providers"))
    assert (per_group["kept"] == 1).all() and (per_group["providers"] >= 2).all()


def test_overlapping_identity_groups_become_one_need() -> None:
    """The identity package may put a pathway in a same-key group and a same-person group;
    the views join them into one need with one pathway kept."""
    import datetime as dt

    from ptl.views.duplicates import _conform
    base = {"census_date": dt.date(2025, 3, 2), "waiting_list_type": "IRTT", "rtt_status": "20",
            "treatment_function_code": "110", "pathway_id_issuer": "RA1", "person_id": 1}
    current = frame_of([
        derived({**base, "id": 1, "provider_code": "RA1", "pathway_id": "A", "rtt_start_date": dt.date(2024, 1, 1)}),
        derived({**base, "id": 2, "provider_code": "RB2", "pathway_id": "A", "rtt_start_date": dt.date(2024, 2, 1)}),
        derived({**base, "id": 3, "provider_code": "NT3", "pathway_id": "C", "rtt_start_date": dt.date(2023, 12, 1)}),
        derived({**base, "id": 4, "provider_code": "NT3", "pathway_id": "D", "waiting_list_type": "INON",
                 "rtt_start_date": dt.date(2023, 1, 1)}),
    ])
    found = pl.DataFrame({"group_key": ["key:A", "key:A", "person:1", "person:1", "key:D", "key:D"],
                          "id": [1, 2, 2, 3, 4, 1], "keep": [True, False, False, True, True, False],
                          "reason": ["same key", "same key", "same person", "same person", "k", "k"]})
    conformed = _conform(found, current)
    assert conformed is not None
    assert conformed.sort("id").to_dicts() == [
        {"id": 1, "duplicate_group": 1, "keep": False, "reason": "same key; same person"},
        {"id": 2, "duplicate_group": 1, "keep": False, "reason": "same key; same person"},
        {"id": 3, "duplicate_group": 1, "keep": True, "reason": "same key; same person"},
    ]


# --- the shared queue ----------------------------------------------------------------------


def reference_needs(rows: list[dict[str, Any]], f: ViewFilter) -> list[dict[str, Any]]:
    """One row per open RTT need under `f`, with `also_at`: the union-find reference's groups
    (not the production rule), the kept pathway standing for its group; a provider filter
    matches a need held there under either pathway, every other filter the kept pathway."""
    members = reference_duplicates(rows)
    by_id = {r["id"]: r for r in rows}
    dropped = {i for i, (_group, keep, _reason) in members.items() if not keep}
    needs = []
    for row in rows:
        if not is_open_rtt(row) or row["id"] in dropped:
            continue
        group = members[row["id"]][0] if row["id"] in members else None
        also_at = sorted({by_id[m]["provider_code"] for m, (g, _k, _r) in members.items() if g == group}
                         - {row["provider_code"]}) if group is not None else []
        if not matches(row, f, provider=False):
            continue
        if f.provider_code is not None and row["provider_code"] != f.provider_code and f.provider_code not in also_at:
            continue
        needs.append({**row, "also_at": also_at})
    return needs


def reference_queue(current: pl.DataFrame, f: ViewFilter) -> list[dict[str, Any]]:
    queue = []
    for row in reference_needs(current.to_dicts(), f):
        days = row["days_waited"]
        queue.append({
            **row, "weeks_waited": row["week_band"],
            "deferred": row["clinical_priority"] in ("P5", "P6"),
            "breach_18": None if days is None else days > 126,
            "breach_52": None if days is None else days >= 365,
            "breach_65": None if days is None else days >= 456,
            "breach_78": None if days is None else days >= 547,
            "breach_104": None if days is None else days >= 729,
        })
    queue.sort(key=lambda r: (r["priority_rank"], r["days_waited"] is None, -(r["days_waited"] or 0), r["id"]))
    return [{**r, "position": i + 1} for i, r in enumerate(queue)]


@settings(max_examples=examples(60), deadline=None)
@given(ptls(), filters_strategy)
def test_shared_queue_matches_reference(ptl: GeneratedPtl, f: ViewFilter) -> None:
    produced = shared_queue(ptl.current, f)
    assert produced.columns == list(QUEUE_COLUMNS)
    expected = [{c: r[c] for c in QUEUE_COLUMNS} for r in reference_queue(ptl.current, f)]
    assert produced.to_dicts() == expected


def sort_key(rank: int, days: int | None, row_id: int) -> tuple[int, bool, int, int]:
    return (rank, days is None, -(days or 0), row_id)


@settings(max_examples=examples(50), deadline=None)
@given(ptls(), st.integers(0, 40), st.integers(1, 5), st.integers(1, 7),
       st.one_of(st.none(), st.integers(0, 800)), st.integers(0, 10_001))
def test_keyset_pages_follow_the_order(ptl: GeneratedPtl, index: int, limit: int, rank: int,
                                       days: int | None, row_id: int) -> None:
    queue = shared_queue(ptl.current)
    if queue.height:
        row = queue.row(index % queue.height, named=True)
        page = queue_page(queue, cursor_of(row), limit)
        assert page.to_dicts() == queue.slice(index % queue.height + 1, limit).to_dicts()
    # Any cursor, even one no longer in the queue: the page starts after every row at or before it.
    keys = [sort_key(r["priority_rank"], r["days_waited"], r["id"]) for r in queue.iter_rows(named=True)]
    assert position_after(queue, (rank, days, row_id)) == sum(k <= sort_key(rank, days, row_id) for k in keys)
    assert queue_page(queue, None, limit).to_dicts() == queue.head(limit).to_dicts()


def test_filters_refuse_values_no_pathway_has() -> None:
    with pytest.raises(InvalidFilter, match="priority 'P9'"):
        ViewFilter(priority="P9")
    with pytest.raises(InvalidFilter, match="waiting list type"):
        ViewFilter(waiting_list_type="PTLI")
    with pytest.raises(InvalidFilter, match="treatment function"):
        ViewFilter(treatment_function_code="999")


def test_every_filter_column_is_a_queue_column() -> None:
    # A filtered queue is the sorted whole queue filtered: it needs every column a filter reads.
    from ptl.views.filters import FILTER_COLUMNS
    from ptl.views.queue import QUEUE_COLUMNS

    assert set(FILTER_COLUMNS) <= set(QUEUE_COLUMNS)
