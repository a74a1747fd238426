"""Declared capacity: the clock stops a week a provider plans to deliver, declared by scope.

Site statistics estimate capacity from the census history (weekly removals). A provider also
knows its plan: theatre lists, clinics, insourcing. A declaration states it for a **scope**:

- `provider_code` (required, a known organisation);
- `site_code`: one site of the provider, or null for the whole provider;
- `treatment_function_code`: one treatment function, or null for every specialty;
- `weekly_capacity`: clock stops a week, a whole number from 1 to `MAX_WEEKLY_CAPACITY`;
- `valid_from`: the date it applies from (default: the provider's current census date, so a
  declaration made now counts against the list as it stands; today when no census is loaded).

**History is kept.** Declarations are never changed or deleted. A new declaration for a scope
supersedes the earlier ones from its `valid_from` on. The declaration **in force** for a scope on
a date is the one, not withdrawn, with the latest `valid_from` on or before that date; on a tie,
the latest `declared_at` (then the highest id). Site statistics use the date of each provider's
current census.

**Withdrawing** marks a declaration as withdrawn (who, when): it never counts again, and whatever
it had superseded is in force again. It is for declarations made in error (wrong scope, a typo);
a capacity that changes is declared again, so the old figure stays explainable for the weeks it
applied. There is no "zero capacity" declaration: a load or expected wait against zero has no
meaning, and a scope that stops being offered stops having a list.

Rows are planning figures about organisations, not patient data: no suppression applies to the
declared figure itself (see `ptl.views.sites` for the figures computed from it).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl
from sqlalchemy import Connection, Engine, exists, insert, select, update

from ptl import codes
from ptl.store.models import CurrentSnapshot, DeclaredCapacity, Organisation, Pathway, Site
from ptl.submitted import submitted_date

#: A sanity bound, not a policy: the largest trusts stop a few thousand clocks a week, so a
#: figure above this is almost certainly a typo (a year's figure, a stray digit).
MAX_WEEKLY_CAPACITY: Final[int] = 20_000
MAX_NOTE_CHARACTERS: Final[int] = 500
#: What identifies a scope (nulls included: null site = whole provider, null TFC = every one).
SCOPE: Final[list[str]] = ["provider_code", "site_code", "treatment_function_code"]
#: Statuses a listed declaration can have, relative to its provider's current census.
STATUSES: Final[tuple[str, ...]] = ("in_force", "scheduled", "superseded", "withdrawn")

DECLARATION_SCHEMA: Final[dict[str, Any]] = {
    "id": pl.Int64,
    "provider_code": pl.String,
    "site_code": pl.String,
    "treatment_function_code": pl.String,
    "weekly_capacity": pl.Int64,
    "valid_from": pl.Date,
    "declared_by": pl.String,
    "declared_by_organisation": pl.String,
    "declared_at": pl.Datetime("us", "UTC"),
    "note": pl.String,
    "withdrawn_at": pl.Datetime("us", "UTC"),
    "withdrawn_by": pl.String,
}
CENSUS_SCHEMA: Final[dict[str, Any]] = {"provider_code": pl.String, "census_date": pl.Date}

_ODS: Final[re.Pattern[str]] = re.compile(r"^[A-Z0-9]{3,12}$")


class CapacityError(ValueError):
    """A declaration is not valid; each problem names the field and what is wrong with it."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in self.problems))


class UnknownDeclaration(LookupError):
    """No declaration has this id."""


class AlreadyWithdrawn(ValueError):
    """The declaration was withdrawn before; the message says when and by whom."""


@dataclass(frozen=True, slots=True)
class Declaration:
    """One stored declaration; `status` is set when listed against the current censuses."""

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
    withdrawn_at: dt.datetime | None = None
    withdrawn_by: str | None = None
    status: str | None = None

    def as_json(self) -> dict[str, Any]:
        """As the API and `ptl capacity list --json` show it (ISO dates and times)."""
        return {
            "id": self.id, "provider_code": self.provider_code, "site_code": self.site_code,
            "treatment_function_code": self.treatment_function_code,
            "weekly_capacity": self.weekly_capacity, "valid_from": self.valid_from.isoformat(),
            "declared_by": self.declared_by, "declared_by_organisation": self.declared_by_organisation,
            "declared_at": self.declared_at.isoformat(), "note": self.note,
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
            "withdrawn_by": self.withdrawn_by, "status": self.status,
        }

    def scope_text(self) -> str:
        """The scope in words, e.g. `RXX site RXX01, treatment function 110`."""
        site = f"site {self.site_code}" if self.site_code else "every site"
        tfc = (f"treatment function {self.treatment_function_code}" if self.treatment_function_code
               else "every treatment function")
        return f"{self.provider_code} {site}, {tfc}"


# --- validation ----------------------------------------------------------------------------


def _code(problems: list[tuple[str, str]], name: str, value: Any, what: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    code = str(value).strip().upper()
    if not _ODS.match(code):
        problems.append((name, f"'{code[:20]}' is not {what} (3 to 12 letters or digits)"))
        return None
    return code


def _weekly(problems: list[tuple[str, str]], value: Any) -> int | None:
    name = "weekly_capacity"
    bound = f"1 to {MAX_WEEKLY_CAPACITY:,} clock stops a week"
    if value is None or (isinstance(value, str) and not value.strip()):
        problems.append((name, f"is required: the clock stops a week, {bound}"))
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        problems.append((name, f"must be a whole number, {bound}"))
        return None
    text = str(value).strip().replace(",", "") if isinstance(value, str) else str(value)
    if not re.fullmatch(r"[+-]?\d+", text):
        problems.append((name, f"'{str(value).strip()[:20]}' is not a whole number; give {bound}"))
        return None
    number = int(text)
    if number < 1:
        problems.append((name, f"{number} is not a capacity; give {bound} (to stop a declaration "
                               "counting, withdraw it)"))
        return None
    if number > MAX_WEEKLY_CAPACITY:
        problems.append((name, f"{number:,} a week is more than any provider delivers; give {bound} "
                               "(is it a yearly or monthly figure?)"))
        return None
    return number


def _valid_from(problems: list[tuple[str, str]], value: Any) -> dt.date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # not given: the provider's current census date
    return submitted_date(problems, "valid_from", value)


def _note(problems: list[tuple[str, str]], value: Any) -> str | None:
    if value is None or not str(value).strip():
        return None
    note = str(value).strip()
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in note):
        problems.append(("note", "holds a control character; write plain text"))
        return None
    if len(note) > MAX_NOTE_CHARACTERS:
        problems.append(("note", f"is {len(note):,} characters; keep it to {MAX_NOTE_CHARACTERS}"))
        return None
    return note


# --- storing -------------------------------------------------------------------------------


def declare(engine: Engine, *, provider_code: Any, weekly_capacity: Any, site_code: Any = None,
            treatment_function_code: Any = None, valid_from: Any = None, note: Any = None,
            declared_by: str, organisation_code: str | None = None) -> Declaration:
    """Validate and store a declaration; raises `CapacityError` naming every bad field.

    Values may be text (the command line) or typed (the API). The provider must be a known
    organisation; a site must be a loaded site of that provider (`ptl refdata load sites`) or,
    when the site table does not list it, a site on the provider's current list."""
    problems: list[tuple[str, str]] = []
    provider = _code(problems, "provider_code", provider_code, "an ODS code")
    if provider is None and not any(name == "provider_code" for name, _ in problems):
        problems.append(("provider_code", "is required: the ODS code of the provider"))
    site = _code(problems, "site_code", site_code, "an ODS site code")
    tfc = str(treatment_function_code).strip() if treatment_function_code is not None else None
    tfc = tfc or None
    if tfc is not None and tfc not in codes.TREATMENT_FUNCTIONS:
        problems.append(("treatment_function_code", f"'{tfc[:20]}' is not a treatment function code "
                                                    "(3 characters, e.g. 110 trauma and orthopaedics)"))
    weekly = _weekly(problems, weekly_capacity)
    start = _valid_from(problems, valid_from)
    text = _note(problems, note)
    if problems:
        raise CapacityError(problems)
    assert provider is not None and weekly is not None
    with engine.begin() as connection:
        if connection.execute(select(Organisation.code).where(Organisation.code == provider)).first() is None:
            raise CapacityError([("provider_code", f"'{provider}' is not a known organisation: load its "
                                  "first extract (`ptl ingest`) or the ODS file (`ptl refdata load ods "
                                  "FILE`) before declaring its capacity")])
        current = connection.execute(
            select(CurrentSnapshot.feed_id, CurrentSnapshot.census_date)
            .where(CurrentSnapshot.provider_code == provider)).first()
        if site is not None:
            problem = _site_problem(connection, provider, site, current.feed_id if current else None)
            if problem:
                raise CapacityError([("site_code", problem)])
        if start is None:
            start = current.census_date if current is not None else dt.date.today()
        declared_at = dt.datetime.now(dt.UTC)
        new_id = connection.execute(
            insert(DeclaredCapacity).values(
                provider_code=provider, site_code=site, treatment_function_code=tfc,
                weekly_capacity=weekly, valid_from=start, declared_by=declared_by[:64],
                declared_by_organisation=organisation_code, declared_at=declared_at, note=text,
            ).returning(DeclaredCapacity.id)
        ).scalar_one()
    forget_declarations(engine)
    return Declaration(id=int(new_id), provider_code=provider, site_code=site, treatment_function_code=tfc,
                       weekly_capacity=weekly, valid_from=start, declared_by=declared_by[:64],
                       declared_by_organisation=organisation_code, declared_at=declared_at, note=text)


def _site_problem(connection: Connection, provider: str, site: str, current_feed: int | None) -> str | None:
    """Why `site` cannot be declared for `provider`, or None when it can."""
    owner = connection.execute(select(Site.organisation_code).where(Site.code == site)).scalar_one_or_none()
    if owner is not None:
        return None if owner == provider else f"site {site} belongs to {owner}, not {provider}"
    # Sites are often not loaded as reference data; the provider's own list naming it will do.
    on_list = current_feed is not None and connection.execute(select(exists().where(
        Pathway.feed_id == current_feed, Pathway.site_code == site))).scalar()
    if on_list:
        return None
    return (f"'{site}' is neither a loaded site of {provider} (`ptl refdata load sites FILE`) nor a "
            f"site on {provider}'s current list")


def withdraw(engine: Engine, declaration_id: int, *, withdrawn_by: str) -> Declaration:
    """Mark a declaration withdrawn (kept for the record; it never counts again)."""
    with engine.begin() as connection:
        row = connection.execute(select(DeclaredCapacity).where(DeclaredCapacity.id == declaration_id)).first()
        if row is None:
            raise UnknownDeclaration(f"there is no capacity declaration {declaration_id}: see "
                                     "`ptl capacity list`")
        if row.withdrawn_at is not None:
            raise AlreadyWithdrawn(f"capacity declaration {declaration_id} was already withdrawn on "
                                   f"{_utc(row.withdrawn_at):%Y-%m-%d %H:%M} UTC by {row.withdrawn_by}")
        connection.execute(update(DeclaredCapacity).where(DeclaredCapacity.id == declaration_id).values(
            withdrawn_at=dt.datetime.now(dt.UTC), withdrawn_by=withdrawn_by[:64]))
    forget_declarations(engine)
    return get_declaration(engine, declaration_id)


def get_declaration(engine: Engine, declaration_id: int) -> Declaration:
    found = [d for d in list_declarations(engine) if d.id == declaration_id]
    if not found:
        raise UnknownDeclaration(f"there is no capacity declaration {declaration_id}: see `ptl capacity list`")
    return found[0]


# --- reading -------------------------------------------------------------------------------


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def declarations_frame(engine: Engine) -> pl.DataFrame:
    """Every declaration, withdrawn ones included (`DECLARATION_SCHEMA`). The table is small."""
    columns = [getattr(DeclaredCapacity, name) for name in DECLARATION_SCHEMA]
    with engine.connect() as connection:
        rows = connection.execute(select(*columns).order_by(DeclaredCapacity.id)).all()
    data = [dict(zip(DECLARATION_SCHEMA, row, strict=True)) for row in rows]
    for item in data:
        for name in ("declared_at", "withdrawn_at"):
            if item[name] is not None:
                item[name] = _utc(item[name])
    return pl.DataFrame(data, schema=DECLARATION_SCHEMA, orient="row")


def current_census_dates(engine: Engine) -> pl.DataFrame:
    """Each provider's current census date (`CENSUS_SCHEMA`), from the store."""
    with engine.connect() as connection:
        rows = connection.execute(select(CurrentSnapshot.provider_code, CurrentSnapshot.census_date)).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=CENSUS_SCHEMA, orient="row")


def in_force(declarations: pl.DataFrame, census: pl.DataFrame) -> pl.DataFrame:
    """Per scope, the declaration in force at its provider's census date (`census`:
    `provider_code`, `census_date`): not withdrawn, latest `valid_from` on or before the census,
    ties to the latest `declared_at`, then the highest id. Columns: `SCOPE`…, `weekly_capacity`,
    `id`. Scopes of providers without a census, or with nothing yet valid, have no row."""
    live = (declarations.filter(pl.col("withdrawn_at").is_null())
            .join(census.select("provider_code", "census_date"), on="provider_code", how="inner")
            .filter(pl.col("valid_from") <= pl.col("census_date")))
    return (live.sort("valid_from", "declared_at", "id")
            .group_by(SCOPE, maintain_order=True)
            .agg(pl.col("weekly_capacity").last(), pl.col("id").last())
            .select(*SCOPE, "weekly_capacity", "id"))


def with_status(declarations: pl.DataFrame, census: pl.DataFrame, today: dt.date | None = None) -> pl.DataFrame:
    """`declarations` with a `status` against each provider's current census (today for a
    provider with none): `in_force`, `scheduled` (valid from a later date), `superseded` (a
    later declaration for the scope is in force) or `withdrawn`."""
    reference = (declarations.select("provider_code").unique()
                 .join(census, on="provider_code", how="left")
                 .with_columns(pl.col("census_date").fill_null(today or dt.date.today())))
    current_ids = in_force(declarations, reference).get_column("id")
    return declarations.join(reference, on="provider_code", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("withdrawn_at").is_not_null()).then(pl.lit("withdrawn"))
        .when(pl.col("id").is_in(current_ids.implode())).then(pl.lit("in_force"))
        .when(pl.col("valid_from") > pl.col("census_date")).then(pl.lit("scheduled"))
        .otherwise(pl.lit("superseded")).alias("status")
    ).drop("census_date")


def list_declarations(engine: Engine, *, provider_code: str | None = None) -> list[Declaration]:
    """Declarations (withdrawn ones too) with their status, by provider, site (whole provider
    first), treatment function (every specialty first), then newest first."""
    frame = with_status(declarations_frame(engine), current_census_dates(engine))
    if provider_code:
        frame = frame.filter(pl.col("provider_code") == provider_code.strip().upper())
    frame = frame.sort(["provider_code", "site_code", "treatment_function_code", "valid_from", "declared_at"],
                       descending=[False, False, False, True, True], nulls_last=False)
    return [Declaration(**row) for row in frame.iter_rows(named=True)]


# --- the declarations a process holds ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldDeclarations:
    """Every declaration as read at one moment, and a version that changes with any change."""

    #: (rows, newest id, withdrawn rows): declarations are only added or withdrawn
    version: tuple[int, int, int]
    frame: pl.DataFrame


_held: dict[str, tuple[float, HeldDeclarations]] = {}
_generation: dict[str, int] = {}
_held_lock = threading.Lock()


def _store_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def held_declarations(engine: Engine, max_age_seconds: float = 0.0) -> HeldDeclarations:
    """The store's declarations, re-read when the copy held is older than `max_age_seconds`
    (the API passes its data-version check interval) or was dropped by a change made in this
    process (`declare`, `withdraw`), so a declaration made through this process shows at once
    and one made elsewhere within `max_age_seconds`."""
    key = _store_key(engine)
    with _held_lock:
        held = _held.get(key)
        generation = _generation.get(key, 0)
    if held is not None and time.monotonic() - held[0] < max_age_seconds:
        return held[1]
    frame = declarations_frame(engine)
    newest, withdrawn = frame.select(pl.col("id").max().fill_null(0),
                                     pl.col("withdrawn_at").is_not_null().sum()).row(0)
    result = HeldDeclarations(version=(frame.height, int(newest), int(withdrawn)), frame=frame)
    with _held_lock:
        # A change made while this read ran may be missing from it: do not keep it then.
        if _generation.get(key, 0) == generation:
            _held[key] = (time.monotonic(), result)
    return result


def forget_declarations(engine: Engine) -> None:
    """Drop the held copy for this store: the next `held_declarations` reads the table."""
    key = _store_key(engine)
    with _held_lock:
        _held.pop(key, None)
        _generation[key] = _generation.get(key, 0) + 1
