"""`/api/v1/capacity`: providers' declared weekly capacity (planning figures, no patient data).

`POST` declares (a `provider` key for its own organisation, or an `icb` key for any provider);
`DELETE /{id}` withdraws a declaration made in error (same rule); `GET` lists them for any
reader, each with its status against the provider's current census. Declaring and withdrawing
are decisions: each writes an `audit_event`. What a declaration means, which one is in force and
how site statistics use it: `ptl/declared_capacity.py` and `ptl/views/sites.py`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED

from api.context import api_context
from api.guards import READERS, allow
from api.offers import ods_param
from api.pagination import MAX_ID
from api.problems import InvalidParam, ProblemError, problem_response
from ptl.declared_capacity import (
    MAX_NOTE_CHARACTERS,
    MAX_WEEKLY_CAPACITY,
    AlreadyWithdrawn,
    CapacityError,
    Declaration,
    UnknownDeclaration,
    declare,
    get_declaration,
    list_declarations,
    withdraw,
)
from ptl.store.access import Client

#: Roles that may declare or withdraw (providers for their own organisation only).
DECLARERS = ("icb", "provider")


class CapacityDeclarationRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Clock stops a week the provider plans to deliver for a scope, from a date on."""

    provider_code: Annotated[str, msgspec.Meta(description="ODS code of the provider")]
    weekly_capacity: Annotated[int, msgspec.Meta(
        ge=1, le=MAX_WEEKLY_CAPACITY, description="clock stops a week the provider can deliver for the scope")]
    site_code: Annotated[str | None, msgspec.Meta(
        description="one site of the provider; omit for the whole provider")] = None
    treatment_function_code: Annotated[str | None, msgspec.Meta(
        description="treatment function, 3 characters (e.g. 110); omit for every specialty")] = None
    valid_from: Annotated[dt.date | None, msgspec.Meta(
        description="in force from this date on (until a later declaration for the scope); default: "
                    "the provider's current census date")] = None
    note: Annotated[str, msgspec.Meta(
        max_length=MAX_NOTE_CHARACTERS, description="why, or what the figure includes (no patient details)")] | None = None


class DeclarationView(msgspec.Struct):
    id: int
    provider_code: str
    site_code: str | None
    treatment_function_code: str | None
    weekly_capacity: int
    valid_from: dt.date
    declared_by: str
    declared_by_organisation: str | None
    declared_at: dt.datetime
    note: str | None
    withdrawn_at: dt.datetime | None
    withdrawn_by: str | None
    #: in_force, scheduled, superseded or withdrawn, against the provider's current census
    status: str | None


class DeclarationList(msgspec.Struct):
    items: list[DeclarationView]


def _view(declaration: Declaration) -> DeclarationView:
    return msgspec.convert(declaration.as_json(), DeclarationView)


def _refuse_other_provider(client: Client, provider_code: str, verb: str) -> None:
    if client.role == "provider" and provider_code != client.organisation_code:
        raise ProblemError(403, f"a provider key {verb} its own organisation's capacity only "
                                f"({client.organisation_code}), not {provider_code}'s")


class CapacityController(Controller):
    path = "/capacity"
    tags = ["capacity"]

    @post("/", sync_to_thread=True, status_code=HTTP_201_CREATED, guards=[allow(*DECLARERS)],
          summary="Declare weekly capacity for a provider, site and treatment function (provider keys: "
                  "their own organisation)")
    def create(self, request: Request[Client, Any, Any], data: CapacityDeclarationRequest) -> Response[Any]:
        client = request.user
        context = api_context(request)
        _refuse_other_provider(client, data.provider_code.strip().upper(), "declares")
        try:
            stored = declare(context.engine, provider_code=data.provider_code, weekly_capacity=data.weekly_capacity,
                             site_code=data.site_code, treatment_function_code=data.treatment_function_code,
                             valid_from=data.valid_from, note=data.note, declared_by=client.key_id,
                             organisation_code=client.organisation_code)
        except CapacityError as exc:
            return problem_response(400, str(exc), instance=request.url.path,
                                    invalid_params=[InvalidParam(name=n, reason=r) for n, r in exc.problems])
        # The note is free text: it stays out of the audit trail, which holds codes only.
        context.audit(request, rows=0, action="capacity_declared", status_code=201, filters={
            "declaration_id": stored.id, "provider_code": stored.provider_code, "site_code": stored.site_code,
            "treatment_function_code": stored.treatment_function_code,
            "weekly_capacity": stored.weekly_capacity, "valid_from": stored.valid_from.isoformat()})
        return Response(_view(get_declaration(context.engine, stored.id)), status_code=HTTP_201_CREATED)

    @get("/", sync_to_thread=True, guards=[allow(*READERS)],
         summary="Declared capacity, with each declaration's status against the current census")
    def list_declarations(
        self,
        request: Request[Client, Any, Any],
        provider: Annotated[str | None, Parameter(description="only this provider (ODS code)")] = None,
    ) -> DeclarationList:
        declarations = list_declarations(api_context(request).engine, provider_code=ods_param("provider", provider))
        return DeclarationList(items=[_view(d) for d in declarations])

    @delete("/{declaration_id:int}", sync_to_thread=True, status_code=200, guards=[allow(*DECLARERS)],
            summary="Withdraw a declaration made in error (kept, marked; what it superseded counts again)")
    def withdraw(self, request: Request[Client, Any, Any],
                 declaration_id: Annotated[int, Parameter(ge=1, le=MAX_ID)]) -> DeclarationView:
        client = request.user
        context = api_context(request)
        try:
            declaration = get_declaration(context.engine, declaration_id)
            _refuse_other_provider(client, declaration.provider_code, "withdraws")
            withdrawn = withdraw(context.engine, declaration_id, withdrawn_by=client.key_id)
        except UnknownDeclaration:
            raise ProblemError(404, f"there is no capacity declaration {declaration_id}: see "
                                    "GET /api/v1/capacity") from None
        except AlreadyWithdrawn as exc:
            raise ProblemError(409, str(exc)) from None
        context.audit(request, rows=0, action="capacity_withdrawn", status_code=200, filters={
            "declaration_id": declaration_id, "provider_code": withdrawn.provider_code})
        return _view(withdrawn)
