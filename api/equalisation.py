"""`/api/v1/equalisation`: for one treatment function, how expected waits differ across sites and
a proposal of moves that would even them out (for people to review; nothing is changed).

Method: `ptl/views/equalisation.py`. The patients who would move first are pathway rows,
disclosed per role like the queue (and audited when identifiable); outside the identifiable
tier, site counts and move sizes under `PTL_SUPPRESS_BELOW` are withheld.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from api.context import api_context
from api.disclosure import must_suppress
from api.formats import FormatParam, csv_response, wants_csv
from api.guards import READERS, allow
from api.problems import ProblemError
from api.view_params import FILTER_DEPENDENCIES, cached_view, with_record_columns
from ptl.store.access import Client
from ptl.views.equalisation import EqualisationProposal, equalisation
from ptl.views.equity import suppress
from ptl.views.filters import ViewFilter

_SITE_DERIVED: Final[dict[str, tuple[str, ...]]] = {
    "capacity_queue": ("expected_wait_weeks", "expected_wait_after_weeks", "target_queue"),
    "eligible_to_move": (),
    "patients_out": (),
    "patients_in": (),
}


class EqualisationSite(msgspec.Struct):
    provider_code: str
    site_code: str | None
    role: str
    capacity_queue: int | None
    weekly_additions: float | None
    weekly_removals: float | None
    expected_wait_weeks: float | None
    spare_per_week: float | None
    target_queue: float | None
    eligible_to_move: int | None
    patients_out: int | None
    patients_in: int | None
    expected_wait_after_weeks: float | None
    suppressed: bool


class Move(msgspec.Struct):
    from_provider_code: str
    from_site_code: str | None
    to_provider_code: str
    to_site_code: str | None
    patients: int | None
    suppressed: bool


class MovingPatient(msgspec.Struct):
    move_order: int
    id: int
    person_key: str
    identifiable: bool
    person_id: int | None
    provider_code: str
    site_code: str | None
    to_provider_code: str | None
    to_site_code: str | None
    clinical_priority: str | None
    procedure_code: str | None
    rtt_start_date: dt.date | None
    days_waited: int | None
    weeks_waited: int | None
    imd_quintile: int | None
    ethnic_group: str | None
    age_band: str | None
    pathway_id: str | None
    local_patient_id: str | None
    nhs_number: str | None
    family_name: str | None
    given_name: str | None
    date_of_birth: dt.date | None
    postcode: str | None


class EqualisationAnswer(msgspec.Struct):
    treatment_function_code: str
    pooled_wait_weeks: float | None
    spread: dict[str, float | None]
    sites: list[EqualisationSite]
    moves: list[Move]
    patients: list[MovingPatient]
    data_version: int
    filters: dict[str, str]
    suppress_below: int | None


class EqualisationController(Controller):
    path = "/equalisation"
    tags = ["views"]
    guards = [allow(*READERS)]
    dependencies = FILTER_DEPENDENCIES

    @get("/", sync_to_thread=True, summary="Spread of expected waits and a proposal to even them")
    def equalisation_view(
        self,
        request: Request[Client, Any, Any],
        filters: ViewFilter,
        procedure: Annotated[str | None, Parameter(description="OPCS-4 procedure code (optional)")] = None,
        horizon_weeks: Annotated[float, Parameter(
            gt=0, le=52, description="weeks of receivers' spare capacity to fill (default 1)")] = 1.0,
        patient_limit: Annotated[int, Parameter(ge=0, le=5000, description="patients to list")] = 500,
        suppress_small: Annotated[bool, Parameter(
            query="suppress", description="icb keys: apply small-number suppression (others always get it)")] = False,
        output: FormatParam = None,
    ) -> Response[EqualisationAnswer]:
        if filters.treatment_function_code is None:
            raise ProblemError(400, "equalisation compares sites for one treatment function: add "
                                    "`treatment_function=` (e.g. 110 for trauma and orthopaedics)")
        if procedure:
            filters = ViewFilter(**{**filters.as_dict(), "procedure_code": procedure.strip().upper()})
        context = api_context(request)
        client = request.user
        snapshot = context.snapshot()
        suppressed = must_suppress(client, suppress_small)
        threshold = context.settings.suppress_below

        def build() -> tuple[EqualisationProposal, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
            proposal = equalisation(snapshot, filters, horizon_weeks)
            # Record columns joined once per version, not per request (a join against the list).
            patients = with_record_columns(snapshot, proposal.patients)
            sites, moves = proposal.sites, proposal.moves
            if suppressed:
                sites = suppress(sites, list(_SITE_DERIVED), threshold, _SITE_DERIVED)
                moves = suppress(moves, ["patients"], threshold)
            else:
                sites = sites.with_columns(pl.lit(False).alias("suppressed"))
                moves = moves.with_columns(pl.lit(False).alias("suppressed"))
            return proposal, sites, moves, patients

        proposal, sites, moves, patients = cached_view(
            context, snapshot, ("equalisation", filters, horizon_weeks, suppressed), build)
        disclosed = context.disclose(request, patients.head(patient_limit))
        patient_rows = disclosed.frame.select(MovingPatient.__struct_fields__)
        if wants_csv(request, output):
            return csv_response(patient_rows, "equalisation-patients")  # type: ignore[return-value]
        body = {
            "treatment_function_code": filters.treatment_function_code,
            "pooled_wait_weeks": proposal.pooled_wait_weeks, "spread": proposal.spread,
            "sites": sites.select(EqualisationSite.__struct_fields__).to_dicts(),
            "moves": moves.select(Move.__struct_fields__).to_dicts(),
            "patients": patient_rows.to_dicts(), "data_version": snapshot.version,
            "filters": filters.as_dict(), "suppress_below": threshold if suppressed else None,
        }
        return Response(body)  # type: ignore[arg-type]
