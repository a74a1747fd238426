"""Row validation of a mapped extract, vectorised with Polars expressions.

Every rule is one expression over whole columns that yields, per row, either null (fine) or the
reason a person can act on. Rules are `rejected` (the row is not loaded) or `warning` (the row
loads and the offending value is blanked). The rule table is `_checks`; README "Validation
rules" lists it for users.

File-level problems (missing columns, provider or census date that do not agree with what was
declared) raise `FeedRefused`: nothing is loaded. No message quotes a patient value: reasons
about identifiable fields name the field, never its value, and a value longer than its field's
`max_length` is never read further (`_too_long`), so it is never quoted or stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from ingest.errors import FeedRefused
from ingest.profiles import Profile
from ptl import codes
from ptl.fields import DATE_FIELDS, FIELDS, FIELDS_BY_NAME, REQUIRED_COLUMNS, REQUIRED_VALUES

ROW = "__row"
Severity = Literal["rejected", "warning"]

#: Date formats tried, in order, when the profile names none (UK day-first, never US).
DEFAULT_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%Y%m%d", "%d-%m-%Y", "%d.%m.%Y")
#: Dates that must not be after the census (TCI dates are bookings, so they may be).
NOT_AFTER_CENSUS = (
    "date_of_birth",
    "decision_to_admit_date",
    "last_validated_date",
    "last_attended_date",
    "last_dna_date",
)
_TRUE = ("Y", "YES", "TRUE", "T", "1")
_FALSE = ("N", "NO", "FALSE", "F", "0")
_CLINICAL_PRIORITY_FORMS = {code.upper(): code for code in codes.CLINICAL_PRIORITIES}
_TRAVEL_FORMS = {
    "50": "50", "50 MILES": "50", "100": "100", "100 MILES": "100",
    "NATIONAL": "national", "NATIONALLY": "national", "ANY": "national",
}


#: ROW, column (canonical field) and length in characters of each value over its field's maximum.
TOO_LONG_SCHEMA = {ROW: pl.Int64, "column": pl.String, "length": pl.Int64}


@dataclass(frozen=True)
class FileWarning:
    """Something about the whole file worth saying that does not stop it loading."""

    column: str
    kind: str
    reason: str

    def as_issue(self) -> dict[str, Any]:
        """The shape of a row issue in an ingest result (no row: it is the file's)."""
        return {"row": None, "column": self.column, "kind": self.kind, "reason": self.reason}


@dataclass(frozen=True)
class Mapped:
    """The extract on canonical names: raw text per field and which header it came from."""

    frame: pl.DataFrame  # ROW + one text column per canonical field
    source_columns: dict[str, str]  # canonical field → header (or "(profile default)")
    provider_code: str
    census_date: dt.date
    #: values over their field's maximum length (blanked in `frame`): see `_too_long`
    too_long: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TOO_LONG_SCHEMA))
    #: about the whole file (a census that is not a Sunday): loaded, and said
    warnings: tuple[FileWarning, ...] = ()


@dataclass(frozen=True)
class Validated:
    clean: pl.DataFrame  # rows that load: typed canonical columns + ROW
    issues: pl.DataFrame  # row, column, source_column, severity, kind, reason, raw_value, raw_row
    rows_read: int
    rows_rejected: int
    rows_warned: int


@dataclass(frozen=True)
class _Check:
    column: str
    kind: str
    severity: Severity
    bad: pl.Expr  # true when the row breaks the rule (cheap: evaluated on every row)
    reason: pl.Expr  # what to tell the provider (evaluated only on rows that break a rule)


def map_columns(
    extract_frame: pl.DataFrame,
    profile: Profile,
    *,
    filename: str,
    provider_code: str,
    census_date: dt.date | None,
) -> Mapped:
    """Put the extract on canonical names and settle provider and census date for the file."""
    headers = extract_frame.columns
    matched = profile.match_columns(headers)
    declared = {"provider_code": provider_code}
    if census_date is not None:
        declared["census_date"] = census_date.isoformat()
    missing = [
        name
        for name in REQUIRED_COLUMNS
        if name not in matched and name not in profile.defaults and name not in declared
    ]
    if missing:
        raise FeedRefused(_missing_columns_message(filename, missing, headers, profile),
                          kind="missing_columns")
    source_columns: dict[str, str] = {}
    exprs: list[pl.Expr] = [pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW)]
    for canonical in FIELDS:
        name = canonical.name
        if name in matched:
            header = matched[name]
            source_columns[name] = header
            exprs.append(pl.col(header).cast(pl.String).alias(name))
        elif name in profile.defaults:
            source_columns[name] = "(profile default)"
            exprs.append(pl.lit(profile.defaults[name], dtype=pl.String).alias(name))
        else:
            source_columns[name] = "(not supplied)"
            exprs.append(pl.lit(None, dtype=pl.String).alias(name))
    frame = extract_frame.select(exprs)
    text_columns = [name for name in matched if name in frame.columns]
    # Surrounding whitespace is no part of a value. A column with none keeps the very column
    # that was read (no copy: a big file is held once, not twice); the others are stripped.
    # One select, so Polars checks the columns in parallel.
    padded = frame.select(
        (pl.col(name).str.strip_chars().str.len_bytes() != pl.col(name).str.len_bytes()).any()
        for name in text_columns
    ).row(0) if text_columns else ()
    stripped = [name for name, found in zip(text_columns, padded, strict=True) if found]
    if stripped:
        frame = frame.with_columns(pl.col(name).str.strip_chars() for name in stripped)
    # A blank cell is no value (CSV empty fields are null already; spaces and XLSX are not).
    has_blank = frame.select((pl.col(name) == "").any() for name in text_columns).row(0) if text_columns else ()
    blank = [name for name, found in zip(text_columns, has_blank, strict=True) if found]
    if blank:
        frame = frame.with_columns(pl.when(pl.col(name) != "").then(pl.col(name)).alias(name) for name in blank)
    for name, mapping in profile.values.items():
        frame = frame.with_columns(pl.col(name).replace(mapping))
    frame, too_long = _too_long(frame, filename)

    provider = _settle_provider(frame, provider_code, filename)
    census = _settle_census(frame, census_date, profile, filename)
    frame = frame.with_columns(
        pl.lit(provider).alias("provider_code"), pl.lit(census.isoformat()).alias("census_date")
    )
    return Mapped(frame=frame, source_columns=source_columns, provider_code=provider, census_date=census,
                  too_long=too_long, warnings=census_warnings(census))


def _too_long(frame: pl.DataFrame, filename: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The length rule, before any other rule reads a value: each value longer than its field's
    `max_length` (characters) is blanked here and listed (row, field, length), so no later rule
    quotes it, no lookup or store sees it and no issue keeps it; `validate_batch` reports it
    as the field's `invalid` outcome says. Over-long provider or census values refuse the file.

    Bytes bound characters from above, so the cost on a file within bounds is one look at
    each column's value lengths; characters are counted only in a column that has a value
    over its maximum in bytes."""
    names = [name for name in frame.columns if name != ROW]
    limits = {name: FIELDS_BY_NAME[name].max_length for name in names}
    over_in_bytes = frame.select(
        (pl.col(name).str.len_bytes() > limits[name]).any() for name in names
    ).row(0)
    suspects = [name for name, found in zip(names, over_in_bytes, strict=True) if found]
    if not suspects:
        return frame, pl.DataFrame(schema=TOO_LONG_SCHEMA)
    lengths = frame.select(ROW, *[pl.col(name).str.len_chars().alias(name) for name in suspects])
    too_long = pl.concat(
        [lengths.filter(pl.col(name) > limits[name])
         .select(ROW, pl.lit(name).alias("column"), pl.col(name).cast(pl.Int64).alias("length"))
         for name in suspects],
        how="vertical",
    )
    for name in ("provider_code", "census_date"):
        found = too_long.filter(pl.col("column") == name)
        if found.height:
            what = "provider code" if name == "provider_code" else "census date"
            raise FeedRefused(
                f"{filename}: {found.height:,} row(s) have a {what} longer than the "
                f"{limits[name]} characters any {what} has (the longest is "
                f"{found.select(pl.col('length').max()).item():,}); send one {what} per file, as the "
                "other rows do",
                kind="provider_mismatch" if name == "provider_code" else "census_date",
            )
    frame = frame.with_columns(
        pl.when(pl.col(name).str.len_chars() > limits[name]).then(None).otherwise(pl.col(name)).alias(name)
        for name in suspects
    )
    return frame, too_long


def census_warnings(census: dt.date) -> tuple[FileWarning, ...]:
    """What is odd, not wrong, about a census date: WLMDS weeks end on a Sunday."""
    if census.isoweekday() == 7:
        return ()
    return (FileWarning(
        "census_date", "census_not_sunday",
        f"census date {census} is a {census:%A}, not a Sunday: WLMDS weeks end on Sunday; "
        "the snapshot loads as that day's",
    ),)


#: Shapes of values as sent (not of headers), each with the canonical field it resembles: a
#: first line that has several is data. Headers that look like values are never quoted back
#: either. Looser than the rules' shapes (`codes.*_SHAPE`, over canonical spellings) where a
#: value is sent with a space or a dot, stricter where a header could pass for a code (a site
#: code here has digits, so `BMI` or `SEX` is not taken for one).
_VALUE_SHAPES: tuple[tuple[str, str], ...] = (
    (r"^[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}$", "nhs_number"),
    (r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$", "postcode"),
    (r"^E0[0-9]{7}$", "lsoa11"),
    (r"^[A-Z][0-9]{2}\.?[0-9]$", "procedure_code"),
    (r"^(?:[A-Z][A-Z0-9]{2}[0-9]{2}|[0-9][A-Z0-9]{4})$", "site_code"),
    (r"^(?:" + "|".join(sorted(codes.WAITING_LIST_TYPES)) + r")$", "waiting_list_type"),
    (r"^P(?:1A|1B|[2-6])$", "clinical_priority"),
    (r"^(?:" + "|".join(sorted(code for code in codes.TREATMENT_FUNCTIONS if code[0] == "X")) + r")$",
     "treatment_function_code"),
    (r"^[0-9]{3}$", "treatment_function_code"),
)
#: Other shapes no header has: numbers, identifiers with long runs of digits, single characters.
_OTHER_VALUE_SHAPES = r"^(?:[-+]?[0-9]+(?:[.,][0-9]+)?|.*[0-9]{5,}.*|.)$"
#: Headers longer than this are not quoted back (no real header is this long).
_LONGEST_HEADER_QUOTED = 64


def _value_shapes(headers: list[str], date_format: str | None) -> pl.DataFrame:
    """Per header: the canonical field whose values it is shaped like ("date" for any date),
    "value" for other value shapes, "unnamed" for an empty cell or a text longer than any
    header, or null for a header-like text."""
    # Readers rename a repeated header (`X_duplicated_0` from a CSV, `X_1` from a workbook):
    # the first line of a headerless file repeats values (two Y/N flags, two dates).
    text = pl.col("header").str.replace(r"_(?:duplicated_)?[0-9]+$", "").str.strip_chars()
    upper = text.str.to_uppercase()
    shape: pl.Expr = (
        pl.when(parse_date(text, date_format).is_not_null()).then(pl.lit("date"))
        .when(upper.str.contains(_OTHER_VALUE_SHAPES)).then(pl.lit("value"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    for pattern, name in reversed(_VALUE_SHAPES):
        shape = pl.when(upper.str.contains(pattern)).then(pl.lit(name)).otherwise(shape)
    # A workbook names a column whose first cell is empty (or a date) `__UNNAMED__n`.
    unnamed = (pl.col("header").str.len_chars() > _LONGEST_HEADER_QUOTED) | (text == "") \
        | pl.col("header").str.contains(r"^__UNNAMED__[0-9]+$")
    return pl.DataFrame({"header": headers}, schema={"header": pl.String}).with_columns(
        pl.when(unnamed).then(pl.lit("unnamed")).otherwise(shape).alias("shape")
    )


def _missing_columns_message(filename: str, missing: list[str], headers: list[str], profile: Profile) -> str:
    """Which required columns are missing and what the file has instead, quoting no value: a
    first line shaped like data is said to be data (naming only the fields it resembles), and
    only headers that do not look like values are listed."""
    expected = "; ".join(
        f"{name} (header {' or '.join(repr(h) for h in profile.columns.get(name, (name,))[:3])})"
        + (" — or pass --census-date" if name == "census_date" else "")
        for name in missing
    )
    shapes = _value_shapes(headers, profile.date_format)
    valued = shapes.filter(pl.col("shape").is_not_null() & (pl.col("shape") != "unnamed"))
    header_like = shapes.filter(pl.col("shape").is_null())
    # A header line is mostly names; a first row of data, mostly values of known shapes.
    if valued.height and valued.height >= header_like.height:
        named = valued.get_column("shape").unique(maintain_order=True).to_list()
        resembles = [name for name in named if name not in ("date", "value")]
        if "date" in named:
            resembles.append("dates (date_of_birth, rtt_start_date, census_date…)")
        if not resembles:
            resembles.append("codes or numbers")
        return (
            f"{filename}: the first line looks like data, not headers: it has values shaped like "
            f"{', '.join(resembles)}. Add a header line naming each column (the headers the "
            f"profile '{profile.name}' expects are in docs/FIELDS.md), or map your headers in a "
            f"profile. Missing required column(s): {expected}"
        )
    listed = header_like.get_column("header").to_list()
    unlisted = len(headers) - len(listed)
    return (
        f"{filename}: missing required column(s): {expected}. The file has: "
        f"{', '.join(listed[:40]) or '(no header that reads as one)'}"
        + (f" (and {len(listed) - 40} more)" if len(listed) > 40 else "")
        + (f" (and {unlisted} that are unnamed or look like values, not shown)" if unlisted else "")
    )


def _settle_provider(frame: pl.DataFrame, declared: str, filename: str) -> str:
    declared = declared.strip().upper()
    found = frame.get_column("provider_code").drop_nulls().str.to_uppercase().unique().sort().to_list()
    others = [code for code in found if code != declared]
    if others:
        raise FeedRefused(
            f"{filename}: declared for provider {declared} but the file holds provider code(s) "
            f"{', '.join(others[:5])}; send each provider's extract under its own code",
            kind="provider_mismatch",
        )
    return declared


def _settle_census(
    frame: pl.DataFrame, declared: dt.date | None, profile: Profile, filename: str
) -> dt.date:
    raw = frame.get_column("census_date")
    if raw.null_count() == frame.height and declared is None:
        raise FeedRefused(
            f"{filename}: no census date: the census date column is empty; pass --census-date",
            kind="census_date",
        )
    values = raw.drop_nulls().unique()
    parsed = values.to_frame().select(parse_date(pl.col("census_date"), profile.date_format)).to_series()
    if parsed.null_count():
        bad = values.filter(parsed.is_null()).head(3).to_list()
        raise FeedRefused(
            f"{filename}: census date {', '.join(repr(v) for v in bad)} is not a date",
            kind="census_date",
        )
    dates = sorted(set(parsed.to_list()))
    if len(dates) > 1:
        raise FeedRefused(
            f"{filename}: the file holds {len(dates)} census dates ({dates[0]} … {dates[-1]}); "
            "send one census per file",
            kind="census_date",
        )
    if declared is not None and dates and dates[0] != declared:
        raise FeedRefused(
            f"{filename}: declared census date {declared} but the file says {dates[0]}",
            kind="census_date",
        )
    if dates and raw.null_count():
        raise FeedRefused(
            f"{filename}: {raw.null_count()} row(s) have no census date while others say {dates[0]}",
            kind="census_date",
        )
    census = declared if declared is not None else dates[0]
    today = dt.date.today()
    if census > today:
        raise FeedRefused(
            f"{filename}: census date {census} is after today ({today}): a census describes a "
            "week that has ended; send the file once its week is over",
            kind="census_date",
        )
    return census


def parse_date(text: pl.Expr, date_format: str | None) -> pl.Expr:
    """Parse text dates trying the profile's format, then the defaults (slow path: every
    format over every row; used for the census date and columns whose format is unclear).
    Excel/ISO timestamps ('2024-01-31 00:00:00') keep their date."""
    formats = ((date_format,) if date_format else ()) + DEFAULT_DATE_FORMATS
    date_part = text.str.replace(r"[ T]\d{1,2}:\d{2}(:\d{2})?(\.\d+)?$", "")
    return pl.coalesce([date_part.str.strptime(pl.Date, fmt, strict=False) for fmt in formats])


def column_date_format(values: pl.Series, date_format: str | None) -> tuple[str | None, bool]:
    """The one format a date column is written in, judged from a sample of its values, and
    whether values carry a time part. A profile's `date_format` wins. None: no format fits
    the sample, so every format is tried (slow path)."""
    sample = values.drop_nulls().head(2000)
    has_time = bool(sample.str.contains(r"[ T]\d{1,2}:\d{2}").any()) if sample.len() else False
    if date_format:
        return date_format, has_time
    if sample.len() == 0:
        return DEFAULT_DATE_FORMATS[0], False
    if has_time:
        sample = sample.str.replace(r"[ T]\d{1,2}:\d{2}(:\d{2})?(\.\d+)?$", "")
    best, best_hits = None, 0
    for fmt in DEFAULT_DATE_FORMATS:
        hits = int(sample.str.strptime(pl.Date, fmt, strict=False).is_not_null().sum())
        if hits > best_hits:
            best, best_hits = fmt, hits
    return best, has_time


def parse_date_column(text: pl.Expr, date_format: str | None, has_time: bool) -> pl.Expr:
    """Parse one date column in its single format (fast path)."""
    if date_format is None:
        return parse_date(text, None)
    if has_time:
        text = text.str.replace(r"[ T]\d{1,2}:\d{2}(:\d{2})?(\.\d+)?$", "")
    return text.str.strptime(pl.Date, date_format, strict=False)


def _format_hint(date_format: str | None) -> str:
    if date_format:
        readable = date_format.replace("%d", "DD").replace("%m", "MM").replace("%Y", "YYYY")
        return f" (expected {readable}, the format of this column)"
    return " (expected YYYY-MM-DD or DD/MM/YYYY)"


def _reason(bad: pl.Expr, template: str, *args: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    return bad, pl.format(template, *args) if args else pl.lit(template)


def _spellings() -> dict[str, Callable[[pl.Expr], pl.Expr]]:
    """Canonical spelling of each code column's values (applied per distinct value)."""
    return {
        "treatment_function_code": lambda c: c.str.to_uppercase().str.strip_prefix("C_"),
        "waiting_list_type": lambda c: c.str.to_uppercase().str.replace_all(r"\s", "")
        .replace(codes.WAITING_LIST_TYPE_SYNONYMS),
        "clinical_priority": lambda c: c.str.to_uppercase().str.replace_all(r"\s", "")
        .replace(_CLINICAL_PRIORITY_FORMS),
        "asa_grade": lambda c: c.str.to_uppercase().str.replace_all(r"ASA|\s", "").str.replace(r"\.0+$", ""),
        "nhs_number_status": lambda c: pl.when(c.str.len_chars() == 1).then("0" + c).otherwise(c),
        "ethnic_category": lambda c: c.str.to_uppercase(),
        "sex": lambda c: c.str.to_uppercase(),
        "postcode": lambda c: c.str.to_uppercase().str.replace_all(r"\s", ""),
        "lsoa11": lambda c: c.str.to_uppercase(),
        "site_code": lambda c: c.str.to_uppercase(),
        "pathway_id_issuer": lambda c: c.str.to_uppercase(),
        "procedure_code": lambda c: c.str.to_uppercase().str.replace_all(r"[.\s]", ""),
        "travel_willingness": lambda c: c.str.to_uppercase().replace(_TRAVEL_FORMS),
        "priority_type": lambda c: c.str.strip_chars_start("0"),
        "intended_management": lambda c: c.str.strip_chars_start("0"),
        "learning_disability": lambda c: c.str.to_uppercase(),
        "interpreter_required": lambda c: c.str.to_uppercase(),
    }


#: code column → (values as sent, their canonical spelling): only the values that change.
Respellings = dict[str, tuple[pl.Series, pl.Series]]


def respellings(frame: pl.DataFrame) -> Respellings:
    """The values of a whole mapped file's code columns that `_normalised` must respell.

    Code columns hold few distinct values, so each spelling rule runs over the distinct values
    once per file, and batches replace only the values it changes (most files need no change
    at all): several times cheaper than rewriting every row's text, or than finding each
    batch's distinct values again."""
    found: Respellings = {}
    for name, spelling in _spellings().items():
        values = frame.get_column(name).drop_nulls().unique()
        canonical = values.to_frame().select(spelling(pl.col(name))).to_series()
        changed = values.ne_missing(canonical)
        if changed.any():
            found[name] = (values.filter(changed), canonical.filter(changed))
    return found


def _normalised(frame: pl.DataFrame, changes: Respellings) -> pl.DataFrame:
    """Canonical spellings of codes so the code-list checks see one form (`changes`: from
    `respellings` over the whole file)."""
    return frame.with_columns(
        pl.col("nhs_number").str.replace_all(r"[\s-]", "").alias("nhs_number"),
        *[pl.col(name).replace(old, new).alias(name) for name, (old, new) in changes.items()],
    )


def nhs_number_valid(numbers: pl.Series) -> pl.Series:
    """Modulus-11 check digit over a 10-digit text column (the rule of the `nhs-number`
    package, vectorised with integer arithmetic; tests check the two agree). Staged as
    columns so the text is parsed once and each digit extracted once."""
    frame = numbers.to_frame("number").with_columns(
        pl.col("number").cast(pl.Int64, strict=False).alias("value")
    )
    value = pl.col("value")
    frame = frame.with_columns([((value // 10 ** (9 - i)) % 10).alias(f"d{i}") for i in range(10)])
    digit = [pl.col(f"d{i}") for i in range(10)]
    total = digit[0] * 10
    for i in range(1, 9):
        total = total + digit[i] * (10 - i)
    frame = frame.with_columns((11 - (total % 11)).alias("check"))
    check = pl.when(pl.col("check") == 11).then(0).otherwise(pl.col("check"))
    # Scottish CHI numbers (0100000000-3112999999) begin with the date of birth as DDMMYY.
    chi = value.is_between(100_000_000, 3_112_999_999)
    day, month, year = digit[0] * 10 + digit[1], digit[2] * 10 + digit[3], digit[4] * 10 + digit[5]
    month_days = (
        pl.when(month == 2).then(pl.when(year % 4 == 0).then(29).otherwise(28))
        .when(month.is_in([4, 6, 9, 11])).then(30)
        .otherwise(31)
    )
    chi_date_ok = month.is_between(1, 12) & (day >= 1) & (day <= month_days)
    return frame.select(
        (
            (pl.col("number").str.len_bytes() == 10)
            & value.is_not_null()
            & (value >= 0)
            & (check != 10)
            & (check == digit[9])
            & (~chi | chi_date_ok)
        ).alias(numbers.name)
    ).to_series()


def nhs_number_valid_expr(number: pl.Expr) -> pl.Expr:
    """`nhs_number_valid` as an expression (true, false, or null for a null number)."""
    return number.map_batches(nhs_number_valid, return_dtype=pl.Boolean)


def nhs_number_placeholder_expr(number: pl.Expr) -> pl.Expr:
    return number.is_in(sorted(codes.PLACEHOLDER_NHS_NUMBERS))


def _severity(name: str) -> Severity:
    """What breaking its rules does to a row: the field's `invalid` (ptl/fields.py)."""
    return "warning" if FIELDS_BY_NAME[name].invalid == "blank" else "rejected"


def _outcome(name: str) -> str:
    """The end of a reason: a blanked value says so."""
    return ": blanked" if _severity(name) == "warning" else ""


def _checks(date_formats: dict[str, str | None], census: dt.date) -> list[_Check]:
    col = pl.col
    census_text = census.isoformat()
    checks: list[_Check] = []
    for name in REQUIRED_VALUES:
        if name in ("provider_code", "census_date"):
            continue
        checks.append(_Check(name, "missing_value", "rejected",
                             *_reason(col(name).is_null(), f"{name} is empty; every row needs one")))
    for name in DATE_FIELDS:
        if name == "census_date":
            continue
        parsed = col(f"{name}__date")
        bad = col(name).is_not_null() & parsed.is_null()
        hint = _format_hint(date_formats.get(name))
        # An identifiable date (of birth) is never quoted, only named.
        reason = (_reason(bad, f"{name} is not a date{hint}{_outcome(name)}")
                  if FIELDS_BY_NAME[name].identifiable
                  else _reason(bad, "'{}' is not a date" + hint + _outcome(name), col(name)))
        checks.append(_Check(name, "bad_date", _severity(name), *reason))
    for name in NOT_AFTER_CENSUS:
        parsed = col(f"{name}__date")
        after = parsed > pl.lit(census)
        reason = (_reason(after, f"{name} is after the census date {census_text}{_outcome(name)}")
                  if FIELDS_BY_NAME[name].identifiable
                  else _reason(after, f"{name} {{}} is after the census date {census_text}{_outcome(name)}",
                               parsed.dt.strftime("%Y-%m-%d")))
        checks.append(_Check(name, "date_after_census", _severity(name), *reason))
    start = col("rtt_start_date__date")
    checks.append(_Check("rtt_start_date", "clock_start_after_census", "rejected",
                         *_reason(start > pl.lit(census),
                                 f"clock start {{}} is after the census date {census_text}",
                                 start.dt.strftime("%Y-%m-%d"))))

    def code_check(name: str, allowed: object, what: str) -> None:
        values = sorted(allowed)  # type: ignore[call-overload]
        bad = col(name).is_not_null() & ~col(name).is_in(values)
        add_code_rule(name, bad, what)

    def shape_check(name: str, pattern: str, what: str) -> None:
        add_code_rule(name, col(name).is_not_null() & ~col(name).str.contains(pattern), what)

    def add_code_rule(name: str, bad: pl.Expr, what: str) -> None:
        severity = _severity(name)
        kind = "bad_code_blanked" if severity == "warning" else "bad_code"
        checks.append(_Check(name, kind, severity,
                             *_reason(bad, "'{}' is not " + what + _outcome(name), col(name))))

    code_check("treatment_function_code", codes.TREATMENT_FUNCTIONS,
               "a treatment function code (3 characters, e.g. 110); translate local specialty "
               "names under [values.treatment_function_code] in the profile")
    code_check("waiting_list_type", codes.WAITING_LIST_TYPES,
               "a waiting list type (IRTT, ORTT, INON or ONON)")
    code_check("rtt_status", codes.RTT_STATUSES, "an RTT period status code (10-36, 90-99)")
    code_check("priority_type", codes.PRIORITY_TYPES,
               "a priority type (1 routine, 2 urgent, 3 two-week wait)")
    code_check("clinical_priority", codes.CLINICAL_PRIORITIES,
               "a clinical priority (P1a, P1b, P2, P3, P4, P5 or P6)")
    code_check("intended_management", codes.INTENDED_MANAGEMENT,
               "an intended management code (1-5, 8 or 9)")
    code_check("asa_grade", [str(g) for g in codes.ASA_GRADES], "an ASA grade (1-6)")
    code_check("nhs_number_status", codes.NHS_NUMBER_STATUSES,
               "an NHS number status indicator (01-08)")
    shape_check("site_code", codes.ODS_SITE_CODE_SHAPE,
                "an ODS site code (5 characters such as RXX01, or a 3-5 character organisation code)")
    shape_check("procedure_code", codes.OPCS4_SHAPE,
                "an OPCS-4 procedure code (a letter and three digits, e.g. W37.1 or W371; one code)")
    code_check("travel_willingness", codes.TRAVEL_WILLINGNESS,
               "a travel willingness (50, 100 or national)")
    bmi = col("bmi").str.replace(",", ".").cast(pl.Float64, strict=False)
    checks.append(_Check("bmi", "bad_number", _severity("bmi"),
                         *_reason(col("bmi").is_not_null() & (bmi.is_null() | (bmi < 10) | (bmi > 100)),
                                 "'{}' is not a BMI between 10 and 100", col("bmi"))))
    checks.append(_Check("rtt_status", "clock_stop_on_open_pathway", "rejected",
                         *_reason(col("rtt_status").is_in(sorted(codes.RTT_CLOCK_STOP_STATUSES)),
                                 "RTT status {} stops the clock, but the pathway is on the open "
                                 "waiting list: correct the status or remove the pathway",
                                 col("rtt_status"))))
    checks.append(_Check("pathway_id", "duplicate_pathway_key", "rejected",
                         *_reason(col("__duplicate"),
                                 "pathway {} is in this file more than once (rows {}); every copy "
                                 "is rejected: send each open pathway once",
                                 col("pathway_id"), col("__dup_rows"))))
    # Warnings: the row loads, the value is blanked.
    number = col("nhs_number")
    checks.append(_Check("nhs_number", "invalid_nhs_number", _severity("nhs_number"),
                         *_reason(number.is_not_null() & col("__nhs_placeholder"),
                                 "the NHS number is a placeholder, not a real number: blanked "
                                 "(the pathway is loaded)")))
    checks.append(_Check("nhs_number", "invalid_nhs_number", _severity("nhs_number"),
                         *_reason(number.is_not_null() & ~col("__nhs_placeholder") & ~col("__nhs_valid"),
                                 "the NHS number fails the modulus-11 check digit: blanked "
                                 "(the pathway is loaded)")))
    code_check("ethnic_category", codes.ETHNIC_CATEGORIES, "an ethnic category (A-S, Z or 99)")
    code_check("sex", codes.SEX_CODES,
               "a stated gender code (1, 2, 9 or X; map local values under [values.sex])")
    checks.append(_Check("postcode", "bad_postcode", _severity("postcode"),
                         *_reason(col("postcode").is_not_null() & ~col("postcode").str.contains(codes.POSTCODE_SHAPE),
                                 "the postcode is not a valid UK postcode: blanked, so no LSOA "
                                 "is derived from it")))
    shape_check("lsoa11", codes.LSOA11_SHAPE, "a 2011 LSOA code (E01 and 6 digits)")
    for name in ("learning_disability", "interpreter_required"):
        code_check(name, _TRUE + _FALSE, "Y or N")
    checks.append(_Check("rtt_start_date", "unknown_clock_start", "warning",
                         *_reason(col("rtt_start_date").is_null()
                                 & col("waiting_list_type").is_in(sorted(codes.RTT_WAITING_LIST_TYPES)),
                                 "no clock start on an RTT pathway: loaded without days waited; "
                                 "validate the pathway")))
    return checks


@dataclass(frozen=True)
class FilePlan:
    """What is settled over the whole file before its rows are checked batch by batch."""

    census_date: dt.date
    #: date column → (its one format or None when unclear, whether values carry a time)
    date_formats: dict[str, tuple[str | None, bool]]
    #: ROW → "__dup_rows" (the rows, as a person numbers them, sharing its pathway key)
    duplicate_rows: pl.DataFrame
    row_offset: int
    #: code values to respell (see `respellings`)
    changes: Respellings
    #: values over their field's maximum length (see `_too_long`)
    too_long: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TOO_LONG_SCHEMA))


def plan_validation(mapped: Mapped, profile: Profile, row_offset: int) -> FilePlan:
    """Settle what needs the whole file: each date column's format, duplicate pathway keys
    and the code values to respell."""
    frame = mapped.frame
    formats = {
        name: column_date_format(frame.get_column(name), profile.date_format)
        for name in DATE_FIELDS if name != "census_date"
    }
    keys = frame.select(
        ROW,
        pl.col("pathway_id"),
        pl.col("pathway_id_issuer").str.to_uppercase().fill_null(pl.col("provider_code"))
        .alias("pathway_id_issuer"),
    ).filter(pl.col("pathway_id").is_not_null())
    key = ["pathway_id_issuer", "pathway_id"]
    repeated = keys.filter(pl.len().over(key) > 1)
    duplicate_rows = repeated.join(
        repeated.group_by(key).agg(
            (pl.col(ROW) + row_offset).sort().head(10).cast(pl.String).str.join(", ").alias("__dup_rows")
        ),
        on=key,
    ).select(ROW, "__dup_rows")
    return FilePlan(census_date=mapped.census_date, date_formats=formats,
                    duplicate_rows=duplicate_rows, row_offset=row_offset, changes=respellings(frame),
                    too_long=mapped.too_long)


def validate(mapped: Mapped, profile: Profile, row_offset: int, source_frame: pl.DataFrame) -> Validated:
    """Check every row of a whole file; return the rows that load (typed) and every issue."""
    plan = plan_validation(mapped, profile, row_offset)
    return validate_batch(mapped.frame, mapped.source_columns, plan, source_frame)


def validate_batch(
    batch: pl.DataFrame,
    source_columns: dict[str, str],
    plan: FilePlan,
    source_frame: pl.DataFrame,
) -> Validated:
    """Check the rows of one batch of a mapped file: any rows, in any order (ROW holds each
    row's 0-based place in the file; `source_frame` is the whole file as read, for quoting
    rejected rows as they were sent)."""
    frame = _normalised(batch, plan.changes)
    frame = frame.with_columns(
        pl.col("pathway_id_issuer").fill_null(pl.col("provider_code")),
        pl.lit(plan.census_date).alias("census_date__date"),
        *[parse_date_column(pl.col(name), fmt, has_time).alias(f"{name}__date")
          for name, (fmt, has_time) in plan.date_formats.items()],
    )
    frame = frame.with_columns(pl.col(ROW).is_in(plan.duplicate_rows.get_column(ROW)).alias("__duplicate"))
    # Computed once as columns: the check-digit arithmetic is referenced by two rules.
    frame = frame.with_columns(
        nhs_number_valid_expr(pl.col("nhs_number")).fill_null(False).alias("__nhs_valid"),
        nhs_number_placeholder_expr(pl.col("nhs_number")).alias("__nhs_placeholder"),
    )

    checks = _checks({name: fmt for name, (fmt, _) in plan.date_formats.items()}, plan.census_date)
    # Cheap pass over every row: does any rule fire? Reasons are built only for those rows.
    any_bad = frame.select(pl.any_horizontal([c.bad.fill_null(False) for c in checks])).to_series()
    suspects = frame.filter(any_bad).join(plan.duplicate_rows, on=ROW, how="left", maintain_order="left")
    flagged = suspects.select(
        pl.col(ROW),
        *[pl.when(c.bad.fill_null(False)).then(c.reason).otherwise(None).alias(f"c{i}")
          for i, c in enumerate(checks)],
    )
    meta = pl.DataFrame(
        {
            "check": [f"c{i}" for i in range(len(checks))],
            "column": [c.column for c in checks],
            "kind": [c.kind for c in checks],
            "severity": [c.severity for c in checks],
        }
    )
    long = (
        flagged.unpivot(index=ROW, variable_name="check", value_name="reason")
        .drop_nulls("reason")
        .join(meta, on="check")
        .select(ROW, "reason", "column", "kind", "severity")
    )
    too_long = plan.too_long.join(batch.select(ROW), on=ROW, how="semi")
    if too_long.height:
        # A value too long to read is reported as that alone (it was blanked: a required
        # field would otherwise be reported empty as well).
        long = pl.concat([long.join(too_long, on=[ROW, "column"], how="anti"), _too_long_issues(too_long)])
    raw_values = (
        batch.join(flagged.select(ROW), on=ROW, how="semi")
        .unpivot(index=ROW, variable_name="column", value_name="raw_value")
    )
    long = long.join(raw_values, on=[ROW, "column"], how="left")
    rejected_rows = long.filter(pl.col("severity") == "rejected").select(ROW).unique()
    rejected_at = rejected_rows.get_column(ROW).sort()
    raw_rows = _raw_rows(source_frame, rejected_at)
    sources = pl.DataFrame(
        {"column": list(source_columns), "source_column": list(source_columns.values())}
    )
    issues = (
        long.join(raw_rows, on=ROW, how="left")
        .join(sources, on="column", how="left")
        .with_columns(
            pl.when(pl.col("severity") == "rejected").then(pl.col("raw_row")).otherwise(None).alias("raw_row"),
            (pl.col(ROW) + plan.row_offset).cast(pl.Int64).alias("row"),
        )
        .select("row", "column", "source_column", "severity", "kind", "reason", "raw_value", "raw_row", ROW)
        .sort("row", "severity", "column")
    )
    warned = issues.filter(pl.col("severity") == "warning")
    clean = frame.filter(~pl.col(ROW).is_in(rejected_rows.get_column(ROW)))
    clean = _typed(clean, warned)
    rows_rejected = rejected_rows.height
    rows_warned = warned.join(rejected_rows, on=ROW, how="anti").select(ROW).n_unique()
    return Validated(
        clean=clean,
        issues=issues.drop(ROW),
        rows_read=frame.height,
        rows_rejected=rows_rejected,
        rows_warned=rows_warned,
    )


#: A cell of a rejected row longer than this is kept as its start and its length.
RAW_CELL_CHARS = 200


def _raw_rows(source_frame: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """Rejected rows as they were sent (JSON, identifiable tier), each cell cut to
    `RAW_CELL_CHARS`: a 150 MB cell is not kept whole because its row was rejected."""
    cells = source_frame.select(pl.all().gather(rows))
    texts = [name for name, dtype in cells.schema.items() if dtype == pl.String]
    long_cells = cells.select((pl.col(name).str.len_bytes() > RAW_CELL_CHARS).any() for name in texts)
    cut = [name for name, found in zip(texts, long_cells.row(0), strict=True) if found] \
        if texts and cells.height else []
    if cut:
        cells = cells.with_columns(
            pl.when(pl.col(name).str.len_chars() > RAW_CELL_CHARS)
            .then(pl.format("{}… ({} characters)", pl.col(name).str.slice(0, RAW_CELL_CHARS),
                            pl.col(name).str.len_chars()))
            .otherwise(pl.col(name)).alias(name)
            for name in cut
        )
    return cells.select(pl.struct(pl.all()).struct.json_encode().alias("raw_row")).with_columns(rows.alias(ROW))


def _too_long_issues(too_long: pl.DataFrame) -> pl.DataFrame:
    """Issues for values over their field's maximum length: their length, never their text."""
    names = too_long.get_column("column").unique().to_list()
    fields = pl.DataFrame({
        "column": names,
        "max_length": [FIELDS_BY_NAME[name].max_length for name in names],
        "severity": [_severity(name) for name in names],
    })
    return too_long.join(fields, on="column").select(
        ROW,
        pl.format("{} is {} characters long, more than its maximum of {}{}",
                  pl.col("column"), pl.col("length"), pl.col("max_length"),
                  pl.when(pl.col("severity") == "warning").then(pl.lit(": blanked")).otherwise(pl.lit("")))
        .alias("reason"),
        "column",
        pl.lit("too_long").alias("kind"),
        "severity",
    )


def _typed(clean: pl.DataFrame, warned: pl.DataFrame) -> pl.DataFrame:
    """Typed canonical columns; values that drew a warning are blanked."""
    blanked = warned.select(ROW, "column").unique()
    # A date is blanked in its parsed column, the one that is kept.
    target = {name: f"{name}__date" for name in DATE_FIELDS}
    out = clean.with_columns(
        pl.when(pl.col(ROW).is_in(rows.get_column(ROW))).then(None)
        .otherwise(pl.col(target.get(column, column))).alias(target.get(column, column))
        for (column,), rows in blanked.group_by("column")
        if column != "rtt_start_date"  # unknown clock start: already empty
    )
    boolean = {name: pl.when(pl.col(name).is_in(_TRUE)).then(True)
               .when(pl.col(name).is_in(_FALSE)).then(False).otherwise(None)
               for name in ("learning_disability", "interpreter_required")}
    return out.select(
        ROW,
        *[pl.col(f"{name}__date").alias(name) for name in DATE_FIELDS],
        *[pl.col(f.name) for f in FIELDS
          if f.kind not in ("date", "boolean") and f.name not in ("asa_grade", "bmi", "postcode")],
        pl.col("asa_grade").cast(pl.Int16, strict=False),
        pl.col("bmi").str.replace(",", ".").cast(pl.Float64, strict=False),
        *[expr.alias(name) for name, expr in boolean.items()],
        display_postcode(pl.col("postcode")).alias("postcode"),
    )


def display_postcode(postcode: pl.Expr) -> pl.Expr:
    """'LS11AB' → 'LS1 1AB' (outward code, space, inward code), as the lookup holds them."""
    return (
        pl.when(postcode.is_not_null())
        .then(postcode.str.slice(0, postcode.str.len_chars() - 3) + " " + postcode.str.slice(-3))
        .alias("postcode")
    )

