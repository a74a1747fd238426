"""Benchmark: capacity matching at system scale, optimal vs the greedy baseline.

100,000 open RTT pathways (the candidate population) across ten treatment functions, and 1,000
offers totalling 20,000 slots at 60 sites, with realistic limits: independent-sector offers
(40%) take ASA ≤ 2, BMI ≤ 35–40, often day case only, no interpreter support and a 20–40 mile
radius; NHS offers set fewer limits; a fifth name procedure codes; patients carry PIDMAS travel
bands. Timed end to end by `plan_matching`: candidate filtering, LSOA × site distances, the
min-cost flow, the greedy baseline, reasons for every unassigned candidate and the equity report.

Targets (issue 6): ≤ 10 s on 2 cores and ≤ 1 GiB peak resident memory.

    .venv/bin/python bench/bench_matching.py [--candidates 100000] [--offers 1000] [--slots 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import time

import numpy as np
import polars as pl

from ptl.matching import Geography, plan_matching
from ptl.matching.offer import Offer
from ptl.views.snapshot import CURRENT_SCHEMA

CENSUS = dt.date(2025, 1, 5)
AS_OF = dt.date(2025, 1, 6)
FUNCTIONS = ("110", "130", "101", "120", "502", "100", "104", "160", "103", "330")
FUNCTION_SHARE = np.array([0.30, 0.15, 0.10, 0.10, 0.10, 0.05, 0.05, 0.05, 0.05, 0.05])
PROCEDURES = {tf: [f"{chr(65 + i)}{j:02d}{k}" for j in range(10, 14) for k in range(1, 4)]
              for i, tf in enumerate(FUNCTIONS)}
CENTRE = (52.63, -1.13)  # an ICB-sized area: ~40 miles across


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_list(rng: np.random.Generator, n: int, n_lsoa: int, providers: list[str]) -> pl.DataFrame:
    tf = rng.choice(len(FUNCTIONS), n, p=FUNCTION_SHARE)
    days = np.minimum(rng.gamma(1.6, 90.0, n).astype(np.int64), 900)
    priority = rng.choice(np.array(["P1b", "P2", "P3", "P4", "", "P5"], dtype=object), n,
                          p=[0.005, 0.08, 0.25, 0.55, 0.09, 0.025])
    frame = pl.DataFrame({
        "id": np.arange(1, n + 1, dtype=np.int64),
        "feed_id": np.ones(n, dtype=np.int64),
        "provider_code": np.array(providers, dtype=object)[rng.integers(0, len(providers), n)],
        "census_date": [CENSUS] * n,
        "source_identity_id": np.arange(1, n + 1, dtype=np.int64),
        "person_id": np.arange(1, n + 1, dtype=np.int64),
        "pathway_id": [f"PW{i:07d}" for i in range(n)],
        "pathway_id_issuer": ["ISS"] * n,
        "treatment_function_code": np.array(FUNCTIONS, dtype=object)[tf],
        "rtt_status": ["20"] * n,
        "is_rtt": np.ones(n, dtype=bool),
        "waiting_list_type": np.where(rng.random(n) < 0.7, "IRTT", "ORTT"),
        "clinical_priority": priority,
        "procedure_code": [PROCEDURES[FUNCTIONS[t]][k] for t, k in zip(tf, rng.integers(0, 12, n), strict=True)],
        "intended_management": np.where(rng.random(n) < 0.6, "2", "1"),
        "asa_grade": rng.choice([1, 2, 3, 4], n, p=[0.3, 0.45, 0.2, 0.05]),
        "bmi": np.round(rng.normal(29, 6, n).clip(16, 60), 1),
        "age_years": rng.integers(18, 95, n),
        "interpreter_required": rng.random(n) < 0.05,
        "travel_willingness": np.array(["", "50", "100", "national"], dtype=object)[
            rng.choice(4, n, p=[0.7, 0.15, 0.1, 0.05])],
        "lsoa11": [f"E01{i:06d}" for i in rng.integers(0, n_lsoa, n)],
        "days_waited": days,
        "tci_date": [CENSUS + dt.timedelta(days=int(d)) if b else None
                     for d, b in zip(rng.integers(1, 120, n), rng.random(n) < 0.1, strict=True)],
        "imd_quintile": rng.integers(1, 6, n),
        "ethnic_group": rng.choice(np.array(["White", "Asian", "Black", "Mixed", "Other", "Not stated/known"],
                                            dtype=object), n, p=[0.7, 0.1, 0.05, 0.03, 0.02, 0.1]),
        "age_band": ["50-64"] * n,
        "sex": np.where(rng.random(n) < 0.5, "1", "2"),
        "learning_disability": rng.random(n) < 0.02,
    }).with_columns(
        pl.col("clinical_priority").replace("", None),
        pl.col("travel_willingness").replace("", None),
        (pl.lit(CENSUS) - pl.duration(days=pl.col("days_waited"))).alias("rtt_start_date"),
    )
    return frame.select([(pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t)).alias(c)
                         for c, t in CURRENT_SCHEMA.items()])


def make_offers(rng: np.random.Generator, m: int, slots: int, sites: list[tuple[str, str]]) -> list[Offer]:
    per = rng.multinomial(slots - m, np.full(m, 1.0 / m)) + 1  # every offer ≥ 1 slot, total = slots
    offers = []
    for i in range(m):  # a thousand offers: building them is not the benchmark
        site, provider = sites[int(rng.integers(0, len(sites)))]
        tf = FUNCTIONS[int(rng.choice(len(FUNCTIONS), p=FUNCTION_SHARE))]
        independent = provider.startswith("N")
        offers.append(Offer(
            id=i + 1, provider_code=provider, site_code=site, treatment_function_code=tf, slots=int(per[i]),
            start_date=AS_OF, end_date=AS_OF + dt.timedelta(days=60),
            procedure_codes=tuple(sorted(rng.choice(PROCEDURES[tf], 6, replace=False))) if rng.random() < 0.2 else None,
            max_asa=2 if independent else (3 if rng.random() < 0.3 else None),
            max_bmi=float(rng.choice([35.0, 40.0])) if independent else None,
            min_age=18, max_age=int(rng.choice([80, 90])) if independent else None,
            day_case_only=bool(independent and rng.random() < 0.6),
            interpreter_support=not independent,
            priorities=("P3", "P4") if independent else None,
            accepts_out_of_area=True,
            max_distance_miles=float(rng.choice([20.0, 30.0, 40.0])) if independent else None,
        ))
    return offers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--offers", type=int, default=1_000)
    parser.add_argument("--slots", type=int, default=20_000)
    parser.add_argument("--lsoas", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    trusts = [f"R{chr(65 + i)}A" for i in range(8)]
    independents = [f"N{chr(65 + i)}A" for i in range(6)]
    sites = [(f"{p}{k:02d}", p) for p in trusts for k in range(1, 6)] + \
            [(f"{p}{k:02d}", p) for p in independents for k in range(1, 5)]
    lsoa_lat = CENTRE[0] + rng.normal(0, 0.15, args.lsoas)
    lsoa_lon = CENTRE[1] + rng.normal(0, 0.25, args.lsoas)
    geography = Geography(
        centroids=pl.DataFrame({"lsoa11": [f"E01{i:06d}" for i in range(args.lsoas)],
                                "latitude": lsoa_lat, "longitude": lsoa_lon}),
        sites=pl.DataFrame({"site_code": [s for s, _ in sites],
                            "site_latitude": CENTRE[0] + rng.normal(0, 0.12, len(sites)),
                            "site_longitude": CENTRE[1] + rng.normal(0, 0.2, len(sites))}),
        icbs=pl.DataFrame({"provider_code": trusts + independents, "icb_code": ["QWO"] * (len(trusts) + len(independents))}),
    )
    current = make_list(rng, args.candidates, args.lsoas, trusts + independents)
    offers = make_offers(rng, args.offers, args.slots, sites)
    before = rss_mib()

    started = time.perf_counter()
    result = plan_matching(current, offers, geography, as_of=AS_OF)
    elapsed = time.perf_counter() - started
    peak = rss_mib()

    best = result.optimal.objective
    greedy = result.baseline.objective if result.baseline else None
    assert greedy is not None and greedy.key() <= best.key(), "the optimum must beat or equal greedy"
    print(f"capacity matching: {args.candidates:,} pathways, {args.offers:,} offers, "
          f"{sum(o.slots for o in offers):,} slots")
    print(f"  pairs checked {result.pairs_checked:,}; eligible pairs {result.eligible_pairs:,}; "
          f"arcs after exact pruning {result.arcs_after_pruning:,}; eligible candidates {result.eligible:,}")
    print(f"  total {elapsed:.2f} s  (" + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()) + ")")
    print(f"  peak RSS {peak:,.0f} MiB (data built: {before:,.0f} MiB)")
    scale = result.optimal.scale
    if scale is not None:
        print(f"  cost scaling: K={scale.distinct_keys:,} Q={scale.distance_span:,} S={scale.most_assigned:,} "
              f"M={scale.key_multiplier:,} max arc cost={scale.max_arc_cost:,} margin to 2^62 ×{scale.overflow_margin:,.0f}")
    print()
    print("| objective | optimal (min-cost flow) | greedy baseline |")
    print("|---|---:|---:|")
    for band in best.assigned_by_band:
        print(f"| assigned {band} | {best.assigned_by_band[band]:,} | {greedy.assigned_by_band[band]:,} |")
    print(f"| assigned (all) | {best.assigned:,} | {greedy.assigned:,} |")
    print(f"| total days waited | {best.total_days_waited:,} | {greedy.total_days_waited:,} |")
    print(f"| total miles | {best.total_distance_miles:,.1f} | {greedy.total_distance_miles:,.1f} |")
    print(f"| seconds (solver only) | {result.optimal.seconds:.2f} | {result.baseline.seconds:.2f} |"
          if result.baseline else "")
    flags = [f["label"] for f in result.equity["flags"] if f["flagged"]]
    print(f"\nequity guard flags: {', '.join(flags) or 'none'}")
    ok = elapsed <= 10.0 and peak <= 1024.0
    print(f"targets (≤ 10 s, ≤ 1 GiB): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
