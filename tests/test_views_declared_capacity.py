"""Declared capacity in site statistics: which declaration is in force, which rows it matches,
and the figures computed from it, against a plain reference (no store: frames only)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptl.declared_capacity import DECLARATION_SCHEMA, in_force, with_status
from ptl.views.filters import ViewFilter
from ptl.views.sites import DECLARED_COLUMNS, SITE_STATS_COLUMNS, site_stats, with_declared_capacity
from ptl.views.snapshot import Snapshot
from tests.test_views_queue import reference_needs
from tests.test_views_sites import approx_equal
from tests.test_views_strategies import (
    CENSUS,
    PROVIDERS,
    TREATMENT_FUNCTIONS,
    GeneratedPtl,
    derived,
    examples,
    frame_of,
    ptls,
)

DECLARED_AT = dt.datetime(2025, 1, 1, 9, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)


def declaration(provider: str, weekly: int, *, site: str | None = None, tfc: str | None = None,
                valid_from: dt.date = dt.date(2025, 1, 1), declared_at: dt.datetime = DECLARED_AT,
                withdrawn: bool = False, id: int | None = None) -> dict[str, Any]:
    return {"id": next(_ids) if id is None else id, "provider_code": provider, "site_code": site,
            "treatment_function_code": tfc, "weekly_capacity": weekly, "valid_from": valid_from,
            "declared_by": "test", "declared_by_organisation": None, "declared_at": declared_at, "note": None,
            "withdrawn_at": declared_at + dt.timedelta(hours=1) if withdrawn else None,
            "withdrawn_by": "test" if withdrawn else None}


def declarations_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=DECLARATION_SCHEMA, orient="row") if rows else pl.DataFrame(
        schema=DECLARATION_SCHEMA)


# --- the plain reference ---------------------------------------------------------------------


def reference_in_force(rows: list[dict[str, Any]], census: dict[str, dt.date], provider: str,
                       site: str | None, tfc: str | None) -> int | None:
    """The declaration in force for one scope, written out."""
    candidates = [d for d in rows if d["withdrawn_at"] is None and d["provider_code"] == provider
                  and d["site_code"] == site and d["treatment_function_code"] == tfc
                  and provider in census and d["valid_from"] <= census[provider]]
    if not candidates:
        return None
    return int(max(candidates, key=lambda d: (d["valid_from"], d["declared_at"], d["id"]))["weekly_capacity"])


def reference_declared(current: pl.DataFrame, rows: list[dict[str, Any]], f: ViewFilter,
                       by: tuple[str, ...]) -> dict[tuple[Any, ...], int | None]:
    """Declared weekly capacity per row key, by the rules of `ptl.views.sites`."""
    census = {r["provider_code"]: r["census_date"] for r in current.to_dicts()}
    open_rows = reference_needs(current.to_dicts(), f)
    narrowed = f.priority is not None or f.waiting_list_type is not None or f.procedure_code is not None
    tfc = f.treatment_function_code

    def site_value(provider: str, site: str | None) -> int | None:
        if narrowed or site is None:
            return None
        return reference_in_force(rows, census, provider, site, tfc)

    def all_known(values: list[int | None]) -> int | None:
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    def provider_value(provider: str) -> int | None:
        if narrowed:
            return None
        if f.site_code is None:
            whole = reference_in_force(rows, census, provider, None, tfc)
            if whole is not None:
                return whole
        return all_known([site_value(provider, s) for s in {r["site_code"] for r in open_rows
                                                           if r["provider_code"] == provider}])

    if by == ("provider_code", "site_code"):
        return {(r["provider_code"], r["site_code"]): site_value(r["provider_code"], r["site_code"]) for r in open_rows}
    if by == ("provider_code",):
        return {(r["provider_code"],): provider_value(r["provider_code"]) for r in open_rows}
    providers = {r["provider_code"] for r in open_rows}
    return {(): all_known([provider_value(p) for p in providers])} if providers else {}


def check(snapshot: Snapshot, rows: list[dict[str, Any]], f: ViewFilter, by: tuple[str, ...]) -> pl.DataFrame:
    """Production against the reference, for every row and every declared figure."""
    stats = site_stats(snapshot, f, by)
    produced = with_declared_capacity(stats, snapshot, declarations_frame(rows), f, by)
    assert produced.columns == [*by, *SITE_STATS_COLUMNS, *DECLARED_COLUMNS]
    # The history-based figures are untouched.
    assert produced.select(*by, *SITE_STATS_COLUMNS).equals(stats)
    expected = reference_declared(snapshot.current, rows, f, by)
    assert len(expected) == produced.height
    for row in produced.to_dicts():
        declared = expected[tuple(row[k] for k in by)]
        assert row["declared_weekly_capacity"] == declared, (row, declared)
        additions = row["weekly_additions"]
        assert approx_equal(row["declared_load"],
                            None if declared is None or additions is None else additions / declared)
        assert approx_equal(row["declared_expected_wait_weeks"],
                            None if declared is None else row["capacity_queue"] / declared)
    return produced


# --- a worked example --------------------------------------------------------------------------

RA_CENSUS = dt.date(2025, 3, 2)


def _pathway(provider: str, n: int, site: str | None, tfc: str, census: dt.date, days: int = 70,
             priority: str | None = "P3") -> dict[str, Any]:
    return derived({"provider_code": provider, "census_date": census, "pathway_id": f"P{n}",
                    "pathway_id_issuer": provider, "site_code": site, "treatment_function_code": tfc,
                    "waiting_list_type": "IRTT", "rtt_status": "20", "clinical_priority": priority,
                    "rtt_start_date": census - dt.timedelta(days=days)})


def worked_system() -> Snapshot:
    """RA1: sites RA101 (110 and 130) and RA102 (110); RB2: RB201 (110) and one pathway with no
    site; a week earlier each had fewer pathways, so additions are known."""
    now = [
        _pathway("RA1", 1, "RA101", "110", RA_CENSUS), _pathway("RA1", 2, "RA101", "110", RA_CENSUS),
        _pathway("RA1", 3, "RA101", "130", RA_CENSUS), _pathway("RA1", 4, "RA102", "110", RA_CENSUS),
        _pathway("RA1", 5, "RA102", "110", RA_CENSUS, priority="P5"),
        _pathway("RB2", 1, "RB201", "110", RA_CENSUS), _pathway("RB2", 2, None, "110", RA_CENSUS),
    ]
    before = [derived({**r, "census_date": RA_CENSUS - dt.timedelta(weeks=1)}) for r in now
              if r["pathway_id"] in ("P1", "P3")]
    current = frame_of([{**r, "id": i, "feed_id": 1} for i, r in enumerate(now, start=1)])
    from ptl.views.snapshot import HISTORY_SCHEMA

    return Snapshot(version=1, current=current, history=frame_of(now, HISTORY_SCHEMA).vstack(
        frame_of(before, HISTORY_SCHEMA)))


def test_the_declaration_in_force_is_the_latest_valid_on_the_census() -> None:
    census = pl.DataFrame({"provider_code": ["RA1"], "census_date": [RA_CENSUS]})
    late = DECLARED_AT + dt.timedelta(days=1)
    rows = [
        declaration("RA1", 10, tfc="110", valid_from=dt.date(2025, 1, 1), id=1),
        declaration("RA1", 20, tfc="110", valid_from=dt.date(2025, 2, 1), id=2),        # supersedes 1
        declaration("RA1", 30, tfc="110", valid_from=dt.date(2025, 3, 3), id=3),        # after the census
        declaration("RA1", 40, tfc="130", valid_from=dt.date(2025, 2, 1), declared_at=late, id=4),
        declaration("RA1", 50, tfc="130", valid_from=dt.date(2025, 2, 1), id=5),        # tie: 4 was later
        declaration("RA1", 60, valid_from=dt.date(2025, 1, 1), id=6),
        declaration("RA1", 70, valid_from=dt.date(2025, 2, 1), withdrawn=True, id=7),   # withdrawn: 6 again
        declaration("RB2", 80, valid_from=dt.date(2025, 1, 1), id=8),                   # no census loaded
        declaration("RA1", 90, tfc="101", valid_from=RA_CENSUS, id=9),                  # on the census day
    ]
    frame = declarations_frame(rows)
    chosen = in_force(frame, census).sort("id")
    assert chosen.select("id", "weekly_capacity").rows() == [(2, 20), (4, 40), (6, 60), (9, 90)]
    statuses = dict(with_status(frame, census, today=dt.date(2025, 3, 10)).select("id", "status").iter_rows())
    assert statuses == {1: "superseded", 2: "in_force", 3: "scheduled", 4: "in_force", 5: "superseded",
                        6: "in_force", 7: "withdrawn", 8: "in_force", 9: "in_force"}


def test_site_and_provider_rows_match_declarations_by_scope() -> None:
    snapshot = worked_system()
    rows = [
        declaration("RA1", 12, site="RA101", tfc="110"),
        declaration("RA1", 8, site="RA102", tfc="110"),
        declaration("RA1", 30, site="RA101"),   # every specialty at RA101 only
        declaration("RB2", 50, tfc="110"),      # RB2 as a whole, for 110
        declaration("RB2", 9, site="RB201", tfc="110"),
    ]
    tfc110 = ViewFilter(treatment_function_code="110")
    by_site = {(r["provider_code"], r["site_code"]): r for r in
               check(snapshot, rows, tfc110, ("provider_code", "site_code")).to_dicts()}
    assert by_site[("RA1", "RA101")]["declared_weekly_capacity"] == 12
    assert by_site[("RA1", "RA102")]["declared_weekly_capacity"] == 8
    assert by_site[("RB2", None)]["declared_weekly_capacity"] is None   # no site: never matched
    ra101 = by_site[("RA1", "RA101")]
    assert ra101["capacity_queue"] == 2 and ra101["declared_expected_wait_weeks"] == pytest.approx(2 / 12)
    assert ra101["weekly_additions"] == 1 and ra101["declared_load"] == pytest.approx(1 / 12)
    by_provider = {r["provider_code"]: r for r in check(snapshot, rows, tfc110, ("provider_code",)).to_dicts()}
    # RA1 has no provider-wide 110 declaration: its sites add up (both declared).
    assert by_provider["RA1"]["declared_weekly_capacity"] == 20
    # RB2's own provider-wide declaration wins over its site's.
    assert by_provider["RB2"]["declared_weekly_capacity"] == 50
    system = check(snapshot, rows, tfc110, ()).row(0, named=True)
    assert system["declared_weekly_capacity"] == 70
    # Every specialty: only RA101 declared one, so RA1 (RA102 undeclared) and the system are unknown.
    everything = {r["provider_code"]: r for r in check(snapshot, rows, ViewFilter(), ("provider_code",)).to_dicts()}
    assert everything["RA1"]["declared_weekly_capacity"] is None
    assert check(snapshot, rows, ViewFilter(), ()).row(0, named=True)["declared_weekly_capacity"] is None
    # A site filter narrows a provider row to that site: the provider-wide figure no longer fits.
    rb_site = check(snapshot, rows, ViewFilter(treatment_function_code="110", site_code="RB201"), ("provider_code",))
    assert rb_site.row(0, named=True)["declared_weekly_capacity"] == 9
    # A slice of the queue (priority, list type) is never compared with a whole declaration.
    sliced = check(snapshot, rows, ViewFilter(treatment_function_code="110", priority="P3"), ("provider_code",))
    assert sliced.get_column("declared_weekly_capacity").null_count() == sliced.height


def test_no_declarations_leave_every_declared_figure_null() -> None:
    snapshot = worked_system()
    for by in (("provider_code", "site_code"), ("provider_code",), ()):
        produced = check(snapshot, [], ViewFilter(), by)
        assert produced.select(DECLARED_COLUMNS).null_count().row(0) == (produced.height,) * 3


# --- generated systems -------------------------------------------------------------------------

SITES = (None, *[f"{p}0{s}" for p in PROVIDERS for s in (1, 2)])


@st.composite
def declared(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Up to two declarations per scope (so sums over sites and providers are often complete),
    some superseded, some valid only after the census, some withdrawn, some tied."""
    rows = []
    dense = draw(st.booleans())
    for provider in PROVIDERS:
        for site, tfc in itertools.product((None, f"{provider}01", f"{provider}02"), (None, *TREATMENT_FUNCTIONS)):
            for _ in range(draw(st.integers(1, 2) if dense else st.integers(0, 1))):
                rows.append(declaration(
                    provider, draw(st.integers(1, 400)), site=site, tfc=tfc,
                    valid_from=CENSUS[provider] + dt.timedelta(days=draw(st.sampled_from((-60, -7, -7, 0, 7)))),
                    declared_at=DECLARED_AT + dt.timedelta(hours=draw(st.integers(0, 2))),
                    withdrawn=draw(st.integers(0, 7)) == 0, id=len(rows) + 1))
    return rows


declared_filters = st.builds(
    ViewFilter,
    treatment_function_code=st.one_of(st.none(), st.sampled_from(TREATMENT_FUNCTIONS)),
    provider_code=st.one_of(st.none(), st.sampled_from(PROVIDERS)),
    site_code=st.one_of(st.none(), st.none(), st.sampled_from(["RA101", "RB202"])),
    priority=st.sampled_from([None, None, None, "P3"]),
    waiting_list_type=st.sampled_from([None, None, None, "IRTT"]),
)


@settings(max_examples=examples(40), deadline=None)
@given(ptls(), declared(), declared_filters,
       st.sampled_from([("provider_code", "site_code"), ("provider_code",), ()]))
def test_declared_capacity_matches_reference(ptl: GeneratedPtl, rows: list[dict[str, Any]], f: ViewFilter,
                                             by: tuple[str, ...]) -> None:
    check(ptl.snapshot(), rows, f, by)
