"""A matching run: offers + the current list → optimal proposals, reasons, equity report, stored.

`plan_matching` is the pure core (frames in, result out; what the benchmark times):
candidates and eligible pairs (`ptl.matching.eligibility`), the optimal assignment and the
greedy baseline (`ptl.matching.assignment`), reasons for everyone unassigned, and the equity
guard (`ptl.matching.equity`). `run_matching` wraps it with the store: it reads the offers, the
analytics snapshot and the reference geography, counts slots already held by transfers, and
saves the run with its proposals and unassigned candidates. `get_run` reads a run back.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import polars as pl
from sqlalchemy import Engine, func, insert, select

from ptl.matching.assignment import Assignment, solve_greedy, solve_optimal
from ptl.matching.eligibility import (
    DISTANCE_UNITS_PER_MILE,
    CandidateFilter,
    CandidatePool,
    Geography,
    MatchingError,
    build_pool,
)
from ptl.matching.equity import equity_report
from ptl.matching.offer import Offer, get_offers
from ptl.store.bulk import insert_frame
from ptl.store.engine import write_connection
from ptl.store.matching import CapacityOffer, MatchingProposal, MatchingRun, MatchingUnassigned

#: Columns of a run's assignments (one row per proposal).
ASSIGNMENT_COLUMNS: Final[tuple[str, ...]] = (
    "offer_id", "provider_code", "to_provider_code", "to_site_code", "pathway_row_id", "pathway_id",
    "pathway_id_issuer", "person_id", "source_identity_id", "treatment_function_code", "rtt_start_date",
    "clinical_priority", "days_waited", "distance_miles", "asa_grade", "imd_quintile", "ethnic_group",
    "age_band", "sex", "learning_disability",
)
UNASSIGNED_COLUMNS: Final[tuple[str, ...]] = (
    "pathway_row_id", "provider_code", "pathway_id", "person_id", "clinical_priority", "days_waited",
    "reason", "detail",
)


@dataclass
class MatchingResult:
    """Everything a run decides and reports."""

    assignments: pl.DataFrame
    unassigned: pl.DataFrame
    optimal: Assignment
    baseline: Assignment | None
    equity: dict[str, Any]
    candidates: int
    eligible: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    pairs_checked: int = 0
    eligible_pairs: int = 0
    arcs_after_pruning: int = 0

    def objective_json(self) -> dict[str, Any]:
        return {**self.optimal.objective.as_json(),
                "scaling": self.optimal.scale.as_json() if self.optimal.scale else None,
                "solver_cost": self.optimal.solver_cost, "solver_seconds": round(self.optimal.seconds, 3),
                **self.optimal.details}

    def baseline_json(self) -> dict[str, Any] | None:
        if self.baseline is None:
            return None
        return {"solver": self.baseline.solver, **self.baseline.objective.as_json(),
                "seconds": round(self.baseline.seconds, 3)}


def plan_matching(
    current: pl.DataFrame,
    offers: Sequence[Offer],
    geography: Geography,
    *,
    as_of: dt.date,
    capacities: Sequence[int] | None = None,
    filters: CandidateFilter | None = None,
    in_transfer: pl.DataFrame | None = None,
    margin_points: float = 5.0,
    with_baseline: bool = True,
) -> MatchingResult:
    """Match the list in `current` (snapshot columns) to `offers`; `capacities` default to slots."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    slots = np.asarray(capacities if capacities is not None else [o.slots for o in offers], dtype=np.int64)
    pool = build_pool(current, offers, geography, as_of=as_of, filters=filters, in_transfer=in_transfer,
                      capacities=slots.tolist())
    timings["candidates_and_distances"] = time.perf_counter() - started
    band = pool.pool["band"].to_numpy().astype(np.int8)
    days = pool.pool["days"].to_numpy().astype(np.int64)
    arrays = (pool.pair_candidate, pool.pair_offer, pool.pair_distance, slots, band, days)
    optimal = solve_optimal(*arrays, offer_group=pool.offer_group, unknown_distance=pool.unknown_distance)
    timings["solve"] = optimal.seconds
    baseline = solve_greedy(*arrays, unknown_distance=pool.unknown_distance) if with_baseline else None
    if baseline is not None:
        timings["greedy_baseline"] = baseline.seconds
    mark = time.perf_counter()
    assignments = _assignments(pool, offers, optimal)
    unassigned = _unassigned(pool, offers, optimal)
    eligible_rows = np.flatnonzero(pool.eligible_offers > 0)
    equity = equity_report(pool.pool[pool.pair_candidate[optimal.chosen]], pool.pool[eligible_rows],
                           pool.population, margin_points)
    timings["reasons_and_equity"] = time.perf_counter() - mark
    return MatchingResult(
        assignments=assignments, unassigned=unassigned, optimal=optimal, baseline=baseline, equity=equity,
        candidates=pool.population.height, eligible=int(eligible_rows.size),
        seconds=time.perf_counter() - started, timings={k: round(v, 3) for k, v in timings.items()},
        pairs_checked=pool.pairs_checked, eligible_pairs=pool.eligible_pairs,
        arcs_after_pruning=int(pool.pair_candidate.size),
    )


def _offer_frame(offers: Sequence[Offer]) -> pl.DataFrame:
    return pl.DataFrame({
        "offer_position": np.arange(len(offers), dtype=np.int32),
        "offer_id": [o.id if o.id is not None else -1 for o in offers],
        "to_provider_code": [o.provider_code for o in offers],
        "to_site_code": [o.site_code for o in offers],
    }, schema={"offer_position": pl.Int32, "offer_id": pl.Int64, "to_provider_code": pl.String,
               "to_site_code": pl.String})


def _assignments(pool: CandidatePool, offers: Sequence[Offer], optimal: Assignment) -> pl.DataFrame:
    chosen = optimal.chosen
    distance = pool.pair_distance[chosen].astype(np.float64) / DISTANCE_UNITS_PER_MILE
    known = pool.pool["home_latitude"].is_not_null().to_numpy()[pool.pair_candidate[chosen]]
    picked = pool.pool[pool.pair_candidate[chosen]].with_columns(
        pl.Series("offer_position", pool.pair_offer[chosen], dtype=pl.Int32),
        pl.Series("distance_miles", np.where(known, np.round(distance, 1), np.nan)).fill_nan(None),
    )
    return (picked.join(_offer_frame(offers), on="offer_position", how="left", maintain_order="left")
            .rename({"id": "pathway_row_id"})
            .sort(["offer_id", "band", "days", "pathway_row_id"], descending=[False, False, True, False])
            .select(ASSIGNMENT_COLUMNS))


def _unassigned(pool: CandidatePool, offers: Sequence[Offer], optimal: Assignment) -> pl.DataFrame:
    """Every population row not assigned, with its reason: ineligible / out_of_range (from the
    pool's checks) or outranked (eligible, but the optimum gave every slot it could take to others)."""
    assigned = np.zeros(pool.pool.height, dtype=bool)
    assigned[pool.pair_candidate[optimal.chosen]] = True
    rows = np.flatnonzero(~assigned & (pool.eligible_offers > 0))
    nearest = pl.DataFrame({
        "id": pool.pool["id"].gather(rows),
        "offers": pool.eligible_offers[rows],
        "offer_position": pool.nearest_offer[rows],
        "units": pool.nearest_units[rows],
    }).join(_offer_frame(offers), on="offer_position", how="left", maintain_order="left")
    outranked = nearest.select(
        "id",
        pl.lit("outranked").alias("reason"),
        (pl.lit("eligible for ") + pl.col("offers").cast(pl.String) + pl.lit(" offer(s), nearest offer ")
         + pl.col("offer_id").cast(pl.String).fill_null("?")
         + pl.when(pl.col("units") >= 0).then(pl.lit(" at ") + (pl.col("units") / DISTANCE_UNITS_PER_MILE)
                                               .round(1).cast(pl.String) + pl.lit(" miles")).otherwise(pl.lit(""))
         + pl.lit("; every slot it could take went to patients of higher priority or longer wait, "
                  "and no rearrangement frees one")).alias("detail"),
    )
    reasons = pl.concat([pool.unassignable, outranked], how="vertical")
    return (pool.population.join(reasons, on="id", how="inner")
            .rename({"id": "pathway_row_id"})
            .sort(["reason", "pathway_row_id"])
            .select(UNASSIGNED_COLUMNS))


# --- the store ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRun:
    run_id: int
    result: MatchingResult


def _geography(engine: Engine) -> Geography:
    from ptl.matching.geography import lsoa_centroids, provider_icbs, site_locations

    return Geography(centroids=lsoa_centroids(engine), sites=site_locations(engine), icbs=provider_icbs(engine))


def run_matching(
    engine: Engine,
    offer_ids: Sequence[int],
    *,
    created_by: str,
    organisation_code: str | None = None,
    filters: CandidateFilter | None = None,
    as_of: dt.date | None = None,
    margin_points: float = 5.0,
) -> StoredRun:
    """Match the current list to stored offers and save the run (proposals, reasons, equity)."""
    from ptl.matching.transfer import pathways_in_transfer, slots_used
    from ptl.views.snapshot import load_snapshot

    if not offer_ids:
        raise MatchingError("give at least one offer id (see `ptl offers list`)")
    as_of = as_of or dt.date.today()
    offers = get_offers(engine, offer_ids)
    ended = [o for o in offers if o.end_date < as_of]
    if ended:
        raise MatchingError(f"offer {ended[0].id} ended on {ended[0].end_date.isoformat()}; "
                            "match only offers whose window is still open")
    used = slots_used(engine, [o.id for o in offers if o.id is not None])
    capacities = [max(o.slots - used.get(o.id or -1, 0), 0) for o in offers]
    snapshot = load_snapshot(engine)
    result = plan_matching(snapshot.current, offers, _geography(engine), as_of=as_of, capacities=capacities,
                           filters=filters, in_transfer=pathways_in_transfer(engine),
                           margin_points=margin_points)
    run_id = save_run(engine, result, offers, created_by=created_by, organisation_code=organisation_code,
                      filters=filters, as_of=as_of, data_version=snapshot.version)
    return StoredRun(run_id=run_id, result=result)


def save_run(engine: Engine, result: MatchingResult, offers: Sequence[Offer], *, created_by: str,
             organisation_code: str | None, filters: CandidateFilter | None, as_of: dt.date,
             data_version: int) -> int:
    """Store a run, its proposals and its unassigned candidates in one transaction."""
    with write_connection(engine) as connection, connection.begin():
        run_id = int(connection.execute(insert(MatchingRun).values(
            created_at=dt.datetime.now(dt.UTC), created_by=created_by, created_by_organisation=organisation_code,
            offer_ids=json.dumps([o.id for o in offers]),
            filters=json.dumps(filters.as_dict()) if filters and filters.as_dict() else None,
            as_of=as_of, data_version=data_version, solver=result.optimal.solver, seconds=round(result.seconds, 3),
            candidates=result.candidates, eligible=result.eligible, assigned=result.assignments.height,
            objective=json.dumps(result.objective_json()), baseline=json.dumps(result.baseline_json()),
            equity=json.dumps(result.equity), timings=json.dumps(result.timings),
        ).returning(MatchingRun.id)).scalar_one())
        proposal_columns = [c.name for c in MatchingProposal.__table__.columns if c.name not in ("id", "run_id")]
        insert_frame(connection, "matching_proposal",
                     result.assignments.select(proposal_columns)
                     .with_columns(pl.lit(run_id, dtype=pl.Int64).alias("run_id")))
        insert_frame(connection, "matching_unassigned",
                     result.unassigned.with_columns(pl.lit(run_id, dtype=pl.Int64).alias("run_id")))
    return run_id


class UnknownRun(LookupError):
    """No matching run with that id."""


def get_run(engine: Engine, run_id: int, *, unassigned_reason: str | None = None,
            unassigned_after: int = 0, unassigned_limit: int | None = 1000) -> dict[str, Any]:
    """A stored run as JSON-ready data: header, assignments, unassigned (paged), equity."""
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        run = session.get(MatchingRun, run_id)
        if run is None:
            raise UnknownRun(f"there is no matching run {run_id}")
        proposals = session.execute(select(MatchingProposal).where(MatchingProposal.run_id == run_id)
                                    .order_by(MatchingProposal.id)).scalars().all()
        statement = select(MatchingUnassigned).where(MatchingUnassigned.run_id == run_id,
                                                     MatchingUnassigned.id > unassigned_after)
        if unassigned_reason:
            statement = statement.where(MatchingUnassigned.reason == unassigned_reason)
        if unassigned_limit is not None:
            statement = statement.limit(unassigned_limit)
        unassigned = session.execute(statement.order_by(MatchingUnassigned.id)).scalars().all()
        sites = {o.id: (o.provider_code, o.site_code) for o in session.execute(
            select(CapacityOffer).where(CapacityOffer.id.in_(json.loads(run.offer_ids)))).scalars()}
        by_reason = dict(session.execute(
            select(MatchingUnassigned.reason, func.count()).where(MatchingUnassigned.run_id == run_id)
            .group_by(MatchingUnassigned.reason)).tuples().all())
        return {
            "id": run.id, "created_at": run.created_at, "created_by": run.created_by, "as_of": run.as_of,
            "offer_ids": json.loads(run.offer_ids), "filters": json.loads(run.filters) if run.filters else {},
            "data_version": run.data_version, "solver": run.solver, "seconds": run.seconds,
            "candidates": run.candidates, "eligible": run.eligible,
            "objective": json.loads(run.objective),
            "baseline": json.loads(run.baseline) if run.baseline else None,
            "timings": json.loads(run.timings) if run.timings else {},
            "equity": json.loads(run.equity),
            "assignments": [{"proposal_id": p.id, **{c: getattr(p, c) for c in ASSIGNMENT_COLUMNS
                                                     if c not in ("to_provider_code", "to_site_code")},
                             "to_provider_code": sites.get(p.offer_id, (None, None))[0],
                             "to_site_code": sites.get(p.offer_id, (None, None))[1]}
                            for p in proposals],
            "unassigned_by_reason": {k: int(v) for k, v in by_reason.items()},
            "unassigned": [{"id": u.id, **{c: getattr(u, c) for c in UNASSIGNED_COLUMNS}} for u in unassigned],
        }


def list_runs(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Recent runs, newest first (headline figures only)."""
    with engine.connect() as connection:
        rows = connection.execute(select(
            MatchingRun.id, MatchingRun.created_at, MatchingRun.created_by, MatchingRun.offer_ids,
            MatchingRun.candidates, MatchingRun.eligible, MatchingRun.assigned, MatchingRun.seconds,
        ).order_by(MatchingRun.id.desc()).limit(limit)).all()
    return [{**dict(r._mapping), "offer_ids": json.loads(r.offer_ids)} for r in rows]
