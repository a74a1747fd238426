"""`/api/v1/transfers`: the mutual-aid workflow, step by step, each step audited.

- `POST /transfers` (icb): turn proposals of a matching run into transfers;
- `POST /transfers/{id}/transitions` (the sending provider: `offered_to_patient`, `accepted`,
  `declined` with a reason; the receiving provider: `completed`);
- `GET /transfers` (icb: all; provider: where it sends or receives), `GET /transfers/{id}` with
  its events (who, when);
- `GET /transfers/declines`: declines by group (two declined reasonable offers can end a clock).

Illegal steps answer 409 with what the transfer's state allows next; steps by the wrong
organisation or role answer 403.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.context import api_context
from api.disclosure import must_suppress, suppress_counts
from api.formats import FormatParam, csv_response, wants_csv
from api.guards import IDENTIFIABLE_READERS, READERS, allow
from api.matching import MAX_ID, Id
from api.offers import ods_param
from api.pagination import MAX_LIMIT
from api.problems import ProblemError
from ptl.matching.equity import decline_report
from ptl.matching.transfer import (
    Actor,
    TransferError,
    TransferForbidden,
    UnknownTransfer,
    advance_transfer,
    get_transfer,
    list_transfers,
    propose_transfers,
    transfers_frame,
)
from ptl.store.access import Client


class ProposeRequest(msgspec.Struct, forbid_unknown_fields=True):
    run_id: Annotated[int, msgspec.Meta(description="the matching run whose proposals to take forward",
                                        ge=1, le=MAX_ID)]
    proposal_ids: Annotated[list[Id] | None, msgspec.Meta(
        description="proposals of that run (`assignments[].proposal_id`); omit for all of them")] = None


class StepRequest(msgspec.Struct, forbid_unknown_fields=True):
    to_state: Annotated[Literal["offered_to_patient", "accepted", "declined", "completed"], msgspec.Meta(
        description="the next state")]
    reason: Annotated[str, msgspec.Meta(
        description="why the patient declined (required for declined)", max_length=500)] | None = None


class TransferEventView(msgspec.Struct):
    from_state: str | None
    to_state: str
    occurred_at: dt.datetime
    actor: str
    actor_organisation: str | None
    actor_role: str
    note: str | None


class TransferView(msgspec.Struct):
    id: int
    run_id: int
    proposal_id: int
    offer_id: int
    #: proposed | offered_to_patient | accepted | declined | completed
    state: str
    pathway_row_id: int
    pathway_id: str
    pathway_id_issuer: str
    person_id: int | None
    treatment_function_code: str
    rtt_start_date: dt.date | None
    from_provider_code: str
    to_provider_code: str
    to_site_code: str
    clinical_priority: str | None
    days_waited: int | None
    distance_miles: float | None
    asa_grade: int | None
    imd_quintile: int | None
    ethnic_group: str | None
    age_band: str | None
    sex: str | None
    learning_disability: bool | None
    proposed_at: dt.datetime
    proposed_by: str
    offered_at: dt.datetime | None
    offered_by: str | None
    decided_at: dt.datetime | None
    decided_by: str | None
    decline_reason: str | None
    completed_at: dt.datetime | None
    completed_by: str | None
    updated_at: dt.datetime
    events: list[TransferEventView] | None = None


class TransferList(msgspec.Struct):
    items: list[TransferView]
    next_after_id: int | None


class Proposed(msgspec.Struct):
    transfer_ids: list[int]


class DeclineRow(msgspec.Struct):
    dimension: str
    group: str
    offered: int | None
    declined: int | None
    decline_rate_pct: float | None
    pathways_declined_twice_or_more: int | None


class DeclineAnswer(msgspec.Struct):
    items: list[DeclineRow]
    suppress_below: int | None


def _actor(client: Client) -> Actor:
    return Actor(name=client.key_id, role=client.role, organisation_code=client.organisation_code)


def _may_see(client: Client, transfer: dict[str, Any]) -> bool:
    return client.role == "icb" or client.organisation_code in (transfer["from_provider_code"],
                                                                transfer["to_provider_code"])


class TransfersController(Controller):
    path = "/transfers"
    tags = ["mutual aid"]

    @post("/", sync_to_thread=True, status_code=HTTP_201_CREATED, guards=[allow("icb")],
          summary="Propose transfers from a matching run's proposals")
    def propose(self, request: Request[Client, Any, Any], data: ProposeRequest) -> Proposed:
        context = api_context(request)
        try:
            ids = propose_transfers(context.engine, data.run_id, _actor(request.user), data.proposal_ids)
        except UnknownTransfer as exc:
            raise ProblemError(404, str(exc)) from None
        except TransferError as exc:
            raise ProblemError(409, str(exc)) from None
        context.audit(request, rows=0, action="transfer_proposed", status_code=201,
                      filters={"run_id": data.run_id, "transfer_ids": ids})
        return Proposed(transfer_ids=ids)

    @get("/", sync_to_thread=True, guards=[allow(*IDENTIFIABLE_READERS)],
         summary="Transfers, oldest first (providers: those they send or receive)")
    def list_transfers(
        self,
        request: Request[Client, Any, Any],
        transfer_state: Annotated[Literal["proposed", "offered_to_patient", "accepted", "declined", "completed"] | None,
                                  Parameter(query="state", description="only transfers in this state")] = None,
        provider: Annotated[str | None, Parameter(description="sending or receiving provider")] = None,
        run_id: Annotated[int | None, Parameter(ge=1, le=MAX_ID, description="only from this matching run")] = None,
        offer_id: Annotated[int | None, Parameter(ge=1, le=MAX_ID, description="only for this offer")] = None,
        after_id: Annotated[int, Parameter(ge=0, le=MAX_ID, description="continue after this transfer id")] = 0,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 100,
    ) -> TransferList:
        client = request.user
        context = api_context(request)
        wanted = ods_param("provider", provider)
        if client.role == "provider":
            if wanted is not None and wanted != client.organisation_code:
                raise ProblemError(403, f"a provider key sees the transfers of its own organisation only "
                                        f"({client.organisation_code})")
            wanted = client.organisation_code
        rows = list_transfers(context.engine, state=transfer_state, provider_code=wanted, run_id=run_id, offer_id=offer_id,
                              after_id=after_id, limit=limit)
        context.audit(request, rows=len(rows))
        items = [msgspec.convert(r, TransferView, strict=False) for r in rows]
        return TransferList(items=items, next_after_id=items[-1].id if len(items) == limit else None)

    @get("/{transfer_id:int}", sync_to_thread=True, guards=[allow(*IDENTIFIABLE_READERS)],
         summary="One transfer with every step: who, when, and any decline reason")
    def transfer(self, request: Request[Client, Any, Any],
                 transfer_id: Annotated[int, Parameter(ge=1, le=MAX_ID)]) -> TransferView:
        context = api_context(request)
        try:
            data = get_transfer(context.engine, transfer_id)
        except UnknownTransfer as exc:
            raise ProblemError(404, str(exc)) from None
        if not _may_see(request.user, data):
            raise ProblemError(404, f"there is no transfer {transfer_id} involving your organisation")
        context.audit(request, rows=1, filters={"transfer_id": transfer_id})
        return msgspec.convert(data, TransferView, strict=False)

    @post("/{transfer_id:int}/transitions", sync_to_thread=True, status_code=HTTP_200_OK,
          guards=[allow("icb", "provider")],
          summary="Take the next step: offered_to_patient, accepted, declined (with reason), completed")
    def step(self, request: Request[Client, Any, Any], transfer_id: Annotated[int, Parameter(ge=1, le=MAX_ID)],
             data: StepRequest) -> TransferView:
        context = api_context(request)
        try:
            result = advance_transfer(context.engine, transfer_id, data.to_state, _actor(request.user), data.reason)
        except UnknownTransfer as exc:
            raise ProblemError(404, str(exc)) from None
        except TransferForbidden as exc:
            raise ProblemError(403, str(exc)) from None
        except TransferError as exc:
            raise ProblemError(409, str(exc)) from None
        context.audit(request, rows=1, action="transfer_step", filters={"transfer_id": transfer_id,
                                                                       "to_state": data.to_state})
        return msgspec.convert(result, TransferView, strict=False)

    @get("/declines", sync_to_thread=True, guards=[allow(*READERS)],
         summary="Declined offers by group (IMD quintile, ethnic group, age band, sex, ASA, learning disability)")
    def declines(
        self,
        request: Request[Client, Any, Any],
        suppress_small: Annotated[bool, Parameter(
            query="suppress", description="icb keys: apply small-number suppression (others always get it)")] = False,
        output: FormatParam = None,
    ) -> Response[DeclineAnswer]:
        context = api_context(request)
        frame = decline_report(transfers_frame(context.engine))
        suppressed = must_suppress(request.user, suppress_small)
        threshold = context.settings.suppress_below
        if suppressed:
            counts = ["offered", "declined", "pathways_declined_twice_or_more"]
            frame = suppress_counts(frame, counts, threshold)
            hidden = pl.col("offered_suppressed") | pl.col("declined_suppressed")
            frame = frame.with_columns(pl.when(hidden).then(None).otherwise(pl.col("decline_rate_pct"))
                                       .alias("decline_rate_pct"))
        frame = frame.select(DeclineRow.__struct_fields__)
        if wants_csv(request, output):
            return csv_response(frame, "declines")  # type: ignore[return-value]
        return Response(DeclineAnswer(items=msgspec.convert(frame.to_dicts(), list[DeclineRow]),
                                      suppress_below=threshold if suppressed else None))
