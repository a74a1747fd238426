"""The optimal assignment of candidates to offer slots (OR-Tools min-cost flow), and a greedy baseline.

Objective, lexicographic (each level only breaks ties of the one before):

1. clinical priority first: maximise the number assigned in band P1 (P1a/P1b), then P2, then P3,
   then P4 (then those without a P-code);
2. then maximise the total days waited of those assigned;
3. then minimise the total distance travelled (tenths of a mile).

**Why one min-cost flow solves it exactly.** Levels 1 and 2 depend only on *which* candidates
are assigned. The sets of candidates that can be assigned together (each to an eligible offer
with a free slot) are the independent sets of a transversal matroid. In a matroid, the set that
the greedy order "most urgent band first, then longest wait" builds is optimal for *every*
weighting that respects that order (Gale optimality), and every maximum-weight set under a
weighting that respects it *strictly* has the same band counts and total days. Lexicographic
band counts and total days are such an order. So the candidate weight need not be astronomically
large per band: the *dense rank* of its (band, days waited) key, `w ∈ 1..K` (K = number of
distinct keys, best key highest), gives levels 1 and 2 exactly. Level 3 is added per arc:

    reward(i → offer j) = M · w_i + (Q − d_ij),   M = S · Q + 1

with `d_ij` the distance in tenths of a mile, `Q` one more than the largest known distance
(unknown distances count as `Q`), and `S = min(candidates, slots)` the most that can be
assigned. Any set of lower total weight loses at least `M > S · Q`, more than level 3 can ever
gain, so the optimum maximises Σw first and only then Σ(Q − d), i.e. minimises distance among
optimal sets (which all assign the same number). Arc cost = −reward; a zero-cost arc from every
candidate to the sink lets a candidate stay unassigned.

The problem is solved per treatment function (no pair crosses one), and pairs that provably
cannot be optimal are pruned first (`ptl.matching.eligibility._PRUNING`); both keep the result
exact and make the graphs several times smaller.

**No 64-bit overflow.** The largest arc cost magnitude is `C = M·K + Q`. OR-Tools multiplies
costs by (nodes + 1) for cost scaling and refuses when `(C + 1)(nodes + 1)` passes 2⁶³; the
total cost is at most `S · C`. A run is refused up front (`MatchingTooLarge`) unless both are
below 2⁶² (a factor 2 margin). For the benchmark size (100,000 candidates, 1,000 offers, 20,000
slots, distances under 100 miles so Q ≤ 1,000, K ≤ 5 bands × ~2,000 distinct waits ≈ 10⁴):
M ≈ 2·10⁷, C ≈ 2·10¹¹, (C+1)(nodes+1) ≈ 2·10¹⁶ — five orders of magnitude below 2⁶² ≈ 4.6·10¹⁸.
Even the worst case of that size (K = 100,000 distinct keys, distances up to 1,000 miles, Q =
10,001) gives C ≈ 2·10¹³ and (C+1)(nodes+1) ≈ 2·10¹⁸ < 2⁶².
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np

from ptl.matching.eligibility import DISTANCE_UNITS_PER_MILE, PRIORITY_BANDS, MatchingError

SOLVER: Final[str] = "OR-Tools SimpleMinCostFlow (cost scaling push-relabel)"
COST_LIMIT: Final[int] = 2**62


class MatchingTooLarge(MatchingError):
    """The run's costs could overflow 64-bit integers; the message says how to shrink it."""


@dataclass(frozen=True, slots=True)
class Objective:
    """The three levels of the objective for one assignment."""

    assigned: int
    assigned_by_band: dict[str, int]
    total_days_waited: int
    #: miles travelled by those assigned whose distance is known
    total_distance_miles: float
    #: assigned with no home location (distance unknown)
    unknown_distances: int = 0
    #: level 3 as optimised: tenths of a mile, an unknown distance valued just beyond the longest known
    distance_units: int = 0

    def key(self) -> tuple[int, ...]:
        """Larger is better, compared lexicographically (distance negated)."""
        return (*(self.assigned_by_band[b] for b in PRIORITY_BANDS), self.total_days_waited, -self.distance_units)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CostScale:
    """The integer scaling of the lexicographic objective, and the overflow check's figures."""

    distinct_keys: int  # K
    distance_span: int  # Q
    most_assigned: int  # S
    key_multiplier: int  # M
    max_arc_cost: int  # C
    nodes: int
    overflow_margin: float  # COST_LIMIT / max((C+1)(nodes+1), S·C)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Assignment:
    """Which eligible pairs were chosen (indices into the pair arrays), and at what objective."""

    chosen: np.ndarray
    objective: Objective
    solver: str
    seconds: float
    scale: CostScale | None = None
    solver_cost: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def objective_of(chosen: np.ndarray, pair_candidate: np.ndarray, pair_distance: np.ndarray,
                 band: np.ndarray, days: np.ndarray, unknown_distance: int | None = None) -> Objective:
    """The objective of a set of chosen pairs (`unknown_distance`: the value standing for "not known")."""
    cands = pair_candidate[chosen]
    counts = np.bincount(band[cands].astype(np.int64), minlength=len(PRIORITY_BANDS))
    units = pair_distance[chosen].astype(np.int64)
    unknown = units == unknown_distance if unknown_distance is not None else np.zeros(len(units), dtype=bool)
    return Objective(
        assigned=int(len(cands)),
        assigned_by_band={b: int(counts[i]) for i, b in enumerate(PRIORITY_BANDS)},
        total_days_waited=int(days[cands].astype(np.int64).sum()),
        total_distance_miles=round(float(units[~unknown].sum()) / DISTANCE_UNITS_PER_MILE, 1),
        unknown_distances=int(unknown.sum()),
        distance_units=int(units.sum()),
    )


def candidate_weights(band: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense rank of (band ascending, days descending), best = K: `(weights, K)`."""
    days = days.astype(np.int64)
    # One integer per key that sorts best-last: lower band and longer wait are better.
    span = int(days.max()) + 1 if days.size else 1
    key = (len(PRIORITY_BANDS) - 1 - band.astype(np.int64)) * span + days
    distinct, rank = np.unique(key, return_inverse=True)
    return (rank + 1).astype(np.int64), int(len(distinct))


def cost_scale(weights_k: int, distance_span: int, candidates: int, slots: int, offers: int) -> CostScale:
    """Scaling figures for a problem; raises `MatchingTooLarge` when 64 bits could overflow."""
    most = max(1, min(candidates, slots))
    multiplier = most * distance_span + 1
    max_cost = multiplier * weights_k + distance_span
    nodes = candidates + offers + 1
    worst = max((max_cost + 1) * (nodes + 1), most * max_cost)  # Python ints: exact
    if worst >= COST_LIMIT:
        raise MatchingTooLarge(
            f"this run is too large for exact lexicographic costs in 64 bits ({candidates:,} candidates, "
            f"{slots:,} slots, {weights_k:,} distinct priority/wait keys, distances up to "
            f"{distance_span / DISTANCE_UNITS_PER_MILE:,.0f} miles); match fewer offers at once or narrow "
            "the candidates (provider_codes, waiting_list_type, min_days_waited)")
    return CostScale(distinct_keys=weights_k, distance_span=distance_span, most_assigned=most,
                     key_multiplier=multiplier, max_arc_cost=max_cost, nodes=nodes,
                     overflow_margin=round(COST_LIMIT / worst, 1))


def solve_optimal(pair_candidate: np.ndarray, pair_offer: np.ndarray, pair_distance: np.ndarray,
                  capacities: np.ndarray, band: np.ndarray, days: np.ndarray,
                  offer_group: np.ndarray | None = None, unknown_distance: int | None = None) -> Assignment:
    """The lexicographically optimal assignment (see the module docstring for the proof).

    `offer_group` (per offer) splits the problem where no pair crosses groups (treatment
    functions): the optimum of independent parts is their union (in a direct sum of matroids the
    greedy basis is the union of the parts' greedy bases, and distance then adds up), and each
    part is smaller, with smaller costs, so it solves faster.
    """
    started = time.perf_counter()
    if offer_group is None or len(np.unique(offer_group)) <= 1:
        return _solve_part(pair_candidate, pair_offer, pair_distance, capacities, band, days, unknown_distance)
    capacities = np.asarray(capacities, dtype=np.int64)
    pair_group = offer_group[pair_offer]
    order = np.argsort(pair_group, kind="stable")
    bounds = np.searchsorted(pair_group[order], np.arange(int(offer_group.max()) + 2))
    chosen: list[np.ndarray] = []
    scales: list[CostScale] = []
    nodes = arcs = cost = 0
    for group in range(int(offer_group.max()) + 1):  # treatment functions, not rows
        pairs = order[bounds[group]:bounds[group + 1]]
        if pairs.size == 0:
            continue
        offers_here = np.flatnonzero(offer_group == group)
        local = np.full(len(capacities), -1, dtype=np.int64)
        local[offers_here] = np.arange(len(offers_here))
        part = _solve_part(pair_candidate[pairs], local[pair_offer[pairs]], pair_distance[pairs],
                           capacities[offers_here], band, days)
        chosen.append(pairs[part.chosen])
        if part.scale is not None:
            scales.append(part.scale)
        nodes += part.details.get("nodes", 0)
        arcs += part.details.get("arcs", 0)
        cost += part.solver_cost or 0
    picked = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    worst = min(scales, key=lambda sc: sc.overflow_margin) if scales else None
    return Assignment(chosen=picked, solver=SOLVER, seconds=time.perf_counter() - started, scale=worst,
                      solver_cost=cost,
                      objective=objective_of(picked, pair_candidate, pair_distance, band, days, unknown_distance),
                      details={"nodes": nodes, "arcs": arcs, "parts": len(scales)})


def _solve_part(pair_candidate: np.ndarray, pair_offer: np.ndarray, pair_distance: np.ndarray,
                capacities: np.ndarray, band: np.ndarray, days: np.ndarray,
                unknown_distance: int | None = None) -> Assignment:
    """One min-cost flow over pairs that share no offer or candidate with any other part."""
    from ortools.graph.python import min_cost_flow

    started = time.perf_counter()
    capacities = np.asarray(capacities, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    if pair_candidate.size == 0 or capacities.sum() == 0:
        return Assignment(chosen=empty, solver=SOLVER, seconds=time.perf_counter() - started,
                          objective=objective_of(empty, pair_candidate, pair_distance, band, days, unknown_distance))
    # Only candidates with an eligible pair become nodes (renumbered 0..n-1).
    in_graph, node_of_pair = np.unique(pair_candidate, return_inverse=True)
    n, m = len(in_graph), len(capacities)
    weights, k = candidate_weights(band[in_graph], days[in_graph])
    span = int(pair_distance.max()) + 1
    scale = cost_scale(k, span, n, int(capacities.sum()), m)
    reward = scale.key_multiplier * weights[node_of_pair] + (span - pair_distance.astype(np.int64))
    sink = n + m
    tails = np.concatenate([node_of_pair, np.arange(n), n + np.arange(m)]).astype(np.int32)
    heads = np.concatenate([n + pair_offer.astype(np.int64), np.full(n, sink), np.full(m, sink)]).astype(np.int32)
    caps = np.concatenate([np.ones(len(pair_candidate) + n, dtype=np.int64), capacities])
    costs = np.concatenate([-reward, np.zeros(n + m, dtype=np.int64)])
    flow = min_cost_flow.SimpleMinCostFlow()
    flow.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    supplies = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(m, dtype=np.int64), [-n]])
    flow.set_nodes_supplies(np.arange(n + m + 1, dtype=np.int32), supplies.astype(np.int64))
    status = flow.solve()
    if status != flow.OPTIMAL:
        raise MatchingError(f"the min-cost flow solver stopped without an optimum (status {status}); "
                            "this is a fault: please report it with the run's offers")
    used = np.asarray(flow.flows(np.arange(len(pair_candidate), dtype=np.int32)))
    chosen = np.flatnonzero(used > 0)
    return Assignment(chosen=chosen, solver=SOLVER, seconds=time.perf_counter() - started, scale=scale,
                      solver_cost=int(flow.optimal_cost()),
                      objective=objective_of(chosen, pair_candidate, pair_distance, band, days, unknown_distance),
                      details={"nodes": n + m + 1, "arcs": int(len(tails))})


def solve_greedy(pair_candidate: np.ndarray, pair_offer: np.ndarray, pair_distance: np.ndarray,
                 capacities: np.ndarray, band: np.ndarray, days: np.ndarray,
                 unknown_distance: int | None = None) -> Assignment:
    """The baseline a coordinator would do by hand: take patients in queue order (band, then
    longest wait) and give each the nearest eligible offer that still has a slot. Never moves an
    earlier patient to make room, which is where it loses to the optimum."""
    started = time.perf_counter()
    # Queue position of each candidate (band, then longest wait, then row), then pairs by
    # position and nearest first.
    candidate_rank = np.lexsort((np.arange(len(band)), -days.astype(np.int64), band))
    position = np.empty(len(band), dtype=np.int64)
    position[candidate_rank] = np.arange(len(band))
    order = np.lexsort((pair_distance, position[pair_candidate]))
    cand_sorted = pair_candidate[order]
    starts = np.flatnonzero(np.r_[True, cand_sorted[1:] != cand_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    remaining = np.asarray(capacities, dtype=np.int64).tolist()
    offers_sorted = pair_offer[order].tolist()
    chosen: list[int] = []
    # Sequential by definition (each choice depends on the slots left by earlier ones); plain
    # Python lists keep it to ~50 ns a step.
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        for k in range(start, end):
            offer = offers_sorted[k]
            if remaining[offer] > 0:
                remaining[offer] -= 1
                chosen.append(k)
                break
    picked = order[np.asarray(chosen, dtype=np.int64)] if chosen else np.zeros(0, dtype=np.int64)
    return Assignment(chosen=picked, solver="greedy (queue order, nearest offer with a slot)",
                      seconds=time.perf_counter() - started,
                      objective=objective_of(picked, pair_candidate, pair_distance, band, days, unknown_distance))
