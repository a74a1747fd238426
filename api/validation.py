"""`/api/v1/validation`: worklists that keep the list true (duplicates, clock-stop statuses,
clock starts, long waiters not validated, missing P-codes, identity conflicts).

Pathway rows are disclosed per role like the queue. Rejected rows quote the raw value that was
wrong (which may be patient data): outside the identifiable tier for their provider, the value
and the quoted reason are withheld. Identity conflicts carry evidence about records of several
providers: `icb` keys see them whole; other roles see the list without evidence or record ids,
providers only the items touching their organisation.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Literal

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from api.context import api_context
from api.formats import FormatParam, csv_response, wants_csv
from api.guards import READERS, allow
from api.pagination import MAX_LIMIT
from api.view_params import FILTER_DEPENDENCIES, cached_view, with_record_columns
from ptl.store.access import Client
from ptl.views.filters import ViewFilter
from ptl.views.validation import worklist

WorklistKind = Literal["duplicate_pathways", "clock_stop_status", "clock_start", "not_validated",
                       "pcode_missing", "identity_conflicts"]
_WITHHELD: Final[str] = "withheld: the value belongs to another organisation's record"
#: Identity-review columns only the ICB sees (evidence holds several providers' records).
_REVIEW_ICB_ONLY: Final[tuple[str, ...]] = ("evidence", "subject_key", "source_identity_ids", "person_ids")


class WorklistItem(msgspec.Struct):
    source: str
    id: int | None
    feed_id: int | None
    row_number: int | None
    person_key: str | None
    identifiable: bool
    person_id: int | None
    provider_code: str | None
    site_code: str | None
    census_date: dt.date | None
    pathway_id_issuer: str | None
    pathway_id: str | None
    treatment_function_code: str | None
    waiting_list_type: str | None
    rtt_status: str | None
    rtt_start_date: dt.date | None
    days_waited: int | None
    week_band: int | None
    clinical_priority: str | None
    last_validated_date: dt.date | None
    issue: str | None
    raw_value: str | None
    duplicate_group: int | None
    keep: bool | None
    wait_tier: int | None
    local_patient_id: str | None
    nhs_number: str | None
    family_name: str | None
    given_name: str | None
    date_of_birth: dt.date | None
    postcode: str | None


class Worklist(msgspec.Struct):
    kind: str
    #: pathway worklists: `WorklistItem`s; identity conflicts: review items
    items: list[dict[str, Any]]
    total: int
    data_version: int
    filters: dict[str, str]


class ValidationController(Controller):
    path = "/validation"
    tags = ["views"]
    guards = [allow(*READERS)]
    dependencies = FILTER_DEPENDENCIES

    @get("/", sync_to_thread=True, summary="A validation worklist")
    def worklist_view(
        self,
        request: Request[Client, Any, Any],
        filters: ViewFilter,
        kind: Annotated[WorklistKind, Parameter(description="which worklist")],
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=1_000_000_000, description="rows to skip")] = 0,
        output: FormatParam = None,
    ) -> Response[Worklist]:
        context = api_context(request)
        client = request.user
        snapshot = context.snapshot()
        rows = cached_view(context, snapshot, ("validation", kind, filters),
                           lambda: self._worklist(snapshot, kind, filters))
        csv = wants_csv(request, output)
        if kind == "identity_conflicts":
            items = self._reviews(rows, client)
            total = items.height
            items = items if csv else items.slice(offset, limit)
            if client.role == "icb" and items.height:
                # Evidence names records (provider, local id): it stays out of the analytics
                # snapshot and is read from the identifiable tier for the ICB only, audited.
                from ptl.identity import review_items

                with context.engine.connect() as connection:
                    evidence = review_items(connection).select("id", "evidence")
                items = items.drop("evidence", strict=False).join(evidence, on="id", how="left",
                                                                  maintain_order="left")
                context.audit(request, rows=items.height)
        else:
            total = rows.height
            page = rows if csv else rows.slice(offset, limit)
            items = self._pathways(request, snapshot, page, client)
        if csv:
            return csv_response(items, f"validation-{kind}")  # type: ignore[return-value]
        body = {"kind": kind, "items": items.to_dicts(), "total": total,
                "data_version": snapshot.version, "filters": filters.as_dict()}
        return Response(body)  # type: ignore[arg-type]

    def _pathways(self, request: Request[Client, Any, Any], snapshot: Any, page: pl.DataFrame,
                  client: Client) -> pl.DataFrame:
        context = api_context(request)
        disclosed = context.disclose(request, page)
        frame = disclosed.frame.with_columns(
            # Rejected rows have no person: no key to show.
            pl.when(pl.col("source") == "pathway").then(pl.col("person_key")).alias("person_key"),
            pl.when(pl.col("identifiable") | (pl.col("source") == "pathway")).then(pl.col("issue"))
            .otherwise(pl.lit(_WITHHELD)).alias("issue"),
            pl.when(pl.col("identifiable")).then(pl.col("raw_value")).alias("raw_value"),
        )
        return frame.select(WorklistItem.__struct_fields__)

    @staticmethod
    def _worklist(snapshot: Any, kind: str, filters: ViewFilter) -> pl.DataFrame:
        rows = worklist(snapshot, kind, filters)
        if kind == "identity_conflicts":
            return rows
        # Record columns joined once per version, not per request (a join against the list).
        return with_record_columns(snapshot, rows.with_columns(pl.col("id").cast(pl.Int64)))

    def _reviews(self, rows: pl.DataFrame, client: Client) -> pl.DataFrame:
        if client.role == "icb":
            return rows
        if client.role == "provider" and "provider_codes" in rows.columns:
            rows = rows.filter(pl.col("provider_codes").str.split(",").list.contains(client.organisation_code))
        return rows.drop([c for c in _REVIEW_ICB_ONLY if c in rows.columns])
