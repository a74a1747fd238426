"""`/api/v1/persons/{person_id}`: one person's open pathways across providers (identifiable tier).

`icb` keys see every pathway in full. A `provider` key sees the person only when they have a
pathway at its organisation (404 otherwise, so the answer never says whether someone waits
elsewhere), and only its own pathways identifiably; the rest are de-identified. Audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from api.context import api_context
from api.formats import FormatParam, csv_response, wants_csv
from api.guards import IDENTIFIABLE_READERS, allow
from api.pagination import MAX_ID
from api.problems import ProblemError
from ptl.store.access import Client


class PersonPathway(msgspec.Struct):
    id: int
    identifiable: bool
    provider_code: str
    site_code: str | None
    census_date: dt.date
    treatment_function_code: str
    procedure_code: str | None
    clinical_priority: str | None
    waiting_list_type: str
    rtt_status: str | None
    rtt_start_date: dt.date | None
    days_waited: int | None
    week_band: int | None
    tci_date: dt.date | None
    last_validated_date: dt.date | None
    pathway_id: str | None
    referral_id: str | None
    local_patient_id: str | None
    nhs_number: str | None
    family_name: str | None
    given_name: str | None
    date_of_birth: dt.date | None
    postcode: str | None


class Person(msgspec.Struct):
    person_id: int
    person_key: str
    pathways: list[PersonPathway]
    data_version: int


class PersonsController(Controller):
    path = "/persons"
    tags = ["views"]
    guards = [allow(*IDENTIFIABLE_READERS)]

    @get("/{person_id:int}", sync_to_thread=True, summary="One person's open pathways across providers")
    def person(self, request: Request[Client, Any, Any],
               person_id: Annotated[int, Parameter(ge=1, le=MAX_ID)], output: FormatParam = None) -> Response[Person]:
        context = api_context(request)
        client = request.user
        snapshot = context.snapshot()
        rows = snapshot.current.filter(pl.col("person_id") == person_id).sort("provider_code", "id")
        not_found = ProblemError(404, f"no person {person_id} with an open pathway"
                                      + (" at your organisation" if client.role == "provider" else "")
                                      + "; person ids come from the queue (`person_id`) and identity linking")
        if rows.height == 0:
            raise not_found
        if client.role == "provider" and not (rows["provider_code"] == client.organisation_code).any():
            raise not_found
        disclosed = context.disclose(request, rows, filters={"person_id": person_id})
        frame = disclosed.frame.select(PersonPathway.__struct_fields__)
        if wants_csv(request, output):
            return csv_response(frame, f"person-{person_id}")  # type: ignore[return-value]
        body = {"person_id": person_id, "person_key": context.pseudonymiser.key(person_id, None),
                "pathways": frame.to_dicts(), "data_version": snapshot.version}
        return Response(body)  # type: ignore[arg-type]
