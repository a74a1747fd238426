"""Site statistics and wait equalisation: production (Polars) against plain references."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ptl.views.equalisation import MOVE_COLUMNS, PATIENT_COLUMNS, SITE_COLUMNS, equalisation
from ptl.views.filters import ViewFilter
from ptl.views.queue import shared_queue
from ptl.views.sites import SITE_STATS_COLUMNS, site_stats
from ptl.views.waits import interpolated_weeks
from tests.test_views_queue import filters_strategy, is_open_rtt, matches, reference_needs
from tests.test_views_strategies import GeneratedPtl, examples, ptls


def interpolate(bands: list[int], p: float) -> float | None:
    """NHS England's grouped-data percentile, written out: walk the week bands in order."""
    if not bands:
        return None
    counts = Counter(bands)
    target = p * len(bands)
    below = 0
    for band in sorted(counts):
        if below + counts[band] >= target:
            return band + (target - below) / counts[band]
        below += counts[band]
    raise AssertionError("unreachable")


def approx_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def assert_rows_equal(produced: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(produced) == len(expected), (produced, expected)
    for got, want in zip(produced, expected, strict=True):
        bad = {k: (got[k], want[k]) for k in want if not approx_equal(got[k], want[k])}
        assert not bad, (got, bad)


def capacity(row: dict[str, Any]) -> bool:
    return is_open_rtt(row) and row["clinical_priority"] not in ("P5", "P6")


def reference_flows(history: list[dict[str, Any]], f: ViewFilter,
                    key: Any) -> tuple[dict[Any, float | None], dict[Any, float | None], dict[str, float]]:
    """Weekly additions/removals per group (key(row) → group) and history weeks per provider."""
    censuses: dict[str, set[Any]] = defaultdict(set)
    for row in history:
        censuses[row["provider_code"]].add(row["census_date"])
    weeks = {p: (max(d) - min(d)).days / 7 for p, d in censuses.items()}
    additions: dict[Any, int] = defaultdict(int)
    removals: dict[Any, int] = defaultdict(int)
    groups = {key(r) for r in history if is_open_rtt(r) and matches(r, f)}
    for provider, dates in censuses.items():
        ordered = sorted(dates)
        at = {d: {(r["pathway_id_issuer"], r["pathway_id"]): r for r in history
                  if r["provider_code"] == provider and r["census_date"] == d and capacity(r) and matches(r, f)}
              for d in ordered}
        for before, after in zip(ordered, ordered[1:], strict=False):
            for k in at[after].keys() - at[before].keys():
                additions[key(at[after][k])] += 1
            for k in at[before].keys() - at[after].keys():
                removals[key(at[before][k])] += 1
    provider_of = {g: g[0] for g in groups}
    rate_a = {g: (additions[g] / weeks[provider_of[g]]) if weeks[provider_of[g]] > 0 else None for g in groups}
    rate_r = {g: (removals[g] / weeks[provider_of[g]]) if weeks[provider_of[g]] > 0 else None for g in groups}
    return rate_a, rate_r, weeks


def reference_site_stats(ptl: GeneratedPtl, f: ViewFilter, by: tuple[str, ...]) -> list[dict[str, Any]]:
    # One row per need, exactly the shared queue's rows (a need on two lists counts once, at its
    # kept pathway's provider and site).
    current = reference_needs(ptl.current.to_dicts(), f)
    history = ptl.history.to_dicts()
    fine = ("provider_code", *[k for k in by if k != "provider_code"])
    rate_a, rate_r, weeks = reference_flows(history, f, lambda r: tuple(r[k] for k in fine))
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in current:
        groups[tuple(row[k] for k in by)].append(row)
    result = []
    for group, rows in groups.items():
        days = [r["days_waited"] for r in rows if r["days_waited"] is not None]
        fine_groups = [g for g in rate_a if tuple(g[fine.index(k)] for k in by) == group]
        adds = [rate_a[g] for g in fine_groups if rate_a[g] is not None]
        rems = [rate_r[g] for g in fine_groups if rate_r[g] is not None]
        a = sum(adds) if adds else None
        r = sum(rems) if rems else None
        queue = sum(capacity(x) for x in rows)
        mean = sum(days) / len(days) / 7 if days else None
        target = None if a is None else a * 18 / 4
        row = {
            **dict(zip(by, group, strict=True)),
            "open_pathways": len(rows),
            "known_clock_start": len(days),
            "median_weeks": interpolate([x["week_band"] for x in rows if x["week_band"] is not None], 0.5),
            "p92_weeks": interpolate([x["week_band"] for x in rows if x["week_band"] is not None], 0.92),
            "mean_weeks": mean,
            "within_18": sum(d <= 126 for d in days),
            "pct_within_18": 100 * sum(d <= 126 for d in days) / len(days) if days else None,
            "over_52": sum(d >= 365 for d in days),
            "pct_over_52": 100 * sum(d >= 365 for d in days) / len(days) if days else None,
            "over_65": sum(d >= 456 for d in days),
            "over_78": sum(d >= 547 for d in days),
            "over_104": sum(d >= 729 for d in days),
            "capacity_queue": queue,
            "weekly_additions": a,
            "weekly_removals": r,
            "history_weeks": max((weeks[g[0]] for g in fine_groups), default=None),
            "load": a / r if (a is not None and r) else None,
            "expected_wait_weeks": queue / r if r else None,
            "target_queue_size": target,
            "relief_capacity": None if a is None else a + (queue - target) / 26,  # type: ignore[operator]
            "pressure": None if mean is None else 2 * mean / 18,
        }
        result.append(row)
    result.sort(key=lambda r: tuple((r[k] is None, r[k] or "") for k in by))
    return result


@settings(max_examples=examples(50), deadline=None)
@given(ptls(), filters_strategy, st.sampled_from([("provider_code", "site_code"), ("provider_code",), ()]))
def test_site_stats_match_reference(ptl: GeneratedPtl, f: ViewFilter, by: tuple[str, ...]) -> None:
    produced = site_stats(ptl.snapshot(), f, by)
    assert produced.columns == [*by, *SITE_STATS_COLUMNS]
    assert_rows_equal(produced.to_dicts(), reference_site_stats(ptl, f, by))


@settings(max_examples=examples(40), deadline=None)
@given(ptls(), filters_strategy)
def test_each_need_counts_once_and_the_system_row_is_the_queue(ptl: GeneratedPtl, f: ViewFilter) -> None:
    snapshot = ptl.snapshot()
    queue = shared_queue(ptl.current, f)
    system = site_stats(snapshot, f, ())
    by_provider = site_stats(snapshot, f, ("provider_code",))
    by_site = site_stats(snapshot, f, ("provider_code", "site_code"))
    total = int(system["open_pathways"].sum()) if system.height else 0
    assert total == queue.height
    # Every row counts each need once, so the rows add up to the system row.
    assert int(by_provider["open_pathways"].sum() or 0) == total
    assert int(by_site["open_pathways"].sum() or 0) == total
    for measure in ("over_52", "over_104", "within_18", "capacity_queue"):
        assert int(by_site[measure].sum() or 0) == int(system[measure].sum() or 0)


def bands_frame(bands: list[int]) -> pl.DataFrame:
    """Pathways in the given week bands (each at its band's first day)."""
    return pl.DataFrame({"week_band": bands, "days_waited": [7 * b + (b > 0) for b in bands]},
                        schema={"week_band": pl.Int32, "days_waited": pl.Int32})


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.integers(0, 120), max_size=60), st.sampled_from([0.5, 0.92, 0.25]))
def test_interpolated_percentile_matches_the_written_out_method(bands: list[int], p: float) -> None:
    frame = bands_frame(bands)
    produced = interpolated_weeks(frame, (), p, "weeks")
    expected = interpolate(bands, p)
    assert (produced["weeks"][0] if produced.height else None) == expected or math.isclose(
        produced["weeks"][0], expected)  # type: ignore[arg-type]


def test_interpolation_worked_example() -> None:
    # 10 pathways: 4 in band 0, 4 in band 1, 2 in band 5. Median: 5th of 10 → band 1,
    # 1 + (5 − 4) / 4 = 1.25 weeks. 92nd: 9.2 → band 5, 5 + (9.2 − 8) / 2 = 5.6 weeks.
    frame = bands_frame([0] * 4 + [1] * 4 + [5] * 2)
    assert interpolated_weeks(frame, (), 0.5, "w")["w"][0] == 1.25
    assert math.isclose(interpolated_weeks(frame, (), 0.92, "w")["w"][0], 5.6)


# --- equalisation --------------------------------------------------------------------------


def reference_equalisation(ptl: GeneratedPtl, f: ViewFilter, horizon: float) -> dict[str, Any]:
    stats = reference_site_stats(ptl, f, ("provider_code", "site_code"))
    measured = [s for s in stats if s["weekly_removals"]]
    pooled = (sum(s["capacity_queue"] for s in measured) / sum(s["weekly_removals"] for s in measured)
              if measured else None)
    queue = shared_queue(ptl.current, f).to_dicts()
    eligible: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for row in queue:
        if not row["deferred"] and row["tci_date"] is None and row["days_waited"] is not None:
            eligible[(row["provider_code"], row["site_code"])].append(row)
    for rows in eligible.values():
        rows.sort(key=lambda r: (-r["days_waited"], r["id"]))
    supply, room = {}, {}
    for s in measured:
        site = (s["provider_code"], s["site_code"])
        target = pooled * s["weekly_removals"]  # type: ignore[operator]
        spare = max(s["weekly_removals"] - (s["weekly_additions"] or 0), 0)
        if s["capacity_queue"] > target:
            supply[site] = min(math.floor(s["capacity_queue"] - target), len(eligible[site]))
        elif s["capacity_queue"] < target:
            room[site] = min(math.floor(target - s["capacity_queue"]), math.floor(spare * horizon))
    wait = {(s["provider_code"], s["site_code"]): s["expected_wait_weeks"] for s in stats}
    key = {site: f"{site[0]}|{site[1] or ''}" for site in wait}
    senders = sorted((s for s in supply if supply[s] > 0), key=lambda s: (-wait[s], key[s]))
    receivers = sorted((s for s in room if room[s] > 0), key=lambda s: (wait[s], key[s]))
    moves, patients = [], []
    left = dict(room)
    for sender in senders:
        remaining = supply[sender]
        rank = 0
        for receiver in receivers:
            take = min(remaining, left[receiver])
            if take <= 0:
                continue
            moves.append((sender, receiver, take))
            for row in eligible[sender][rank:rank + take]:
                patients.append((row["id"], receiver))
            rank += take
            left[receiver] -= take
            remaining -= take
    return {"pooled": pooled, "moves": moves, "patients": patients}


@st.composite
def unequal_systems(draw: st.DrawFn) -> GeneratedPtl:
    """Sites of one specialty with their own queue, additions and removals a week apart, so
    that some are slow, some fast, some with spare capacity: proposals are not empty."""
    import datetime as dt

    from ptl.views.snapshot import HISTORY_SCHEMA
    from tests.test_views_strategies import derived, frame_of

    current, older = [], []
    next_id = iter(range(1, 10_000))
    sites = draw(st.lists(st.sampled_from([("RA1", "RA101"), ("RA1", None), ("RB2", "RB201"),
                                           ("NT3", "NT301")]), min_size=2, max_size=4, unique=True))
    for provider, site in sites:
        census = dt.date(2025, 3, 2)
        weeks = draw(st.integers(1, 2))
        before = census - dt.timedelta(weeks=weeks)
        queue, added, removed = draw(st.integers(0, 25)), draw(st.integers(0, 6)), draw(st.integers(0, 12))
        for n in range(queue):
            days = draw(st.one_of(st.none(), st.integers(20, 500)))
            row = {"id": next(next_id), "provider_code": provider, "site_code": site,
                   "pathway_id_issuer": provider, "pathway_id": f"{site}-{n}",
                   "treatment_function_code": "110", "waiting_list_type": "IRTT", "rtt_status": "20",
                   "clinical_priority": draw(st.sampled_from(["P2", "P3", "P4", "P4", None, "P5"])),
                   "tci_date": draw(st.sampled_from([None, None, None, census])),
                   "rtt_start_date": None if days is None else census - dt.timedelta(days=days)}
            current.append(derived({**row, "census_date": census}))
            if n >= added:
                older.append(derived({**row, "census_date": before}))
        for n in range(removed):
            older.append(derived({"id": next(next_id), "provider_code": provider, "site_code": site,
                                  "pathway_id_issuer": provider, "pathway_id": f"{site}-gone-{n}",
                                  "treatment_function_code": "110", "waiting_list_type": "IRTT",
                                  "census_date": before, "rtt_start_date": before - dt.timedelta(days=30)}))
    # Sites of one provider share its census dates: keep the first site's dates per provider.
    first_before: dict[str, Any] = {}
    for row in older:
        first_before.setdefault(row["provider_code"], row["census_date"])
    older = [derived({**r, "census_date": first_before[r["provider_code"]]}) for r in older]
    return GeneratedPtl(current=frame_of(current), history=frame_of(current + older, HISTORY_SCHEMA))


@settings(max_examples=examples(60), deadline=None)
@given(st.one_of(ptls(max_rows=40), unequal_systems()), st.sampled_from(["110", "130"]),
       st.sampled_from([1.0, 4.0]))
def test_equalisation_matches_reference(ptl: GeneratedPtl, tfc: str, horizon: float) -> None:
    f = ViewFilter(treatment_function_code=tfc)
    proposal = equalisation(ptl.snapshot(), f, horizon)
    expected = reference_equalisation(ptl, f, horizon)
    assert approx_equal(proposal.pooled_wait_weeks, expected["pooled"])
    assert proposal.sites.columns == list(SITE_COLUMNS)
    assert proposal.moves.columns == list(MOVE_COLUMNS)
    assert proposal.patients.columns == list(PATIENT_COLUMNS)
    moves = [((m["from_provider_code"], m["from_site_code"]), (m["to_provider_code"], m["to_site_code"]),
              m["patients"]) for m in proposal.moves.to_dicts()]
    assert sorted(moves, key=str) == sorted(expected["moves"], key=str)
    patients = [(p["id"], (p["to_provider_code"], p["to_site_code"])) for p in proposal.patients.to_dicts()]
    assert sorted(patients, key=str) == sorted(expected["patients"], key=str)
    # Conservation: what leaves senders arrives at receivers, and nobody moves twice.
    assert proposal.sites["patients_out"].sum() == proposal.sites["patients_in"].sum() == len(patients)
    assert len({p for p, _ in patients}) == len(patients)


def test_equalisation_moves_longest_waiters_from_the_slow_site_to_the_fast_one() -> None:
    import datetime as dt

    from ptl.views.snapshot import HISTORY_SCHEMA
    from tests.test_views_strategies import derived, frame_of

    census = dt.date(2025, 3, 2)
    before = census - dt.timedelta(weeks=1)

    def row(i: int, provider: str, days: int, when: dt.date, **extra: Any) -> dict[str, Any]:
        return derived({"id": i, "provider_code": provider, "site_code": None, "census_date": when,
                        "pathway_id_issuer": provider, "pathway_id": f"{provider}{i}",
                        "treatment_function_code": "110", "waiting_list_type": "IRTT", "rtt_status": "20",
                        "clinical_priority": "P4", "rtt_start_date": when - dt.timedelta(days=days), **extra})
    # Slow: 20 waiting, 2 treated a week, none added. Fast: 2 waiting, 10 treated, 2 added.
    slow_now = [row(i, "SLO", 100 + i, census) for i in range(20)]
    slow_before = slow_now + [row(100 + i, "SLO", 90, before) for i in range(2)]
    fast_now = [row(200 + i, "FST", 10, census) for i in range(2)]
    fast_before = [row(300 + i, "FST", 10, before) for i in range(10)]
    slow_now[-1]["tci_date"] = census + dt.timedelta(days=3)  # booked: must not be proposed
    older = [derived({**r, "census_date": before}) for r in slow_before] + fast_before
    ptl = GeneratedPtl(current=frame_of(slow_now + fast_now),
                       history=frame_of(slow_now + fast_now + older, HISTORY_SCHEMA))
    proposal = equalisation(ptl.snapshot(), ViewFilter(treatment_function_code="110"))
    sites = {r["provider_code"]: r for r in proposal.sites.to_dicts()}
    assert sites["SLO"]["expected_wait_weeks"] == 10.0 and sites["FST"]["expected_wait_weeks"] == 0.2
    assert proposal.pooled_wait_weeks == 22 / 12
    # FST has room for 10·22/12 − 2 = 16.3 but spare capacity of only 10 − 2 = 8 a week.
    assert proposal.moves.to_dicts() == [{"from_provider_code": "SLO", "from_site_code": None,
                                          "to_provider_code": "FST", "to_site_code": None, "patients": 8}]
    moved = proposal.patients["id"].to_list()
    assert moved == [18, 17, 16, 15, 14, 13, 12, 11]  # longest waits first, booked 19 skipped
    assert proposal.spread["after_max"] < proposal.spread["expected_wait_max"]  # type: ignore[operator]
