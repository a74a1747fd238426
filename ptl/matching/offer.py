"""Capacity offers: what a provider offers for mutual aid, validated, stored and read back.

An offer is the offering provider and site, a treatment function (optionally narrowed to OPCS-4
procedure codes), a number of slots in a date window, and the eligibility limits the provider
sets. Every limit is optional and its absence means "no limit":

========================  =====================================================================
field                     meaning
========================  =====================================================================
``provider_code``         ODS code of the offering provider (3–12 letters or digits)
``site_code``             ODS code of the treatment site (must be a loaded site of the provider)
``treatment_function_code``  3-character treatment function (e.g. ``110``)
``procedure_codes``       OPCS-4 codes accepted (``W37.1`` or ``W371``); omitted = any procedure
``slots``                 how many patients the offer can take (1–100,000)
``start_date``/``end_date``  the window the slots fall in (ISO dates, end on or after start)
``max_asa``               highest ASA physical status accepted (1–6)
``max_bmi``               highest BMI accepted (10–100)
``min_age``/``max_age``   age range in years, inclusive (0–120)
``day_case_only``         only patients whose intended management is day case (default false)
``interpreter_support``   false when the site cannot support interpreters (default true)
``priorities``            P-codes accepted, from P1a, P1b, P2, P3, P4; omitted = any of those or
                          none recorded (non-admitted pathways rarely carry one); P5/P6 never
``accepts_out_of_area``   false when only patients of the provider's own ICB may come (default true)
``max_distance_miles``    furthest a patient may live from the site (straight line)
========================  =====================================================================

A limit the offer sets is met only when the patient's value is recorded and within it: a
patient without a recorded ASA grade is not eligible for an offer with ``max_asa``. That is
deliberate (a provider's limit is a clinical safety statement), and the equity guard shows who
it excludes. Interpreter need is the exception: the field is only ever recorded as "required",
so unrecorded means not required.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from sqlalchemy import Engine, insert, select

from ptl import codes
from ptl.store.matching import CapacityOffer
from ptl.store.models import Site
from ptl.submitted import submitted_date

#: P-codes an offer may accept (P5/P6 patients chose to wait: never matched).
MATCHABLE_PRIORITIES: Final[tuple[str, ...]] = ("P1a", "P1b", "P2", "P3", "P4")
MAX_SLOTS_PER_OFFER: Final[int] = 100_000
OFFER_FIELDS: Final[tuple[str, ...]] = (
    "provider_code", "site_code", "treatment_function_code", "procedure_codes", "slots",
    "start_date", "end_date", "max_asa", "max_bmi", "min_age", "max_age", "day_case_only",
    "interpreter_support", "priorities", "accepts_out_of_area", "max_distance_miles",
)
_REQUIRED: Final[tuple[str, ...]] = ("provider_code", "site_code", "treatment_function_code", "slots",
                                     "start_date", "end_date")
_ODS: Final[re.Pattern[str]] = re.compile(r"^[A-Z0-9]{3,12}$")
_OPCS: Final[re.Pattern[str]] = re.compile(r"^[A-Z][0-9]{2,3}$")


class OfferError(ValueError):
    """An offer is not valid; the message names the field and what is wrong with it."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in self.problems))


@dataclass(frozen=True, slots=True)
class Offer:
    """A validated capacity offer (``id`` is None until stored)."""

    provider_code: str
    site_code: str
    treatment_function_code: str
    slots: int
    start_date: dt.date
    end_date: dt.date
    procedure_codes: tuple[str, ...] | None = None
    max_asa: int | None = None
    max_bmi: float | None = None
    min_age: int | None = None
    max_age: int | None = None
    day_case_only: bool = False
    interpreter_support: bool = True
    priorities: tuple[str, ...] | None = None
    accepts_out_of_area: bool = True
    max_distance_miles: float | None = None
    id: int | None = None
    created_by: str | None = None
    created_at: dt.datetime | None = field(default=None, compare=False)

    def as_json(self) -> dict[str, Any]:
        """The offer as the API and `ptl offers list --json` show it (snake_case, ISO dates)."""
        data = asdict(self)
        data["start_date"] = self.start_date.isoformat()
        data["end_date"] = self.end_date.isoformat()
        data["procedure_codes"] = list(self.procedure_codes) if self.procedure_codes is not None else None
        data["priorities"] = list(self.priorities) if self.priorities is not None else None
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _integer(problems: list[tuple[str, str]], name: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.append((name, f"must be a whole number from {low} to {high}"))
        return None
    try:
        number = float(value)
    except ValueError:
        problems.append((name, f"'{value}' is not a number; give a whole number from {low} to {high}"))
        return None
    if number != int(number) or not low <= number <= high:
        problems.append((name, f"{value} is not a whole number from {low} to {high}"))
        return None
    return int(number)


def _number(problems: list[tuple[str, str]], name: str, value: Any, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.append((name, f"must be a number from {low:g} to {high:g}"))
        return None
    try:
        number = float(value)
    except ValueError:
        problems.append((name, f"'{value}' is not a number; give one from {low:g} to {high:g}"))
        return None
    if not low <= number <= high:
        problems.append((name, f"{number:g} is outside {low:g} to {high:g}"))
        return None
    return number


def _boolean(problems: list[tuple[str, str]], name: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    problems.append((name, f"must be true or false, not {json.dumps(value)}"))
    return default


def _code_list(problems: list[tuple[str, str]], name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value) if part]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        problems.append((name, "must be a list of codes"))
        return None
    return list(value)


def parse_offer(data: Mapping[str, Any]) -> Offer:
    """Validate an offer given as JSON-like data; raises `OfferError` naming every bad field."""
    problems: list[tuple[str, str]] = []
    unknown = sorted(set(data) - set(OFFER_FIELDS) - {"id", "created_by", "created_at"})
    if unknown:
        problems.append((unknown[0], f"is not an offer field (fields: {', '.join(OFFER_FIELDS)})"))
    for name in _REQUIRED:
        if data.get(name) is None or (isinstance(data.get(name), str) and not data[name].strip()):
            problems.append((name, "is required"))
    provider = (_text(data.get("provider_code")) or "").upper()
    if provider and not _ODS.match(provider):
        problems.append(("provider_code", f"'{provider}' is not an ODS code (3 to 12 letters or digits)"))
    site = (_text(data.get("site_code")) or "").upper()
    if site and not _ODS.match(site):
        problems.append(("site_code", f"'{site}' is not an ODS site code (3 to 12 letters or digits)"))
    tfc = _text(str(data["treatment_function_code"])) if data.get("treatment_function_code") is not None else None
    if tfc and tfc not in codes.TREATMENT_FUNCTIONS:
        problems.append(("treatment_function_code",
                         f"'{tfc}' is not a treatment function code (3 characters, e.g. 110 trauma and orthopaedics)"))
    procedures = _code_list(problems, "procedure_codes", data.get("procedure_codes"))
    if procedures is not None:
        procedures = [re.sub(r"[.\s]", "", p.upper()) for p in procedures]
        bad = [p for p in procedures if not _OPCS.match(p)]
        if bad:
            problems.append(("procedure_codes", f"'{bad[0]}' is not an OPCS-4 code (e.g. W37.1)"))
        elif not procedures:
            problems.append(("procedure_codes", "is empty; leave it out to accept any procedure"))
    slots = _integer(problems, "slots", data.get("slots"), 1, MAX_SLOTS_PER_OFFER) if data.get("slots") is not None else None
    start = submitted_date(problems, "start_date", data["start_date"]) if data.get("start_date") is not None else None
    end = submitted_date(problems, "end_date", data["end_date"]) if data.get("end_date") is not None else None
    if start and end and end < start:
        problems.append(("end_date", f"{end.isoformat()} is before start_date {start.isoformat()}"))
    max_asa = _integer(problems, "max_asa", data.get("max_asa"), 1, 6)
    max_bmi = _number(problems, "max_bmi", data.get("max_bmi"), 10, 100)
    min_age = _integer(problems, "min_age", data.get("min_age"), 0, 120)
    max_age = _integer(problems, "max_age", data.get("max_age"), 0, 120)
    if min_age is not None and max_age is not None and max_age < min_age:
        problems.append(("max_age", f"{max_age} is below min_age {min_age}"))
    priorities = _code_list(problems, "priorities", data.get("priorities"))
    if priorities is not None:
        bad = [p for p in priorities if p not in MATCHABLE_PRIORITIES]
        if bad:
            problems.append(("priorities", f"'{bad[0]}' cannot be offered capacity; accepted P-codes are "
                             + ", ".join(MATCHABLE_PRIORITIES) + " (P5/P6 patients chose to wait)"))
        elif not priorities:
            problems.append(("priorities", "is empty; leave it out to accept any priority"))
    distance = _number(problems, "max_distance_miles", data.get("max_distance_miles"), 1, 1000)
    day_case_only = _boolean(problems, "day_case_only", data.get("day_case_only"), False)
    interpreter = _boolean(problems, "interpreter_support", data.get("interpreter_support"), True)
    out_of_area = _boolean(problems, "accepts_out_of_area", data.get("accepts_out_of_area"), True)
    if problems:
        raise OfferError(problems)
    assert tfc is not None and slots is not None and start is not None and end is not None
    return Offer(
        provider_code=provider, site_code=site, treatment_function_code=tfc, slots=slots,
        start_date=start, end_date=end,
        procedure_codes=tuple(sorted(set(procedures))) if procedures else None,
        max_asa=max_asa, max_bmi=max_bmi, min_age=min_age, max_age=max_age,
        day_case_only=day_case_only, interpreter_support=interpreter,
        priorities=tuple(p for p in MATCHABLE_PRIORITIES if p in set(priorities)) if priorities else None,
        accepts_out_of_area=out_of_area, max_distance_miles=distance,
        id=data.get("id"), created_by=data.get("created_by"),
    )


class UnknownOffer(LookupError):
    """Offer ids that are not in the store."""


def add_offer(engine: Engine, offer: Offer, *, created_by: str, organisation_code: str | None = None) -> Offer:
    """Store a validated offer; the site must be a loaded site of the offering provider."""
    with engine.begin() as connection:
        site = connection.execute(
            select(Site.organisation_code, Site.latitude).where(Site.code == offer.site_code)
        ).first()
        if site is None:
            raise OfferError([("site_code", f"'{offer.site_code}' is not a loaded site; load sites with "
                               "`ptl refdata load sites FILE` (site_code, provider_code, name, postcode, lat, long)")])
        if site.organisation_code != offer.provider_code:
            raise OfferError([("site_code", f"site {offer.site_code} belongs to {site.organisation_code}, "
                               f"not {offer.provider_code}")])
        if site.latitude is None:
            raise OfferError([("site_code", f"site {offer.site_code} has no coordinates, so no distance can "
                               "be measured; reload sites with lat/long or a known postcode")])
        created_at = dt.datetime.now(dt.UTC)
        new_id = connection.execute(
            insert(CapacityOffer).values(
                provider_code=offer.provider_code, site_code=offer.site_code,
                treatment_function_code=offer.treatment_function_code,
                procedure_codes=json.dumps(list(offer.procedure_codes)) if offer.procedure_codes else None,
                slots=offer.slots, start_date=offer.start_date, end_date=offer.end_date,
                max_asa=offer.max_asa, max_bmi=offer.max_bmi, min_age=offer.min_age, max_age=offer.max_age,
                day_case_only=offer.day_case_only, interpreter_support=offer.interpreter_support,
                priorities=json.dumps(list(offer.priorities)) if offer.priorities else None,
                accepts_out_of_area=offer.accepts_out_of_area,
                max_distance_miles=offer.max_distance_miles, created_at=created_at, created_by=created_by,
                created_by_organisation=organisation_code,
            ).returning(CapacityOffer.id)
        ).scalar_one()
    return _with(offer, id=int(new_id), created_by=created_by, created_at=created_at)


def _with(offer: Offer, **changes: Any) -> Offer:
    from dataclasses import replace

    return replace(offer, **changes)


def _from_row(row: CapacityOffer) -> Offer:
    return Offer(
        id=row.id, provider_code=row.provider_code, site_code=row.site_code,
        treatment_function_code=row.treatment_function_code,
        procedure_codes=tuple(json.loads(row.procedure_codes)) if row.procedure_codes else None,
        slots=row.slots, start_date=row.start_date, end_date=row.end_date, max_asa=row.max_asa,
        max_bmi=row.max_bmi, min_age=row.min_age, max_age=row.max_age, day_case_only=row.day_case_only,
        interpreter_support=row.interpreter_support,
        priorities=tuple(json.loads(row.priorities)) if row.priorities else None,
        accepts_out_of_area=row.accepts_out_of_area, max_distance_miles=row.max_distance_miles,
        created_by=row.created_by, created_at=row.created_at,
    )


def list_offers(engine: Engine, *, provider_code: str | None = None,
                treatment_function_code: str | None = None, active_on: dt.date | None = None) -> list[Offer]:
    """Stored offers, newest first, optionally of one provider / treatment function / live on a date."""
    from sqlalchemy.orm import Session

    statement = select(CapacityOffer).order_by(CapacityOffer.id.desc())
    if provider_code:
        statement = statement.where(CapacityOffer.provider_code == provider_code.upper())
    if treatment_function_code:
        statement = statement.where(CapacityOffer.treatment_function_code == treatment_function_code)
    if active_on:
        statement = statement.where(CapacityOffer.start_date <= active_on, CapacityOffer.end_date >= active_on)
    with Session(engine) as session:
        return [_from_row(row) for row in session.scalars(statement)]


def get_offers(engine: Engine, offer_ids: Sequence[int]) -> list[Offer]:
    """The offers with these ids, in the order given; `UnknownOffer` names any missing."""
    from sqlalchemy.orm import Session

    wanted = list(dict.fromkeys(int(i) for i in offer_ids))
    with Session(engine) as session:
        rows = {row.id: _from_row(row) for row in
                session.scalars(select(CapacityOffer).where(CapacityOffer.id.in_(wanted)))}
    missing = [i for i in wanted if i not in rows]
    if missing:
        raise UnknownOffer(f"no offer with id {', '.join(map(str, missing))}; see `ptl offers list`")
    return [rows[i] for i in wanted]
