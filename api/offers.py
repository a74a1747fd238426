"""`/api/v1/offers`: mutual-aid capacity offers (no patient data).

`POST` by an `icb` key, or a `provider` key for its own organisation; `GET` by any reader.
Field meanings and defaults: `ptl/matching/offer.py`. Validation errors are problem details
whose `invalid-params` name each bad field and what is wrong with it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED

from api.context import api_context
from api.guards import READERS, allow
from api.problems import InvalidParam, ProblemError, problem_response
from ptl import codes
from ptl.matching.offer import OfferError, add_offer, list_offers, parse_offer
from ptl.store.access import Client


class OfferRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A capacity offer. Limits left out mean "no limit"."""

    provider_code: Annotated[str, msgspec.Meta(description="ODS code of the offering provider")]
    site_code: Annotated[str, msgspec.Meta(description="ODS code of the treatment site (a loaded site of the provider)")]
    treatment_function_code: Annotated[str, msgspec.Meta(description="treatment function, 3 characters, e.g. 110")]
    slots: Annotated[int, msgspec.Meta(description="patients the offer can take", ge=1, le=100_000)]
    start_date: Annotated[dt.date, msgspec.Meta(description="first day of the window")]
    end_date: Annotated[dt.date, msgspec.Meta(description="last day of the window")]
    procedure_codes: Annotated[list[str] | None, msgspec.Meta(
        description="OPCS-4 codes accepted (W37.1 or W371); omit for any procedure")] = None
    max_asa: Annotated[int | None, msgspec.Meta(description="highest ASA grade accepted (1-6)")] = None
    max_bmi: Annotated[float | None, msgspec.Meta(description="highest BMI accepted")] = None
    min_age: Annotated[int | None, msgspec.Meta(description="youngest age accepted, years")] = None
    max_age: Annotated[int | None, msgspec.Meta(description="oldest age accepted, years")] = None
    day_case_only: Annotated[bool, msgspec.Meta(description="only patients intended for day case")] = False
    interpreter_support: Annotated[bool, msgspec.Meta(
        description="false when the site cannot support interpreters")] = True
    priorities: Annotated[list[str] | None, msgspec.Meta(
        description="P-codes accepted (P1a, P1b, P2, P3, P4); omit for any, including none recorded")] = None
    accepts_out_of_area: Annotated[bool, msgspec.Meta(
        description="false when only patients of the provider's own ICB may come")] = True
    max_distance_miles: Annotated[float | None, msgspec.Meta(
        description="furthest a patient may live from the site, straight-line miles")] = None


class OfferView(msgspec.Struct):
    id: int
    provider_code: str
    site_code: str
    treatment_function_code: str
    procedure_codes: list[str] | None
    slots: int
    start_date: dt.date
    end_date: dt.date
    max_asa: int | None
    max_bmi: float | None
    min_age: int | None
    max_age: int | None
    day_case_only: bool
    interpreter_support: bool
    priorities: list[str] | None
    accepts_out_of_area: bool
    max_distance_miles: float | None
    created_by: str | None
    created_at: dt.datetime | None


class OfferList(msgspec.Struct):
    items: list[OfferView]


_ODS_SHAPE = re.compile(r"^[A-Z0-9]{3,12}$")


def ods_param(name: str, value: str | None) -> str | None:
    """An ODS code query parameter, upper-cased; 400 naming the parameter when it cannot be one."""
    if value is None or not value.strip():
        return None
    code = value.strip().upper()
    if not _ODS_SHAPE.match(code):
        raise ProblemError(400, f"{name}: '{code[:20]}' is not an ODS code (3 to 12 letters or digits)")
    return code


def _view(data: dict[str, Any]) -> OfferView:
    return msgspec.convert(data, OfferView)


class OffersController(Controller):
    path = "/offers"
    tags = ["mutual aid"]

    @post("/", sync_to_thread=True, status_code=HTTP_201_CREATED, guards=[allow("icb", "provider")],
          summary="Offer capacity for mutual aid (provider keys: for their own organisation)")
    def create(self, request: Request[Client, Any, Any], data: OfferRequest) -> Response[Any]:
        client = request.user
        context = api_context(request)
        try:
            offer = parse_offer(msgspec.structs.asdict(data))
        except OfferError as exc:
            return problem_response(400, str(exc), instance=request.url.path,
                                    invalid_params=[InvalidParam(name=n, reason=r) for n, r in exc.problems])
        if client.role == "provider" and offer.provider_code != client.organisation_code:
            raise ProblemError(403, f"a provider key offers its own organisation's capacity only "
                                    f"({client.organisation_code}), not {offer.provider_code}'s")
        try:
            stored = add_offer(context.engine, offer, created_by=client.key_id,
                               organisation_code=client.organisation_code)
        except OfferError as exc:
            return problem_response(400, str(exc), instance=request.url.path,
                                    invalid_params=[InvalidParam(name=n, reason=r) for n, r in exc.problems])
        context.audit(request, rows=0, action="offer_created", status_code=201,
                      filters={"offer_id": stored.id, "provider_code": stored.provider_code})
        return Response(_view(stored.as_json()), status_code=HTTP_201_CREATED)

    @get("/", sync_to_thread=True, guards=[allow(*READERS)], summary="Capacity offers, newest first")
    def list_offers(
        self,
        request: Request[Client, Any, Any],
        provider: Annotated[str | None, Parameter(description="offering provider (ODS code)")] = None,
        treatment_function: Annotated[str | None, Parameter(description="treatment function code")] = None,
        active_on: Annotated[dt.date | None, Parameter(description="only offers whose window includes this date")] = None,
    ) -> OfferList:
        if treatment_function is not None and treatment_function.strip() not in codes.TREATMENT_FUNCTIONS:
            raise ProblemError(400, "treatment_function: not a treatment function code (3 characters, e.g. 110)")
        offers = list_offers(api_context(request).engine, provider_code=ods_param("provider", provider),
                             treatment_function_code=treatment_function.strip() if treatment_function else None,
                             active_on=active_on)
        return OfferList(items=[_view(o.as_json()) for o in offers])
