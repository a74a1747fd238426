"""Capacity matching without a store: offers, eligibility, the optimal assignment, equity.

Generative tests (Hypothesis) check the vectorised eligibility against a plain-Python reference
(`eligible_by_reference`), the solver against exhaustive search, and the priority order against
a direct feasibility check; all on small instances.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptl.matching import Geography, parse_offer, plan_matching
from ptl.matching.assignment import MatchingTooLarge, cost_scale, solve_greedy, solve_optimal
from ptl.matching.eligibility import PRIORITY_BANDS, build_pool
from ptl.matching.equity import acceptance_report, decline_report, equity_report
from ptl.matching.move import link_moved_pathways
from ptl.matching.offer import Offer, OfferError
from ptl.matching.transfer import Actor, TransferError, TransferForbidden, check_step
from ptl.views.snapshot import CURRENT_SCHEMA

AS_OF = dt.date(2025, 1, 6)
#: Home LSOAs (the last has no centroid: distance unknown) and sites, ~0–40 miles apart.
LSOAS = {"E01000001": (53.80, -1.55), "E01000002": (53.95, -1.10), "E01000003": (53.40, -1.45),
         "E01000004": None}
SITES = {"NCC01": (53.79, -1.54), "RBB01": (53.62, -1.20)}
ICBS = {"RAA": "QWO", "RBB": "QWO", "NCC": "QXX"}


def current_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A snapshot `current` frame from partial rows (defaults: open RTT, T&O, routine fields)."""
    defaults: dict[str, Any] = {
        "feed_id": 1, "census_date": AS_OF - dt.timedelta(days=1), "is_rtt": True, "rtt_status": "20",
        "waiting_list_type": "IRTT", "treatment_function_code": "110", "pathway_id_issuer": "ISS",
        "clinical_priority": "P4", "days_waited": 100, "provider_code": "RAA", "lsoa11": "E01000001",
    }
    full = []
    for i, row in enumerate(rows, start=1):
        record = {**defaults, "id": i, "pathway_id": f"PW{i}", "source_identity_id": i, "person_id": i, **row}
        if record.get("rtt_start_date") is None and record["days_waited"] is not None:
            record["rtt_start_date"] = record["census_date"] - dt.timedelta(days=record["days_waited"])
        full.append(record)
    frame = pl.DataFrame(full, infer_schema_length=None)
    return frame.select([
        (pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t)).alias(c) for c, t in CURRENT_SCHEMA.items()
    ])


def geography() -> Geography:
    known = {k: v for k, v in LSOAS.items() if v is not None}
    return Geography(
        centroids=pl.DataFrame({"lsoa11": list(known), "latitude": [v[0] for v in known.values()],
                                "longitude": [v[1] for v in known.values()]}),
        sites=pl.DataFrame({"site_code": list(SITES), "site_latitude": [v[0] for v in SITES.values()],
                            "site_longitude": [v[1] for v in SITES.values()]}),
        icbs=pl.DataFrame({"provider_code": list(ICBS), "icb_code": list(ICBS.values())}),
    )


def offer(offer_id: int, **fields: Any) -> Offer:
    data = {"provider_code": "NCC", "site_code": "NCC01", "treatment_function_code": "110", "slots": 1,
            "start_date": "2025-01-06", "end_date": "2025-03-31", **fields}
    return parse_offer({**data, "id": offer_id})


def miles(lsoa: str | None, site: str) -> float | None:
    home = LSOAS.get(lsoa or "")
    if home is None:
        return None
    (lat1, lon1), (lat2, lon2) = home, SITES[site]
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 3958.7613 * math.asin(math.sqrt(a))


def eligible_by_reference(p: dict[str, Any], o: Offer) -> bool:
    """The eligibility rule written the obvious way, one patient and one offer at a time."""
    if p.get("clinical_priority") in ("P5", "P6"):
        return False
    tci = p.get("tci_date")
    if tci is not None and AS_OF <= tci <= AS_OF + dt.timedelta(days=56):
        return False
    if o.procedure_codes is not None and p.get("procedure_code") not in o.procedure_codes:
        return False
    if p["provider_code"] == o.provider_code:
        return False
    if o.priorities is not None and p.get("clinical_priority") not in o.priorities:
        return False
    for value, limit in ((p.get("asa_grade"), o.max_asa), (p.get("bmi"), o.max_bmi), (p.get("age_years"), o.max_age)):
        if limit is not None and (value is None or value > limit):
            return False
    if o.min_age is not None and (p.get("age_years") is None or p["age_years"] < o.min_age):
        return False
    if o.day_case_only and p.get("intended_management") != "2":
        return False
    if not o.interpreter_support and p.get("interpreter_required"):
        return False
    if not o.accepts_out_of_area and ICBS[p["provider_code"]] != ICBS[o.provider_code]:
        return False
    distance = miles(p.get("lsoa11"), o.site_code)
    patient_limit = {"50": 50.0, "100": 100.0}.get(p.get("travel_willingness") or "")
    for limit in (o.max_distance_miles, patient_limit):
        if limit is not None and (distance is None or distance > limit):
            return False
    return True


# --- offers --------------------------------------------------------------------------------------


def test_offer_validation_names_every_bad_field() -> None:
    with pytest.raises(OfferError) as caught:
        parse_offer({"provider_code": "N!", "site_code": "NCC01", "treatment_function_code": "999",
                     "slots": 0, "start_date": "2025-02-01", "end_date": "2025-01-01", "max_asa": 7,
                     "priorities": ["P5"], "day_case_only": "yes", "colour": "blue"})
    fields = [name for name, _ in caught.value.problems]
    assert fields == ["colour", "provider_code", "treatment_function_code", "slots", "end_date", "max_asa",
                      "priorities", "day_case_only"]
    message = str(caught.value)
    assert "treatment_function_code: '999' is not a treatment function code" in message
    assert "end_date: 2025-01-01 is before start_date 2025-02-01" in message
    assert "priorities: 'P5' cannot be offered capacity" in message


def test_offer_required_fields_and_normalisation() -> None:
    with pytest.raises(OfferError) as caught:
        parse_offer({})
    assert [n for n, _ in caught.value.problems] == ["provider_code", "site_code", "treatment_function_code",
                                                     "slots", "start_date", "end_date"]
    parsed = offer(1, provider_code=" ncc ", procedure_codes=["w37.1", "W371", "C75.1"], priorities=["P4", "P2"])
    assert parsed.provider_code == "NCC"
    assert parsed.procedure_codes == ("C751", "W371")
    assert parsed.priorities == ("P2", "P4")
    assert parsed.as_json()["start_date"] == "2025-01-06"


# --- reasons ---------------------------------------------------------------------------------------


def test_every_unassigned_candidate_has_the_reason_that_applies() -> None:
    current = current_frame([
        {"clinical_priority": "P2", "days_waited": 300, "asa_grade": 2},              # 1 assigned
        {"clinical_priority": "P3", "days_waited": 400, "asa_grade": 3},              # 2 ASA too high
        {"clinical_priority": "P4", "days_waited": 500, "asa_grade": 1,
         "lsoa11": "E01000003"},                                                      # 3 too far (offer)
        {"clinical_priority": "P5", "asa_grade": 1},                                  # 4 deferred
        {"clinical_priority": "P4", "asa_grade": 1, "tci_date": AS_OF + dt.timedelta(days=20)},  # 5 booked
        {"clinical_priority": "P4", "days_waited": 50, "asa_grade": 1},               # 6 outranked
        {"clinical_priority": "P4", "asa_grade": 1, "provider_code": "NCC"},          # 7 own provider
        {"clinical_priority": "P4", "asa_grade": 1, "treatment_function_code": "130"},  # not on the list
        {"clinical_priority": "P4", "days_waited": 20, "asa_grade": 1, "person_id": 6},  # 9 duplicate of 6
        {"clinical_priority": "P4", "days_waited": 30, "asa_grade": 1, "lsoa11": "E01000004",
         "travel_willingness": "50"},                                                 # 10 distance unknown
    ])
    result = plan_matching(current, [offer(7, slots=1, max_asa=2, max_distance_miles=25)], geography(),
                           as_of=AS_OF)
    assert result.assignments["pathway_row_id"].to_list() == [1]
    assert result.candidates == 9
    why = {r["pathway_row_id"]: (r["reason"], r["detail"]) for r in result.unassigned.to_dicts()}
    assert set(why) == {2, 3, 4, 5, 6, 7, 9, 10}
    assert why[2] == ("ineligible", "offer 7 (closest): ASA grade 3, offer takes up to 2")
    assert why[3][0] == "out_of_range" and "offer's limit 25.0 miles" in why[3][1]
    assert why[4][0] == "ineligible" and "deferred by the patient (P5)" in why[4][1]
    assert why[5][0] == "ineligible" and "booked" in why[5][1]
    assert why[6][0] == "outranked" and "eligible for 1 offer(s), nearest offer 7" in why[6][1]
    assert why[7] == ("ineligible", "offer 7 (closest): already waiting at NCC")
    assert why[9][0] == "ineligible" and "duplicate" in why[9][1]
    assert why[10][0] == "out_of_range" and "distance unknown" in why[10][1]
    assert result.unassigned["detail"].null_count() == 0
    assert result.optimal.objective.assigned_by_band["P2"] == 1


def test_outranked_candidates_without_a_known_distance_still_get_a_reason() -> None:
    current = current_frame([{"days_waited": 300, "lsoa11": "E01000004"}, {"days_waited": 200, "lsoa11": None}])
    result = plan_matching(current, [offer(1, slots=1)], geography(), as_of=AS_OF)
    assert result.assignments["pathway_row_id"].to_list() == [1]
    assert result.assignments["distance_miles"].to_list() == [None]
    assert result.optimal.objective.unknown_distances == 1
    assert result.unassigned.row(0, named=True)["detail"].startswith("eligible for 1 offer(s), nearest offer 1;")


def test_pathways_in_live_transfers_are_not_matched_again() -> None:
    current = current_frame([{"days_waited": 300}, {"days_waited": 200}])
    held = pl.DataFrame({"pathway_id_issuer": ["ISS"], "pathway_id": ["PW1"], "transfer_id": [12],
                         "transfer_state": ["accepted"]})
    result = plan_matching(current, [offer(1, slots=2)], geography(), as_of=AS_OF, in_transfer=held)
    assert result.assignments["pathway_row_id"].to_list() == [2]
    assert result.unassigned.row(0, named=True)["detail"] == "in transfer 12 (accepted)"


# --- the objective -----------------------------------------------------------------------------------

PRIORITIES = st.sampled_from(["P1a", "P1b", "P2", "P3", "P4", None, "P5"])
patients = st.fixed_dictionaries({
    "provider_code": st.sampled_from(["RAA", "RAA", "RAA", "RBB", "NCC"]),
    "clinical_priority": PRIORITIES,
    "days_waited": st.sampled_from([10, 40, 90, 200, 400]),
    "asa_grade": st.sampled_from([None, 1, 1, 2, 2, 3, 4]),
    "bmi": st.sampled_from([None, 22.0, 31.5, 38.0, 44.0]),
    "age_years": st.sampled_from([None, 16, 45, 70, 85]),
    "intended_management": st.sampled_from(["1", "2", "2", None]),
    "interpreter_required": st.sampled_from([True, False, False, None]),
    "travel_willingness": st.sampled_from(["50", "100", "national", None, None, None]),
    "lsoa11": st.sampled_from(["E01000001", "E01000001", "E01000002", "E01000003", "E01000004"]),
    "procedure_code": st.sampled_from(["W371", "W371", "C751", None]),
    "tci_date": st.sampled_from([None, None, AS_OF + dt.timedelta(days=30), AS_OF + dt.timedelta(days=90)]),
})
offer_fields = st.fixed_dictionaries({
    # Limits are mostly unset so that many pairs are eligible and capacity binds.
    "provider_code": st.sampled_from(["NCC", "RBB"]),
    "slots": st.integers(1, 2),
    "max_asa": st.sampled_from([None, None, None, 1, 2, 3]),
    "max_bmi": st.sampled_from([None, None, None, 30.0, 40.0]),
    "min_age": st.sampled_from([None, None, 18]),
    "max_age": st.sampled_from([None, None, 80]),
    "day_case_only": st.sampled_from([False, False, True]),
    "interpreter_support": st.sampled_from([True, True, False]),
    "priorities": st.one_of(st.none(), st.none(),
                            st.sets(st.sampled_from(["P1a", "P1b", "P2", "P3", "P4"]), min_size=1).map(sorted)),
    "accepts_out_of_area": st.sampled_from([True, True, False]),
    "max_distance_miles": st.sampled_from([None, None, None, 5.0, 30.0]),
    "procedure_codes": st.sampled_from([None, None, ["W37.1"]]),
})


#: Half the offers set no limit at all, so capacity binds often and pruning is exercised.
offer_fields = st.one_of(offer_fields, st.fixed_dictionaries({"provider_code": st.sampled_from(["NCC", "RBB"]),
                                                              "slots": st.integers(1, 2)}))


def _offers(specs: list[dict[str, Any]]) -> list[Offer]:
    return [offer(i + 1, site_code=f"{s['provider_code']}01", **{k: v for k, v in s.items() if k != "site_code"})
            for i, s in enumerate(specs)]


def _instance(people: list[dict[str, Any]], specs: list[dict[str, Any]]) -> tuple[pl.DataFrame, list[Offer]]:
    # Distinct persons (person_id = row) so no duplicates are involved here.
    return current_frame(people), _offers(specs)


def _exhaustive_best(pairs: list[tuple[int, int, int]], capacities: list[int], band: np.ndarray,
                     days: np.ndarray) -> tuple[Any, ...]:
    """Best objective key over every way of choosing at most one eligible pair per candidate."""
    options: dict[int, list[tuple[int, int] | None]] = {}
    for cand, off, dist in pairs:
        options.setdefault(cand, [None]).append((off, dist))
    best: tuple[Any, ...] | None = None
    cands = sorted(options)
    for choice in itertools.product(*(options[c] for c in cands)):
        used = [0] * len(capacities)
        counts = [0] * len(PRIORITY_BANDS)
        total_days = total_distance = 0
        feasible = True
        for cand, picked in zip(cands, choice, strict=True):
            if picked is None:
                continue
            off, dist = picked
            used[off] += 1
            if used[off] > capacities[off]:
                feasible = False
                break
            counts[band[cand]] += 1
            total_days += int(days[cand])
            total_distance += dist
        if feasible:
            key = (*counts, total_days, -total_distance)
            best = key if best is None or key > best else best
    return best or (*([0] * len(PRIORITY_BANDS)), 0, 0)


FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(patients, min_size=1, max_size=7), st.lists(offer_fields, min_size=1, max_size=3))
def test_eligibility_matches_the_reference_and_no_limit_is_ever_violated(
        people: list[dict[str, Any]], specs: list[dict[str, Any]]) -> None:
    current, offers = _instance(people, specs)
    expected = {(i + 1, k) for i, p in enumerate(people) for k, o in enumerate(offers) if eligible_by_reference(p, o)}
    # Without pruning (capacity never binds) the pairs are exactly the reference's.
    unpruned = build_pool(current, offers, geography(), as_of=AS_OF, capacities=[10**6] * len(offers))
    ids = unpruned.pool["id"].to_list()
    assert {(ids[c], o) for c, o in zip(unpruned.pair_candidate.tolist(), unpruned.pair_offer.tolist(),
                                        strict=True)} == expected
    # With pruning: a subset, every dropped pair has at least C strictly better eligible candidates
    # for its offer, and the per-candidate tallies still count every eligible offer.
    pool = build_pool(current, offers, geography(), as_of=AS_OF)
    row_of_id = {int(i): r for r, i in enumerate(pool.pool["id"].to_list())}
    found = {(ids[c], o) for c, o in zip(pool.pair_candidate.tolist(), pool.pair_offer.tolist(), strict=True)}
    assert found <= expected
    goodness = {ids[r]: (-int(pool.pool["band"][r]), int(pool.pool["days"][r])) for r in range(pool.pool.height)}
    for cand, k in expected - found:
        same_function = sum(o.slots for o in offers if o.treatment_function_code == offers[k].treatment_function_code)
        better = [c for c, j in expected if j == k and goodness[c] > goodness[cand]]
        assert len(better) >= same_function
    assert {ids[r]: int(n) for r, n in enumerate(pool.eligible_offers)} == {
        ids[r]: sum(1 for c, _ in expected if c == ids[r]) for r in range(pool.pool.height)}
    result = plan_matching(current, offers, geography(), as_of=AS_OF)
    for row in result.assignments.to_dicts():
        position = [o.id for o in offers].index(row["offer_id"])
        assert eligible_by_reference(people[row["pathway_row_id"] - 1], offers[position])
    per_offer = result.assignments.group_by("offer_id").len()
    for offer_id, count in per_offer.iter_rows():
        assert count <= offers[offer_id - 1].slots
    # Everyone on the list is either assigned or has exactly one reason, in words.
    assert result.assignments.height + result.unassigned.height == result.candidates
    assert result.unassigned["detail"].null_count() == 0
    for row in result.unassigned.to_dicts():
        can = any(eligible_by_reference(people[row["pathway_row_id"] - 1], o) for o in offers)
        assert (row["reason"] == "outranked") == can
    assert set(row_of_id) >= {r["pathway_row_id"] for r in result.assignments.to_dicts()}


@FAST
@given(st.lists(patients, min_size=1, max_size=7), st.lists(offer_fields, min_size=1, max_size=3),
       st.lists(st.sampled_from(["110", "130"]), min_size=3, max_size=3))
def test_optimal_assignment_equals_exhaustive_search_and_beats_greedy(
        people: list[dict[str, Any]], specs: list[dict[str, Any]], functions: list[str]) -> None:
    # Two treatment functions, so the per-function decomposition is exercised too.
    people = [{**p, "treatment_function_code": functions[i % 3]} for i, p in enumerate(people)]
    specs = [{**o, "treatment_function_code": functions[(i + 1) % 3]} for i, o in enumerate(specs)]
    current, offers = _instance(people, specs)
    capacities = np.array([o.slots for o in offers])
    pool = build_pool(current, offers, geography(), as_of=AS_OF)  # pruned, as runs use it
    band = pool.pool["band"].to_numpy().astype(np.int8)
    days = pool.pool["days"].to_numpy().astype(np.int64)
    arrays = (pool.pair_candidate, pool.pair_offer, pool.pair_distance, capacities, band, days)
    optimal = solve_optimal(*arrays, offer_group=pool.offer_group, unknown_distance=pool.unknown_distance)
    # The exhaustive search sees every eligible pair (no pruning): pruning must lose nothing.
    full = build_pool(current, offers, geography(), as_of=AS_OF, capacities=[10**6] * len(offers))
    pairs = list(zip(full.pair_candidate.tolist(), full.pair_offer.tolist(), full.pair_distance.tolist(), strict=True))
    assert optimal.objective.key() == _exhaustive_best(pairs, capacities.tolist(), band, days)
    greedy_full = solve_greedy(full.pair_candidate, full.pair_offer, full.pair_distance, capacities, band, days)
    assert solve_greedy(*arrays).objective.key() == greedy_full.objective.key()
    assert greedy_full.objective.key() <= optimal.objective.key()


def _feasible(cands: set[int], pairs: list[tuple[int, int]], capacities: list[int]) -> bool:
    """Can every candidate in `cands` have a slot at once? (augmenting paths over slot copies)"""
    slots = [(o, k) for o, c in enumerate(capacities) for k in range(c)]
    options = {c: [s for s, (o, _) in enumerate(slots) if (c, o) in set(pairs)] for c in cands}
    holder: dict[int, int] = {}

    def place(c: int, seen: set[int]) -> bool:
        for s in options[c]:
            if s not in seen:
                seen.add(s)
                if s not in holder or place(holder[s], seen):
                    holder[s] = c
                    return True
        return False

    return all(place(c, set()) for c in cands)


@FAST
@given(st.lists(patients, min_size=2, max_size=8), st.lists(offer_fields, min_size=1, max_size=3))
def test_priority_order_holds_even_by_moving_others(people: list[dict[str, Any]],
                                                   specs: list[dict[str, Any]]) -> None:
    """No assigned patient could be swapped for an unassigned, eligible patient of a more urgent
    band or (same band) longer wait, whatever rearrangement of the others that needs."""
    current, offers = _instance(people, specs)
    pool = build_pool(current, offers, geography(), as_of=AS_OF)
    band = pool.pool["band"].to_numpy()
    days = pool.pool["days"].to_numpy()
    capacities = [o.slots for o in offers]
    optimal = solve_optimal(pool.pair_candidate, pool.pair_offer, pool.pair_distance, np.array(capacities),
                            band, days, offer_group=pool.offer_group)
    assigned = set(pool.pair_candidate[optimal.chosen].tolist())
    full = build_pool(current, offers, geography(), as_of=AS_OF, capacities=[10**6] * len(offers))
    pairs = list(zip(full.pair_candidate.tolist(), full.pair_offer.tolist(), strict=True))
    eligible = {c for c, _ in pairs}
    for u in eligible - assigned:
        for v in assigned:
            if (band[u], -days[u]) < (band[v], -days[v]):
                assert not _feasible(assigned - {v} | {u}, pairs, capacities), (u, v)


def test_greedy_loses_where_moving_an_earlier_patient_frees_a_slot() -> None:
    # Patient 1 (P2) is eligible for both offers and nearest to offer 1; patient 2 (P2) only
    # for offer 1. Greedy gives 1 its nearest (offer 1) and 2 nothing; the optimum moves 1 to 2.
    current = current_frame([
        {"clinical_priority": "P2", "days_waited": 300, "lsoa11": "E01000001", "asa_grade": 1},
        {"clinical_priority": "P2", "days_waited": 200, "lsoa11": "E01000001", "asa_grade": 3},
    ])
    offers = [offer(1, provider_code="NCC", site_code="NCC01"),
              offer(2, provider_code="RBB", site_code="RBB01", max_asa=2)]
    result = plan_matching(current, offers, geography(), as_of=AS_OF)
    assert result.optimal.objective.assigned == 2
    assert result.baseline is not None and result.baseline.objective.assigned == 1
    assert dict(zip(result.assignments["pathway_row_id"], result.assignments["offer_id"], strict=True)) == {1: 2, 2: 1}


def test_cost_scaling_fits_the_benchmark_and_refuses_what_could_overflow() -> None:
    bench = cost_scale(weights_k=100_000, distance_span=10_001, candidates=100_000, slots=20_000, offers=1_000)
    assert bench.overflow_margin > 1
    with pytest.raises(MatchingTooLarge, match="too large for exact lexicographic costs"):
        cost_scale(weights_k=2_000_000, distance_span=10_001, candidates=2_000_000, slots=200_000, offers=10_000)


# --- equity ------------------------------------------------------------------------------------------


def test_equity_guard_flags_under_represented_groups_and_says_where_the_gap_arises() -> None:
    waiting = pl.DataFrame({
        "imd_quintile": [1] * 40 + [5] * 60, "ethnic_group": ["Asian"] * 30 + ["White"] * 60 + ["Not stated/known"] * 10,
        "age_band": ["50-64"] * 100, "sex": ["1", "2"] * 50, "asa_grade": [1] * 70 + [3] * 30,
        "learning_disability": [False] * 100,
    }).cast({"imd_quintile": pl.Int16, "asa_grade": pl.Int16})
    eligible = waiting.filter(pl.col("asa_grade") < 3)
    moved = eligible.filter(pl.col("imd_quintile") == 5).head(20)
    report = equity_report(moved, eligible, waiting, margin_points=5.0)
    flags = {f["measure"]: f for f in report["flags"]}
    assert flags["imd_quintile_1"]["flagged"] and flags["imd_quintile_1"]["moved_pct"] == 0.0
    assert flags["imd_quintile_1"]["list_pct"] == 40.0
    assert "arises in the allocation" in flags["imd_quintile_1"]["message"]
    assert flags["asa_3_plus"]["flagged"] and "offers' limits" in flags["asa_3_plus"]["message"]
    # Ethnicity shares are among those with a recorded ethnicity (not stated is data quality).
    assert flags["minority_ethnic"]["list_pct"] == round(100 * 30 / 90, 1)
    assert report["populations"] == {"moved": 20, "eligible": 70, "list": 100}
    groups = {g["group"]: g for g in report["dimensions"]["imd_quintile"]["groups"]}
    assert groups["1"]["list"] == 40 and groups["1"]["moved"] == 0
    fair = equity_report(waiting, waiting, waiting, margin_points=5.0)
    assert not fair["flagged"]


def test_decline_and_acceptance_reports_by_group() -> None:
    transfers = pl.DataFrame({
        "id": [1, 2, 3, 4], "state": ["declined", "declined", "completed", "accepted"],
        "pathway_id_issuer": ["X"] * 4, "pathway_id": ["A", "A", "B", "C"],
        "to_provider_code": ["NCC"] * 4, "asa_grade": [1, 1, 3, None], "imd_quintile": [1, 1, 5, 5],
        "ethnic_group": ["Asian", "Asian", "White", "White"], "age_band": ["50-64"] * 4, "sex": ["1"] * 4,
        "learning_disability": [False] * 4,
        "proposed_at": [dt.datetime(2025, 1, 6), dt.datetime(2025, 1, 7), dt.datetime(2025, 2, 3),
                        dt.datetime(2025, 2, 4)],
    })
    declines = decline_report(transfers)
    q1 = declines.filter((pl.col("dimension") == "imd_quintile") & (pl.col("group") == "1")).row(0, named=True)
    assert q1 == {"dimension": "imd_quintile", "group": "1", "offered": 2, "declined": 2, "decline_rate_pct": 100.0,
                  "pathways_declined_twice_or_more": 1}
    acceptance = acceptance_report(transfers)
    feb = acceptance.filter((pl.col("dimension") == "imd_quintile") & (pl.col("period_start") == dt.date(2025, 2, 1)))
    assert feb.row(0, named=True)["acceptance_rate_pct"] == 100.0
    jan = acceptance.filter((pl.col("dimension") == "imd_quintile") & (pl.col("period_start") == dt.date(2025, 1, 1)))
    assert jan.row(0, named=True)["acceptance_rate_pct"] == 0.0


# --- workflow rules and moves ----------------------------------------------------------------------


def test_illegal_steps_are_refused_with_what_may_happen_next() -> None:
    sender = Actor("k1", "provider", "RAA")
    receiver = Actor("k2", "provider", "NCC")
    sides: dict[str, Any] = {"from_provider": "RAA", "to_provider": "NCC", "reason": None}
    check_step(1, "proposed", "offered_to_patient", sender, **sides)
    with pytest.raises(TransferError, match="transfer 1 is proposed, so it cannot become completed; "
                                            "it can next be offered_to_patient"):
        check_step(1, "proposed", "completed", receiver, **sides)
    with pytest.raises(TransferError, match="is declined, so it cannot become accepted; it is finished"):
        check_step(1, "declined", "accepted", sender, **sides)
    with pytest.raises(TransferForbidden, match="the receiving provider's step \\(NCC\\); you act for RAA"):
        check_step(1, "accepted", "completed", sender, **sides)
    with pytest.raises(TransferForbidden, match="sending provider's step"):
        check_step(1, "proposed", "offered_to_patient", Actor("k3", "icb", "QWO"), **sides)
    with pytest.raises(TransferError, match="needs the patient's reason"):
        check_step(1, "offered_to_patient", "declined", sender, **sides)


def test_moved_pathways_link_to_the_receiving_providers_census() -> None:
    start = dt.date(2024, 3, 1)
    moves = pl.DataFrame({
        "move_id": [1], "transfer_id": [9], "person_id": [50], "treatment_function_code": ["110"],
        "original_clock_start": [start], "from_provider_code": ["RAA"], "from_pathway_id": ["PW1"],
        "from_pathway_id_issuer": ["RAA"], "to_provider_code": ["NCC"], "to_site_code": ["NCC01"],
    })
    current = current_frame([
        {"provider_code": "RAA", "pathway_id": "PW1", "pathway_id_issuer": "RAA", "person_id": 50,
         "rtt_start_date": start},                                          # stale sending row
        {"provider_code": "NCC", "pathway_id": "N77", "pathway_id_issuer": "NCC", "person_id": 50,
         "rtt_start_date": start},                                          # receiving row, clock kept
        {"provider_code": "NCC", "pathway_id": "N78", "pathway_id_issuer": "NCC", "person_id": 51},
    ])
    # current_frame renumbers pathway ids; set them back for the keys that matter.
    current = current.with_columns(pl.Series("pathway_id", ["PW1", "N77", "N78"]),
                                   pl.Series("pathway_id_issuer", ["RAA", "NCC", "NCC"]))
    links = link_moved_pathways(current, moves)
    assert links.select("id", "role", "clock_start_kept").rows() == [(1, "moved_out", True), (2, "moved_in", True)]
