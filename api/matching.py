"""`/api/v1/matching`: optimal matching runs (icb keys) and the receiving-provider report.

A run reads the current list and the offers, assigns patients optimally (clinical priority,
then longest wait, then shortest journey; see `ptl/matching/assignment.py`) and saves the
proposals, the reason for every candidate not assigned and the equity guard's report. Runs
carry pathway ids and person ids: identifiable tier, `icb` keys only, audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED

from api.context import api_context
from api.disclosure import must_suppress, suppress_counts
from api.formats import FormatParam, csv_response, wants_csv
from api.guards import READERS, allow
from api.offers import ods_param
from api.pagination import MAX_LIMIT
from api.problems import ProblemError
from ptl.matching.eligibility import CandidateFilter, MatchingError
from ptl.matching.equity import acceptance_report
from ptl.matching.offer import UnknownOffer
from ptl.matching.run import UnknownRun, get_run, list_runs, run_matching
from ptl.matching.transfer import transfers_frame
from ptl.store.access import Client

#: Ids are 64-bit in the store; larger numbers are refused as bad requests, not database errors.
MAX_ID = 2**62
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]


class RunRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Which offers to match, and optional narrowing of the candidates."""

    offer_ids: Annotated[list[Id], msgspec.Meta(description="offers to match together", min_length=1)]
    provider_codes: Annotated[list[str] | None, msgspec.Meta(
        description="only patients of these sending providers")] = None
    waiting_list_type: Annotated[Literal["IRTT", "ORTT"] | None, msgspec.Meta(
        description="only this RTT list")] = None
    min_days_waited: Annotated[int, msgspec.Meta(description="only patients waiting at least this long",
                                                  ge=0, le=100_000)] | None = None
    as_of: Annotated[dt.date | None, msgspec.Meta(
        description="run date for 'booked within 8 weeks' and offer windows (default today)")] = None


class RunAssignment(msgspec.Struct):
    proposal_id: int
    offer_id: int
    provider_code: str
    to_provider_code: str | None
    to_site_code: str | None
    pathway_row_id: int
    pathway_id: str
    pathway_id_issuer: str
    person_id: int | None
    source_identity_id: int
    treatment_function_code: str
    rtt_start_date: dt.date | None
    clinical_priority: str | None
    days_waited: int | None
    distance_miles: float | None
    asa_grade: int | None
    imd_quintile: int | None
    ethnic_group: str | None
    age_band: str | None
    sex: str | None
    learning_disability: bool | None


class RunUnassigned(msgspec.Struct):
    id: int
    pathway_row_id: int
    provider_code: str
    pathway_id: str
    person_id: int | None
    clinical_priority: str | None
    days_waited: int | None
    #: ineligible | out_of_range | outranked
    reason: str
    detail: str


class Run(msgspec.Struct):
    id: int
    created_at: dt.datetime
    created_by: str
    as_of: dt.date
    offer_ids: list[int]
    filters: dict[str, Any]
    data_version: int
    solver: str
    seconds: float
    candidates: int
    eligible: int
    #: assigned by priority band, total days waited, total miles, cost scaling and solver figures
    objective: dict[str, Any]
    #: the greedy baseline's objective on the same candidates
    baseline: dict[str, Any] | None
    timings: dict[str, float]
    #: moved vs eligible vs list by group, and the guard's flags
    equity: dict[str, Any]
    assignments: list[RunAssignment]
    unassigned_by_reason: dict[str, int]
    #: a page of the unassigned candidates (see `unassigned_after` / `next_unassigned_after`)
    unassigned: list[RunUnassigned]
    next_unassigned_after: int | None = None


class RunSummary(msgspec.Struct):
    id: int
    created_at: dt.datetime
    created_by: str
    offer_ids: list[int]
    candidates: int
    eligible: int
    assigned: int
    seconds: float


class RunList(msgspec.Struct):
    items: list[RunSummary]


class AcceptanceRow(msgspec.Struct):
    to_provider_code: str
    period_start: dt.date
    dimension: str
    group: str
    proposed: int | None
    accepted: int | None
    declined: int | None
    completed: int | None
    acceptance_rate_pct: float | None


class AcceptanceAnswer(msgspec.Struct):
    items: list[AcceptanceRow]
    period: str
    suppress_below: int | None


def _run_answer(data: dict[str, Any], limit: int) -> Run:
    run = msgspec.convert(data, Run, strict=False)
    if len(run.unassigned) == limit and run.unassigned:
        run.next_unassigned_after = run.unassigned[-1].id
    return run


class MatchingController(Controller):
    path = "/matching"
    tags = ["mutual aid"]

    @post("/runs", sync_to_thread=True, status_code=HTTP_201_CREATED, guards=[allow("icb")],
          summary="Match waiting patients to offers optimally; returns the run with proposals and equity")
    def create_run(self, request: Request[Client, Any, Any], data: RunRequest) -> Run:
        context = api_context(request)
        client = request.user
        filters = CandidateFilter(
            provider_codes=tuple(c for c in (ods_param("provider_codes", p) for p in data.provider_codes) if c)
            if data.provider_codes else None,
            waiting_list_type=data.waiting_list_type, min_days_waited=data.min_days_waited)
        try:
            stored = run_matching(context.engine, data.offer_ids, created_by=client.key_id,
                                  organisation_code=client.organisation_code, filters=filters, as_of=data.as_of,
                                  margin_points=context.settings.equity_margin_points)
        except UnknownOffer as exc:
            raise ProblemError(400, str(exc)) from None
        except MatchingError as exc:
            raise ProblemError(422, str(exc)) from None
        limit = 1000
        answer = _run_answer(get_run(context.engine, stored.run_id, unassigned_limit=limit), limit)
        context.audit(request, rows=len(answer.assignments) + len(answer.unassigned), action="matching_run",
                      status_code=201, filters={"run_id": stored.run_id, "offer_ids": data.offer_ids})
        return answer

    @get("/runs", sync_to_thread=True, guards=[allow("icb")], summary="Recent matching runs, newest first")
    def runs(self, request: Request[Client, Any, Any],
             limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50) -> RunList:
        rows = list_runs(api_context(request).engine, limit=limit)
        return RunList(items=[msgspec.convert(r, RunSummary, strict=False) for r in rows])

    @get("/runs/{run_id:int}", sync_to_thread=True, guards=[allow("icb")],
         summary="One run: proposals, unassigned candidates with reasons (paged), objective, equity report")
    def run(
        self,
        request: Request[Client, Any, Any],
        run_id: Annotated[int, Parameter(ge=1, le=MAX_ID)],
        reason: Annotated[Literal["ineligible", "out_of_range", "outranked"] | None, Parameter(
            description="only unassigned candidates with this reason")] = None,
        unassigned_after: Annotated[int, Parameter(ge=0, le=MAX_ID, description="continue after this unassigned id")] = 0,
        unassigned_limit: Annotated[int, Parameter(ge=0, le=100_000)] = 1000,
    ) -> Run:
        context = api_context(request)
        try:
            data = get_run(context.engine, run_id, unassigned_reason=reason, unassigned_after=unassigned_after,
                           unassigned_limit=unassigned_limit)
        except UnknownRun as exc:
            raise ProblemError(404, f"{exc}; see GET /api/v1/matching/runs") from None
        answer = _run_answer(data, unassigned_limit)
        context.audit(request, rows=len(answer.assignments) + len(answer.unassigned),
                      filters={"run_id": run_id, **dict(request.query_params)})
        return answer

    @get("/acceptance", sync_to_thread=True, guards=[allow(*READERS)],
         summary="Receiving providers: acceptance of transfers by ASA grade, deprivation and ethnicity over time")
    def acceptance(
        self,
        request: Request[Client, Any, Any],
        period: Annotated[Literal["week", "month"], Parameter(description="period of the proposal date")] = "month",
        provider: Annotated[str | None, Parameter(description="only this receiving provider")] = None,
        suppress_small: Annotated[bool, Parameter(
            query="suppress", description="icb keys: apply small-number suppression (others always get it)")] = False,
        output: FormatParam = None,
    ) -> Response[AcceptanceAnswer]:
        context = api_context(request)
        frame = acceptance_report(transfers_frame(context.engine), "1w" if period == "week" else "1mo")
        wanted = ods_param("provider", provider)
        if wanted:
            frame = frame.filter(pl.col("to_provider_code") == wanted)
        suppressed = must_suppress(request.user, suppress_small)
        threshold = context.settings.suppress_below
        if suppressed:
            counts = ["proposed", "accepted", "declined", "completed"]
            frame = suppress_counts(frame, counts, threshold)
            hidden = pl.any_horizontal([pl.col(f"{c}_suppressed") for c in counts])
            frame = frame.with_columns(pl.when(hidden).then(None).otherwise(pl.col("acceptance_rate_pct"))
                                       .alias("acceptance_rate_pct"))
        frame = frame.select(AcceptanceRow.__struct_fields__)
        if wants_csv(request, output):
            return csv_response(frame, "acceptance")  # type: ignore[return-value]
        return Response(AcceptanceAnswer(items=msgspec.convert(frame.to_dicts(), list[AcceptanceRow]),
                                         period=period, suppress_below=threshold if suppressed else None))
