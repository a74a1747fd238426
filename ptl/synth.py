"""Synthetic ICB data: seeded, deterministic weekly PTL extracts with a ground truth.

This module owns the synthetic system used by `ptl demo`, the test suite and the benchmarks:

* a fictional ICB of NHS trusts and independent-sector (IS) providers, each writing its weekly
  PTL extract in a different *dialect* (WLMDS CSV, a local Windows-1252 CSV, XLSX, Parquet, and
  a sparse IS CSV with only the required fields and the NHS number) with the matching ingest
  profile;
* reference data for it (IMD 2019 in the GOV.UK layout unless a real file is given, an NSPL-like
  postcode directory, treatment sites);
* a ground truth of everything planted (true persons behind every local identity, every rejected
  or warned row with its row number, column and kind, duplicate pathways across providers), so
  end-to-end tests can check ingest counts *exactly* and identity linking can be scored.

Everything is vectorised with numpy/polars: loops run over providers, weeks and defect kinds,
never over rows. The same seed always gives the same data (each stage draws from its own
`numpy` stream, so turning `bad_rows` off does not change the clean data).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from ptl import codes
from ptl.fields import DATE_FIELDS, FIELD_NAMES, FIELDS

__all__ = [
    "SynthFeed",
    "SynthSystem",
    "generate_system",
    "write_canonical_extract",
    "last_sunday",
    "DIALECTS",
]


# --------------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthFeed:
    """One extract file written by `generate_system`."""

    provider_code: str
    census_date: dt.date
    path: Path  # absolute
    profile: str  # "wlmds", "canonical" or an absolute path to a .toml profile
    file_format: str  # "csv" | "xlsx" | "parquet"
    rows: int  # data rows in the file
    expected_loaded: int  # rows that must load (including rows that only carry warnings)
    expected_rejected: int  # distinct rows that must be rejected


@dataclass(frozen=True)
class SynthSystem:
    """A generated system: its feeds (ordered by census date then provider) and truth."""

    out_dir: Path
    feeds: list[SynthFeed]
    providers: list[dict[str, Any]]
    truth_dir: Path


# --------------------------------------------------------------------------------------------
# Reference tables (fictional but realistic)
# --------------------------------------------------------------------------------------------

#: Treatment functions on the synthetic PTL and their share of a trust's list.
TRUST_TFS: Final[tuple[str, ...]] = ("110", "130", "101", "120", "502", "100", "320", "330", "301")
TRUST_TF_WEIGHTS: Final[tuple[float, ...]] = (0.22, 0.17, 0.10, 0.11, 0.10, 0.12, 0.07, 0.06, 0.05)
#: IS providers do high-volume, low-complexity surgery only.
IS_TFS: Final[tuple[str, ...]] = ("110", "130", "100", "120", "101", "502")
IS_TF_WEIGHTS: Final[tuple[float, ...]] = (0.38, 0.27, 0.12, 0.09, 0.07, 0.07)

#: Typical proposed procedures (OPCS-4) per treatment function, for admitted pathways.
PROCEDURES: Final[dict[str, tuple[str, ...]]] = {
    "110": ("W371", "W401", "W822", "T521"),
    "130": ("C751", "C712", "C863"),
    "101": ("M651", "M459", "M421"),
    "120": ("F341", "D151", "E036"),
    "502": ("Q074", "Q181", "Q383"),
    "100": ("T202", "J183", "H511"),
    "320": ("K634", "K571", "K604"),
    "330": ("S061", "S062", "S091"),
    "301": ("G451", "H221", "H251"),
}

#: Local specialty names (the local CSV dialect writes these instead of codes).
SPECIALTY_NAMES: Final[dict[str, str]] = {
    "110": "Trauma & Orthopaedics",
    "130": "Ophthalmology",
    "101": "Urology",
    "120": "ENT",
    "502": "Gynaecology",
    "100": "General Surgery",
    "320": "Cardiology",
    "330": "Dermatology",
    "301": "Gastroenterology",
}

ETHNIC_CODES: Final[tuple[str, ...]] = (
    "A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S", "Z", "99",
)
#: An English city: ~74% White British, ~8% not stated/known, the rest spread.
ETHNIC_WEIGHTS: Final[tuple[float, ...]] = (
    0.74, 0.010, 0.035, 0.007, 0.004, 0.006, 0.005, 0.030, 0.018, 0.007, 0.008,
    0.008, 0.014, 0.003, 0.004, 0.006, 0.050, 0.030,
)

MALE_NAMES: Final[tuple[str, ...]] = (
    "William", "Robert", "James", "Richard", "Michael", "Thomas", "Christopher", "Anthony",
    "Alexander", "Joseph", "Daniel", "Edward", "Samuel", "Matthew", "Nicholas", "Benjamin",
    "David", "John", "Paul", "Mark", "Andrew", "Peter", "George", "Oliver", "Harry", "Jack",
    "Mohammed", "Ahmed", "Imran", "Rajesh", "Sanjay", "Kwame", "Chinedu", "Wei", "José",
    "Tomasz", "Piotr", "Björn", "Ryan", "Liam", "Connor", "Adam", "Stephen", "Gary", "Kevin",
)
FEMALE_NAMES: Final[tuple[str, ...]] = (
    "Elizabeth", "Margaret", "Catherine", "Jennifer", "Susan", "Patricia", "Deborah",
    "Katherine", "Rebecca", "Victoria", "Jessica", "Abigail", "Samantha", "Alexandra",
    "Sarah", "Emma", "Claire", "Helen", "Joanne", "Karen", "Laura", "Amelia", "Olivia",
    "Isla", "Sophie", "Fatima", "Aisha", "Priya", "Sunita", "Ngozi", "Amara", "Mei",
    "Zoë", "Renée", "Chloë", "Agnieszka", "Anna", "Mary", "Julie", "Nicola", "Lucy",
    "Hannah", "Grace", "Ruth", "Ellie",
)
FAMILY_NAMES: Final[tuple[str, ...]] = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    "Jackson", "Clarke", "Patel", "Khan", "Hussain", "Ali", "Begum", "Shah", "Singh", "Kaur",
    "Mistry", "Chauhan", "Okafor", "Mensah", "Adeyemi", "Campbell", "Murphy", "O'Brien",
    "Kelly", "Nowak", "Kowalski", "Lewandowski", "Chen", "Wang", "Nguyen", "Muñoz", "Gómez",
    "Müller", "Öztürk", "Brontë", "Lefèvre", "Hughes", "Edwards", "Turner", "Harris",
    "Martin", "Cooper", "Ward", "Morris", "Moore", "Clark", "Lee", "King", "Baker",
    "Harrison", "Morgan", "Allen", "James", "Scott", "Phillips", "Watson", "Davis", "Parker",
    "Price", "Bennett", "Young", "Griffiths", "Mitchell", "Fernández", "Cook", "Carter",
)
#: Common English nicknames (a second provider often records the name the patient uses).
NICKNAMES: Final[dict[str, str]] = {
    "William": "Bill", "Elizabeth": "Liz", "Robert": "Bob", "Margaret": "Maggie",
    "James": "Jim", "Catherine": "Kate", "Richard": "Rick", "Jennifer": "Jenny",
    "Michael": "Mike", "Susan": "Sue", "Thomas": "Tom", "Patricia": "Pat",
    "Christopher": "Chris", "Deborah": "Debbie", "Anthony": "Tony", "Alexander": "Alex",
    "Joseph": "Joe", "Katherine": "Kathy", "Daniel": "Dan", "Rebecca": "Becky",
    "Edward": "Ted", "Victoria": "Vicky", "Samuel": "Sam", "Jessica": "Jess",
    "Matthew": "Matt", "Abigail": "Abby", "Nicholas": "Nick", "Samantha": "Sam",
    "Benjamin": "Ben", "Alexandra": "Lexi",
}
#: Faker locales whose name lists give the population its long tail of rarer names (the lists
#: above stay the commonest). Latin-script lists only, and only names Windows-1252 encodes,
#: since the local CSV dialect writes that encoding.
NAME_LOCALES: Final[tuple[str, ...]] = (
    "en_GB", "en_US", "en_NZ", "en_IE", "en_IN", "en_PK", "yo_NG", "tw_GH", "de_DE", "es_ES", "it_IT",
    "fr_FR", "pl_PL", "tr_TR", "ro_RO",
)
#: Names are drawn with Zipf-like frequencies 1/(rank + offset): with a few thousand names the
#: commonest surname is about 1% of people and the commonest given name about 2% per sex, as
#: in England and Wales, and different people sharing a full name and date of birth are rare.
NAME_RANK_OFFSET: Final[float] = 10.0
_NAME_PATTERN: Final[str] = r"^[A-Za-zÀ-ÖØ-öø-ÿ][A-Za-zÀ-ÖØ-öø-ÿ' -]+$"


@dataclass(frozen=True)
class NamePools:
    """Given names by sex and family names, commonest first, with their draw weights."""

    male: tuple[str, ...]
    female: tuple[str, ...]
    family: tuple[str, ...]

    @staticmethod
    def weights(names: Sequence[str]) -> np.ndarray:
        return 1.0 / (np.arange(len(names)) + NAME_RANK_OFFSET)


def _ranked(head: Sequence[str], attribute: str) -> tuple[str, ...]:
    """`head` first, then the Faker locales' names: frequency-weighted lists by weight, the
    others in a fixed shuffled order (their own order is alphabetical); duplicates dropped."""
    import importlib

    weighted: dict[str, float] = {}
    plain: list[str] = []
    for locale in NAME_LOCALES:
        try:
            names = getattr(importlib.import_module(f"faker.providers.person.{locale}").Provider, attribute, ())
        except ImportError:  # pragma: no cover - a Faker without this locale
            continue
        if isinstance(names, dict):
            for name, weight in names.items():
                weighted[name] = max(weighted.get(name, 0.0), float(weight))
        else:
            plain.extend(names)
    rest = sorted(set(plain) - set(weighted))
    order = [rest[i] for i in np.random.default_rng(0).permutation(len(rest))]
    candidates = [*head, *sorted(weighted, key=lambda n: (-weighted[n], n)), *order]
    frame = pl.DataFrame({"name": candidates}).with_columns(pl.col("name").str.strip_chars())
    # Letters of Latin-1 only, which Windows-1252 encodes.
    usable = frame.filter(pl.col("name").str.contains(_NAME_PATTERN))
    return tuple(usable.unique("name", keep="first", maintain_order=True)["name"].to_list())


@functools.cache
def name_pools() -> NamePools:
    """The synthetic population's names (Faker's lists behind the common ones above)."""
    return NamePools(male=_ranked(MALE_NAMES, "first_names_male"),
                     female=_ranked(FEMALE_NAMES, "first_names_female"),
                     family=_ranked(FAMILY_NAMES, "last_names"))


CORRUPTIONS: Final[tuple[str, ...]] = (
    "family_name_typo", "nickname", "dob_day_month_swapped", "postcode_changed", "postcode_missing",
)

CITY: Final[str] = "Midchester"
CITY_LAT: Final[float] = 52.636
CITY_LONG: Final[float] = -1.133
TRUST_NAMES: Final[tuple[str, ...]] = (
    "Midchester University Hospitals NHS Trust",
    "Northfield and Wexcombe Hospitals NHS Foundation Trust",
    "South Midshire Healthcare NHS Trust",
    "Ashby Vale Hospitals NHS Trust",
    "Riverside Midchester NHS Foundation Trust",
)
IS_NAMES: Final[tuple[str, ...]] = (
    "Meridian Elective Care Midchester",
    "Oakwood Independent Hospital",
    "Greenfields Surgical Centre",
    "Clearview Eye Hospital",
    "Parkside Treatment Centre",
)
SITE_SUFFIXES: Final[tuple[str, ...]] = ("General Hospital", "Royal Infirmary", "Treatment Centre")

#: GOV.UK IMD 2019 File 1 headers (the layout our reference loader reads).
IMD_COLUMNS: Final[tuple[str, ...]] = (
    "LSOA code (2011)",
    "LSOA name (2011)",
    "Local Authority District code (2019)",
    "Local Authority District name (2019)",
    "Index of Multiple Deprivation (IMD) Rank",
    "Index of Multiple Deprivation (IMD) Decile",
)
IMD_LSOA_COUNT: Final[int] = 32_844
#: Inward-code letters valid in UK postcodes (C I K M O V are never used).
_INWARD_LETTERS: Final[str] = "ABDEFGHJLNPQRSTUWXYZ"
#: A postcode area that does not exist, so synthetic postcodes never collide with real ones.
_POSTCODE_AREA: Final[str] = "YY"

_EPOCH: Final[dt.date] = dt.date(1970, 1, 1)
_WEEKLY_TURNOVER: Final[float] = 0.025  # share of open pathways stopping (and starting) weekly
_REJECTED_KINDS: Final[tuple[str, ...]] = (
    "missing_value", "bad_date", "date_after_census", "clock_start_after_census", "bad_code",
    "clock_stop_on_open_pathway", "duplicate_pathway_key",
)
_WARNING_KINDS: Final[tuple[str, ...]] = ("invalid_nhs_number", "bad_code_blanked",
                                          "unknown_clock_start")
_TRUTH_ROW_SCHEMA: Final[dict[str, type[pl.DataType]]] = {
    "file": pl.String, "provider_code": pl.String, "census_date": pl.String,
    "row": pl.Int64, "column": pl.String, "kind": pl.String,
}


# --------------------------------------------------------------------------------------------
# Dialects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """How one provider's PAS writes its extract."""

    name: str
    file_format: str  # csv | xlsx | parquet
    columns: dict[str, str]  # canonical field -> source header (fields not listed are absent)
    date_format: str = "%Y-%m-%d"
    delimiter: str = ","
    encoding: str = "utf-8"
    bom: bool = False
    #: canonical value -> source value, per field (the profile holds the inverse).
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    spaced_nhs_number: bool = False
    #: "wlmds"/"canonical" for built-in profiles, "" when a TOML profile is written.
    builtin_profile: str = ""
    #: XLSX keeps numbers (ASA, BMI) as numeric cells.
    numeric_cells: bool = False


_WLMDS_COLUMNS: Final[dict[str, str]] = {f.name: (f.wlmds[0] if f.wlmds else f.name) for f in FIELDS}
_CANONICAL_COLUMNS: Final[dict[str, str]] = {name: name for name in FIELD_NAMES}

DIALECTS: Final[tuple[Dialect, ...]] = (
    Dialect("wlmds", "csv", _WLMDS_COLUMNS, bom=True, builtin_profile="wlmds"),
    Dialect(
        "local-csv",
        "csv",
        {
            "local_patient_id": "Hospital No",
            "nhs_number": "NHS Number",
            "nhs_number_status": "NHS No Status",
            "family_name": "Surname",
            "given_name": "Forename",
            "date_of_birth": "DOB",
            "sex": "Sex",
            "postcode": "Postcode",
            "ethnic_category": "Ethnicity",
            "pathway_id": "Pathway Ref",
            "referral_id": "Referral No",
            "site_code": "Site",
            "treatment_function_code": "Specialty",
            "rtt_start_date": "Clock Start",
            "rtt_status": "RTT Status",
            "waiting_list_type": "List Type",
            "priority_type": "Urgency",
            "clinical_priority": "Priority",
            "procedure_code": "Planned Procedure",
            "intended_management": "Patient Class",
            "decision_to_admit_date": "Date Listed",
            "tci_date": "TCI Date",
            "asa_grade": "ASA",
            "bmi": "BMI",
            "learning_disability": "LD Flag",
            "interpreter_required": "Interpreter",
            "last_validated_date": "Last Validated",
            "last_attended_date": "Last Attended",
            "last_dna_date": "Last DNA",
            "travel_willingness": "Travel",
        },
        date_format="%d/%m/%Y",
        delimiter=";",
        encoding="windows-1252",
        values={
            "treatment_function_code": SPECIALTY_NAMES,
            "sex": {"1": "M", "2": "F", "X": "U"},
            "priority_type": {"1": "Routine", "2": "Urgent", "3": "2WW"},
            "waiting_list_type": {
                "IRTT": "Inpatient RTT",
                "ORTT": "Outpatient RTT",
                "INON": "Inpatient Planned",
                "ONON": "Outpatient Planned",
            },
            "intended_management": {"1": "IP", "2": "DC"},
        },
        spaced_nhs_number=True,
    ),
    Dialect(
        "xlsx",
        "xlsx",
        {
            "provider_code": "Trust Code",
            "site_code": "Site Code",
            "local_patient_id": "MRN",
            "nhs_number": "NHS No",
            "nhs_number_status": "NHS No Status",
            "family_name": "Last Name",
            "given_name": "First Name",
            "date_of_birth": "Date of Birth",
            "sex": "Gender",
            "postcode": "Post Code",
            "ethnic_category": "Ethnic Origin",
            "pathway_id": "PPI",
            "referral_id": "Referral ID",
            "treatment_function_code": "TFC",
            "rtt_start_date": "RTT Start",
            "rtt_status": "RTT Status",
            "waiting_list_type": "WL Type",
            "priority_type": "Priority Type",
            "clinical_priority": "P Code",
            "procedure_code": "OPCS",
            "intended_management": "Mgmt",
            "decision_to_admit_date": "DTA",
            "tci_date": "TCI",
            "asa_grade": "ASA Grade",
            "bmi": "BMI",
            "learning_disability": "Learning Disability",
            "interpreter_required": "Interpreter",
            "last_validated_date": "Validated On",
            "last_attended_date": "Last Seen",
            "last_dna_date": "Last DNA",
            "travel_willingness": "Travel",
        },
        values={"sex": {"1": "Male", "2": "Female", "X": "Not Known"}},
        numeric_cells=True,
    ),
    Dialect("parquet", "parquet", _CANONICAL_COLUMNS, builtin_profile="canonical"),
    # An independent-sector extract with what WLMDS requires and the NHS number only: no
    # names, date of birth, postcode, sex, ethnicity, site or clinical detail.
    Dialect(
        "sparse",
        "csv",
        {
            "local_patient_id": "Patient ID",
            "nhs_number": "NHS Number",
            "pathway_id": "Pathway ID",
            "treatment_function_code": "Treatment Function",
            "rtt_start_date": "Clock Start Date",
            "waiting_list_type": "Waiting List",
        },
        date_format="%d/%m/%Y",
    ),
)
#: The dialect only independent-sector providers write (a trust that would get it writes WLMDS).
SPARSE_DIALECT: Final[str] = "sparse"
_DIALECT_BY_NAME: Final[dict[str, Dialect]] = {d.name: d for d in DIALECTS}
_EXT: Final[dict[str, str]] = {"csv": "csv", "xlsx": "xlsx", "parquet": "parquet"}


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def last_sunday(today: dt.date | None = None) -> dt.date:
    """The most recent Sunday on or before `today` (default: today)."""
    day = today or dt.date.today()
    return day - dt.timedelta(days=(day.weekday() + 1) % 7)


def _days(day: dt.date) -> int:
    return (day - _EPOCH).days


def _date_series(name: str, days: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    s = pl.Series(name, days.astype(np.int32)).cast(pl.Date)
    return _null_where_not(s, valid)


def _null_where_not(s: pl.Series, valid: np.ndarray | None) -> pl.Series:
    if valid is None:
        return s
    nulls = pl.repeat(None, len(s), dtype=s.dtype, eager=True)
    return s.zip_with(pl.Series(valid.astype(bool)), nulls).alias(s.name)


def _pick(name: str, options: Sequence[str], idx: np.ndarray, valid: np.ndarray | None = None
          ) -> pl.Series:
    """Strings `options[idx]` as a polars Series (nulls where not `valid`)."""
    s = pl.Series(name, list(options), dtype=pl.String).gather(idx.astype(np.int64))
    return _null_where_not(s.alias(name), valid)


def _choice(rng: np.random.Generator, n: int, weights: Sequence[float] | np.ndarray
            ) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _weighted_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column index per row of a non-negative weight matrix (rows must not sum to 0)."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def _ids(prefix: str | pl.Series, numbers: np.ndarray, width: int, name: str) -> pl.Series:
    """`prefix` + zero-padded numbers (a constant prefix or one per row)."""
    digits = pl.Series(numbers.astype(np.int64)).cast(pl.String).str.zfill(width)
    return (prefix + digits).alias(name)


def _nhs_check_digits(bodies: np.ndarray) -> np.ndarray:
    """Modulus-11 check digit of 9-digit bodies (10 means the body cannot be used)."""
    total = np.zeros(len(bodies), dtype=np.int64)
    for i in range(9):
        total += (bodies // 10 ** (8 - i) % 10) * (10 - i)
    check = 11 - total % 11
    return np.where(check == 11, 0, check)


def _valid_nhs_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` distinct valid NHS numbers from the 9xx test range (never a placeholder)."""
    bodies = 900_000_000 + rng.choice(100_000_000, size=int(n * 1.15) + 32, replace=False)
    check = _nhs_check_digits(bodies)
    numbers = bodies * 10 + check
    placeholders = np.array([int(p) for p in codes.PLACEHOLDER_NHS_NUMBERS], dtype=np.int64)
    ok = (check < 10) & ~np.isin(numbers, placeholders)
    out = numbers[ok]
    if len(out) < n:  # vanishingly unlikely; top up deterministically
        return np.concatenate([out, _valid_nhs_numbers(rng, n - len(out))])[:n]
    return out[:n]


def _invalid_nhs_numbers(rng: np.random.Generator, n: int) -> list[str]:
    """Placeholders and wrong check digits, cycling, as planted NHS number defects."""
    bodies = 900_000_000 + rng.integers(0, 100_000_000, size=max(n, 1))
    check = _nhs_check_digits(bodies)
    wrong = bodies * 10 + np.where(check >= 10, 0, (check + 1) % 10)
    out: list[str] = []
    for i in range(n):
        if i % 3 == 0:
            out.append("0000000000")
        elif i % 3 == 1:
            out.append(str(int(wrong[i])))
        else:
            out.append("1111111111")
    return out


def _toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Geography: LSOAs with IMD, postcodes, sites
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geo:
    lsoa: pl.DataFrame  # lsoa11, name, la_code, la_name, rank, decile, lat, long
    postcodes: pl.DataFrame  # pcds, lsoa_idx, lat, long
    real_imd: bool


def _decile_of_rank(rank: np.ndarray) -> np.ndarray:
    return np.minimum(10, np.ceil(rank * 10 / IMD_LSOA_COUNT)).astype(np.int64)


def _fictional_lsoas(rng: np.random.Generator, n: int = 300) -> pl.DataFrame:
    # Stratified by decile so every quintile is well populated (equity views need both ends).
    decile = np.arange(n) % 10 + 1
    lo = np.floor((decile - 1) * IMD_LSOA_COUNT / 10) + 1
    hi = np.floor(decile * IMD_LSOA_COUNT / 10)
    rank = (lo + np.floor(rng.random(n) * (hi - lo + 1))).astype(np.int64)
    order = rng.permutation(n)
    rank = rank[order]
    la = (np.arange(n) >= n * 2 // 3).astype(np.int64)
    la_codes = pl.Series(["E06900001", "E07900002"]).gather(la)
    la_names = pl.Series([CITY, "South Midshire"]).gather(la)
    within = np.arange(n) - np.where(la == 1, n * 2 // 3, 0)
    letters = pl.Series(list("ABCDE")).gather(within % 5)
    names = la_names + " " + pl.Series(within // 5 + 1).cast(pl.String).str.zfill(3) + letters
    return pl.DataFrame(
        {
            "lsoa11": _ids("E01", 900_001 + np.arange(n), 6, "lsoa11"),
            "name": names,
            "la_code": la_codes,
            "la_name": la_names,
            "rank": rank,
            "decile": _decile_of_rank(rank),
        }
    )


def _real_lsoas(rng: np.random.Generator, imd_path: Path, target: int = 300) -> pl.DataFrame:
    raw = pl.read_csv(imd_path, infer_schema_length=0, encoding="utf8-lossy")
    raw = raw.rename({c: c.lstrip("\ufeff") for c in raw.columns})
    imd = raw.select(
        pl.col(IMD_COLUMNS[0]).alias("lsoa11"),
        pl.col(IMD_COLUMNS[1]).alias("name"),
        pl.col(IMD_COLUMNS[2]).alias("la_code"),
        pl.col(IMD_COLUMNS[3]).alias("la_name"),
        pl.col(IMD_COLUMNS[4]).str.replace_all(",", "").cast(pl.Int64).alias("rank"),
        pl.col(IMD_COLUMNS[5]).cast(pl.Int64).alias("decile"),
    ).sort("lsoa11")
    # Two or three local authorities that between them span every decile: a "city" and its
    # neighbours, chosen reproducibly from the seed.
    by_la = (
        imd.group_by("la_code")
        .agg(pl.len().alias("n"), pl.col("decile").n_unique().alias("deciles"))
        .filter((pl.col("deciles") == 10) & (pl.col("n") >= 100))
        .sort("la_code")
    )
    if by_la.height >= 3:
        chosen = by_la["la_code"].gather(rng.choice(by_la.height, 3, replace=False))
        pool = imd.filter(pl.col("la_code").is_in(chosen.implode()))
    else:
        pool = imd
    per_decile = math.ceil(target / 10)
    pool = pool.with_columns(pl.Series("_key", rng.random(pool.height)))
    picked = (
        pool.sort("_key")
        .with_columns(pl.int_range(pl.len()).over("decile").alias("_n"))
        .filter(pl.col("_n") < per_decile)
        .drop("_key", "_n")
        .sort("lsoa11")
    )
    return picked


def _make_geo(rng: np.random.Generator, imd_path: Path | None, per_lsoa: int = 6) -> _Geo:
    lsoa = _real_lsoas(rng, imd_path) if imd_path is not None else _fictional_lsoas(rng)
    n = lsoa.height
    # Deprived LSOAs cluster near the centre, as in most English cities.
    radius = 0.02 + 0.10 * (lsoa["decile"].to_numpy() - 1) / 9 * rng.random(n) + 0.02 * rng.random(n)
    angle = rng.random(n) * 2 * np.pi
    lat = CITY_LAT + radius * np.sin(angle)
    lon = CITY_LONG + 1.6 * radius * np.cos(angle)
    lsoa = lsoa.with_columns(pl.Series("lat", lat), pl.Series("long", lon))
    # Postcodes: districts group neighbouring LSOAs; inward codes unique within a district.
    m = n * per_lsoa
    lsoa_idx = np.repeat(np.arange(n), per_lsoa)
    district = lsoa_idx // 12 + 1
    inward = np.empty(m, dtype=np.int64)
    for d in np.unique(district):
        sel = np.flatnonzero(district == d)
        inward[sel] = rng.choice(10 * len(_INWARD_LETTERS) ** 2, size=len(sel), replace=False)
    sector = inward // (len(_INWARD_LETTERS) ** 2)
    l1 = inward // len(_INWARD_LETTERS) % len(_INWARD_LETTERS)
    l2 = inward % len(_INWARD_LETTERS)
    letters = pl.Series(list(_INWARD_LETTERS))
    pcds = (
        _POSTCODE_AREA
        + pl.Series(district).cast(pl.String)
        + " "
        + pl.Series(sector).cast(pl.String)
        + letters.gather(l1)
        + letters.gather(l2)
    )
    postcodes = pl.DataFrame(
        {
            "pcds": pcds,
            "lsoa_idx": lsoa_idx,
            "lat": np.round(lat[lsoa_idx] + rng.normal(0, 0.002, m), 6),
            "long": np.round(lon[lsoa_idx] + rng.normal(0, 0.003, m), 6),
        }
    )
    return _Geo(lsoa=lsoa, postcodes=postcodes, real_imd=imd_path is not None)


def _write_refdata(out_dir: Path, geo: _Geo, providers: list[dict[str, Any]]) -> None:
    ref = out_dir / "refdata"
    ref.mkdir(parents=True, exist_ok=True)
    pc = geo.postcodes
    outward = pc["pcds"].str.split(" ").list.first()
    inward = pc["pcds"].str.split(" ").list.last()
    nspl = pl.DataFrame(
        {
            # ONS layouts: pcd is the 7-character form, pcd2 the 8-character form.
            "pcd": outward.str.pad_end(4) + inward,
            "pcd2": outward.str.pad_end(4) + " " + inward,
            "pcds": pc["pcds"],
            "dointr": pl.repeat("198001", pc.height, eager=True),
            "doterm": pl.repeat(None, pc.height, dtype=pl.String, eager=True),
            "lsoa11": geo.lsoa["lsoa11"].gather(pc["lsoa_idx"]),
            "lat": pc["lat"],
            "long": pc["long"],
        }
    )
    nspl.write_csv(ref / "postcodes.csv")
    sites = pl.DataFrame(
        [
            {
                "site_code": s["site_code"],
                "provider_code": p["provider_code"],
                "name": s["name"],
                "postcode": s["postcode"],
                "lat": s["lat"],
                "long": s["long"],
            }
            for p in providers
            for s in p["sites"]
        ]
    )
    sites.write_csv(ref / "sites.csv")
    if not geo.real_imd:
        rank_text = [f"{r:,}" for r in geo.lsoa["rank"].to_list()]  # ~300 reference rows
        imd = pl.DataFrame(
            {
                IMD_COLUMNS[0]: geo.lsoa["lsoa11"],
                IMD_COLUMNS[1]: geo.lsoa["name"],
                IMD_COLUMNS[2]: geo.lsoa["la_code"],
                IMD_COLUMNS[3]: geo.lsoa["la_name"],
                IMD_COLUMNS[4]: pl.Series(rank_text, dtype=pl.String),
                IMD_COLUMNS[5]: geo.lsoa["decile"],
            }
        )
        # Like the GOV.UK file: UTF-8 with BOM, ranks quoted because of the thousands separator.
        imd.write_csv(ref / "imd2019_lsoa11.csv", include_bom=True)


def _dialect_name(i: int, kind: str) -> str:
    """Providers cycle through the dialects in order; the sparse one is for IS providers."""
    name = DIALECTS[i % len(DIALECTS)].name
    return "wlmds" if name == SPARSE_DIALECT and kind == "trust" else name


def _ods_code(prefix: str, i: int) -> str:
    return f"{prefix}{'ZYXWVUTSRQ'[i // 26 % 10]}{chr(ord('A') + i % 26)}"


def _make_providers(rng: np.random.Generator, trusts: int, independents: int, geo: _Geo
                    ) -> list[dict[str, Any]]:
    providers: list[dict[str, Any]] = []
    kinds = ["trust"] * trusts + ["independent"] * independents
    n_pc = geo.postcodes.height
    for i, kind in enumerate(kinds):
        j = i if kind == "trust" else i - trusts
        code = _ods_code("R" if kind == "trust" else "N", j)
        if kind == "trust":
            name = TRUST_NAMES[j] if j < len(TRUST_NAMES) else f"{CITY} Hospitals {j + 1} NHS Trust"
            n_sites = int(rng.integers(2, 4))
        else:
            name = IS_NAMES[j] if j < len(IS_NAMES) else f"{CITY} Independent Hospital {j + 1}"
            n_sites = int(rng.integers(1, 3))
        sites = []
        for k in range(n_sites):
            pc_row = int(rng.integers(0, n_pc))
            site_name = (f"{name.split(' NHS')[0]} {SITE_SUFFIXES[k % 3]}" if kind == "trust"
                         else f"{name} site {k + 1}")
            sites.append(
                {
                    "site_code": f"{code}{k + 1:02d}",
                    "name": site_name,
                    "postcode": geo.postcodes["pcds"][pc_row],
                    "lat": float(geo.postcodes["lat"][pc_row]),
                    "long": float(geo.postcodes["long"][pc_row]),
                }
            )
        providers.append(
            {
                "provider_code": code,
                "name": name,
                "kind": kind,
                "dialect": _dialect_name(i, kind),
                "sites": sites,
            }
        )
    return providers


# --------------------------------------------------------------------------------------------
# Persons
# --------------------------------------------------------------------------------------------


def _make_persons(rng: np.random.Generator, n: int, geo: _Geo, census: dt.date) -> pl.DataFrame:
    """`n` true persons with their true demographics."""
    lsoa_decile = geo.lsoa["decile"].to_numpy()
    # The city skews deprived: more residents (and more referrals) in low deciles.
    pc_lsoa = geo.postcodes["lsoa_idx"].to_numpy()
    pc_weight = (1.35 - 0.06 * lsoa_decile)[pc_lsoa]
    postcode = rng.choice(len(pc_lsoa), size=n, p=pc_weight / pc_weight.sum())
    decile = lsoa_decile[pc_lsoa[postcode]]
    deprived = decile <= 3
    affluent = decile >= 8

    sex_idx = _choice(rng, n, (0.47, 0.52, 0.01))
    male = (sex_idx == 0) | ((sex_idx == 2) & (rng.random(n) < 0.5))
    pools = name_pools()
    given_m = _choice(rng, n, NamePools.weights(pools.male))
    given_f = _choice(rng, n, NamePools.weights(pools.female))
    given = pl.select(
        pl.when(pl.Series(male))
        .then(_pick("g", pools.male, given_m))
        .otherwise(_pick("g", pools.female, given_f))
    ).to_series()
    family = _pick("family_name", pools.family, _choice(rng, n, NamePools.weights(pools.family)))

    # Elective waiting lists skew old; a few children (min age 3 so DOB < any clock start).
    child = rng.random(n) < 0.07
    age = np.where(child, rng.uniform(3, 18, n), np.clip(rng.normal(58, 17, n), 18, 97))
    dob = _days(census) - (age * 365.25).astype(np.int64)

    # Ethnicity: minority groups more common in deprived LSOAs (as in most English cities).
    base = np.asarray(ETHNIC_WEIGHTS)
    minority = np.ones(len(base), dtype=bool)
    minority[[0, 16, 17]] = False  # A, Z, 99
    w_dep = base * np.where(minority, 1.9, 1.0)
    w_aff = base * np.where(minority, 0.55, 1.0)
    eth = np.where(
        deprived, _choice(rng, n, w_dep), np.where(affluent, _choice(rng, n, w_aff),
                                                   _choice(rng, n, base))
    )
    white_or_unknown = np.isin(eth, [0, 1, 2, 16, 17])
    interpreter = rng.random(n) < np.where(white_or_unknown, 0.012, 0.16)
    ld = rng.random(n) < 0.02
    bmi = np.round(np.clip(rng.normal(28.0 + 1.8 * deprived - 0.8 * affluent, 5.5), 16.0, 60.0), 1)
    # ASA: older and more deprived patients are sicker.
    asa_score = rng.normal(0, 1, n) + 0.025 * (age - 50) + 0.45 * deprived - 0.2 * affluent
    asa = np.digitize(asa_score, [-0.6, 0.9, 2.2, 3.3]) + 1
    nhs = _valid_nhs_numbers(rng, n)
    return pl.DataFrame(
        {
            "person_key": _ids("P", np.arange(1, n + 1), 7, "person_key"),
            "given_name": given,
            "family_name": family,
            "date_of_birth": _date_series("date_of_birth", dob),
            "sex": _pick("sex", ("1", "2", "X"), sex_idx),
            "postcode_idx": postcode,
            "decile": decile,
            "ethnic_category": _pick("ethnic_category", ETHNIC_CODES, eth),
            "learning_disability": ld,
            "interpreter_required": interpreter,
            "bmi": bmi,
            "asa": asa,
            "nhs_number": pl.Series(nhs).cast(pl.String),
        }
    )


# --------------------------------------------------------------------------------------------
# Pathways
# --------------------------------------------------------------------------------------------


_WL_CODES: Final[tuple[str, ...]] = ("IRTT", "ORTT", "INON", "ONON")
_PRIORITY_TYPE_CODES: Final[tuple[str, ...]] = ("1", "2", "3")
_CP_CODES: Final[tuple[str, ...]] = ("P2", "P3", "P4", "P5", "P6", "")
_STATUS_CODES: Final[tuple[str, ...]] = ("10", "20", "21", "90", "98")
#: Treatment functions are carried as indices into TRUST_TFS (strings only at the end: fast).
_IS_TF_POS: Final[np.ndarray] = np.array([TRUST_TFS.index(t) for t in IS_TFS])
_TRUST_NEXT: Final[np.ndarray] = (np.arange(len(TRUST_TFS)) + 1) % len(TRUST_TFS)
_IS_NEXT: Final[np.ndarray] = np.array(
    [_IS_TF_POS[(list(_IS_TF_POS).index(i) + 1) % len(_IS_TF_POS)] if i in _IS_TF_POS else i
     for i in range(len(TRUST_TFS))]
)
_PROC_FLAT: Final[tuple[str, ...]] = tuple(c for t in TRUST_TFS for c in PROCEDURES[t])
_PROC_LEN: Final[np.ndarray] = np.array([len(PROCEDURES[t]) for t in TRUST_TFS])
_PROC_OFF: Final[np.ndarray] = np.concatenate([[0], np.cumsum(_PROC_LEN)[:-1]])


def _draw_waits(rng: np.random.Generator, at_trust: np.ndarray, decile: np.ndarray,
                admitted: np.ndarray, cp: np.ndarray, ptype: np.ndarray) -> np.ndarray:
    """Days waited at creation: ~60% within 18 weeks, ~3% over 52, longer if deprived/at trusts.

    `cp` and `ptype` are indices into _CP_CODES and _PRIORITY_TYPE_CODES.
    """
    n = len(decile)
    dep_shift = np.array([0.0, 0.24, 0.19, 0.12, 0.06, 0.01, -0.02, -0.06, -0.10, -0.13, -0.16])
    mu = 4.78 + np.where(at_trust, 0.06, -0.22) + dep_shift[decile] + np.where(admitted, 0.12, -0.06)
    mu = mu + np.where((cp == 3) | (cp == 4), 0.3, 0.0)  # P5/P6: patient chose to wait
    d = np.exp(rng.normal(mu, 0.60))
    # Urgent work is seen quickly: P2 within ~4 weeks, urgent and two-week-wait referrals fast.
    d = np.where(cp == 0, rng.exponential(16, n), d)
    d = np.where(ptype == 1, rng.exponential(28, n), d)
    d = np.where(ptype == 2, rng.exponential(9, n), d)
    return np.clip(np.rint(d), 0, 1000).astype(np.int64)


def _pathway_columns(
    rng: np.random.Generator,
    *,
    tf: np.ndarray,  # indices into TRUST_TFS
    at_trust: np.ndarray,
    decile: np.ndarray,
    asa: np.ndarray,
    bmi: np.ndarray,
    created: np.ndarray,  # census (days) of the week the pathway first appears
    new_entry: np.ndarray,  # added after week 0: clock start within the last week
    force_rtt: np.ndarray,
) -> dict[str, pl.Series]:
    """Pathway-level fields, all relative to the census of the week the pathway appears."""
    n = len(tf)
    wl = _choice(rng, n, (0.35, 0.60, 0.025, 0.025))
    wl = np.where(force_rtt & (wl >= 2), wl - 2, wl)
    admitted = (wl == 0) | (wl == 2)
    rtt = wl < 2
    ptype = _choice(rng, n, (0.92, 0.06, 0.02))
    cp = np.where(admitted, _choice(rng, n, (0.10, 0.26, 0.52, 0.02, 0.02, 0.08)), 5)
    d = _draw_waits(rng, at_trust, decile, admitted, cp, ptype)
    d = np.where(new_entry, rng.integers(0, 7, n), d)
    start = created - d

    status = np.where(
        rtt,
        np.where((d <= 14) & (rng.random(n) < 0.7), 0, np.where(rng.random(n) < 0.02, 2, 1)),
        np.where(rng.random(n) < 0.5, 3, 4),
    )
    proc = _PROC_OFF[tf] + np.floor(rng.random(n) * _PROC_LEN[tf]).astype(np.int64)
    im = np.where(rng.random(n) < np.where(at_trust, 0.62, 0.82), 1, 0)  # 2 day case, 1 IP

    u = rng.random(n)
    dta = start + np.floor(u * (d + 1)).astype(np.int64)
    has_tci = admitted & (rng.random(n) < 0.15)
    tci = created + rng.integers(1, 43, n)
    has_lv = rng.random(n) < 0.85
    lv = created - np.floor(rng.random(n) * (np.minimum(d, 150) + 1)).astype(np.int64)
    has_att = rng.random(n) < np.where(admitted, 0.75, 0.55)
    att = start + np.floor(rng.random(n) * (d + 1)).astype(np.int64)
    # DNAs are markedly more common in deprived areas (the product must make this visible).
    has_dna = rng.random(n) < (0.03 + 0.009 * (10 - decile))
    dna = start + np.floor(rng.random(n) * (d + 1)).astype(np.int64)
    has_travel = rtt & (d > 280) & (rng.random(n) < 0.25)
    has_bmi = rng.random(n) < np.where(admitted, 0.85, 0.2)

    return {
        "rtt_start_date": _date_series("rtt_start_date", start),
        "rtt_status": _pick("rtt_status", _STATUS_CODES, status),
        "waiting_list_type": _pick("waiting_list_type", _WL_CODES, wl),
        "treatment_function_code": _pick("treatment_function_code", TRUST_TFS, tf),
        "priority_type": _pick("priority_type", _PRIORITY_TYPE_CODES, ptype),
        "clinical_priority": _pick("clinical_priority", _CP_CODES, cp, cp != 5),
        "procedure_code": _pick("procedure_code", _PROC_FLAT, proc, admitted),
        "intended_management": _pick("intended_management", ("1", "2"), im, admitted),
        "decision_to_admit_date": _date_series("decision_to_admit_date", dta, admitted),
        "tci_date": _date_series("tci_date", tci, has_tci),
        "asa_grade": _null_where_not(pl.Series("asa_grade", asa.astype(np.int64)), admitted),
        "bmi": _null_where_not(pl.Series("bmi", bmi.astype(np.float64)), has_bmi),
        "last_validated_date": _date_series("last_validated_date", lv, has_lv),
        "last_attended_date": _date_series("last_attended_date", att, has_att),
        "last_dna_date": _date_series("last_dna_date", dna, has_dna),
        "travel_willingness": _pick("travel_willingness", ("50", "100", "national"),
                                    rng.integers(0, 3, n), has_travel),
        "_rtt": pl.Series("_rtt", rtt),
    }


def _tf_draw(rng: np.random.Generator, at_trust: np.ndarray) -> np.ndarray:
    """Treatment function (index into TRUST_TFS) for the provider kind's case mix."""
    n = len(at_trust)
    trust_tf = _choice(rng, n, TRUST_TF_WEIGHTS)
    is_tf = _IS_TF_POS[_choice(rng, n, IS_TF_WEIGHTS)]
    return np.where(at_trust, trust_tf, is_tf)


def _tf_other(rng: np.random.Generator, at_trust: np.ndarray, avoid: np.ndarray) -> np.ndarray:
    """A treatment function different from `avoid`, valid for the provider kind."""
    tf = _tf_draw(rng, at_trust)
    # Shift clashing draws to the next function in the provider's list (never equal again).
    shifted = np.where(at_trust, _TRUST_NEXT[tf], _IS_NEXT[tf])
    return np.where(tf == avoid, shifted, tf)


# --------------------------------------------------------------------------------------------
# Corruption of second-provider identities
# --------------------------------------------------------------------------------------------


def _typo(rng: np.random.Generator, names: pl.Series) -> pl.Series:
    """One edit (substitute, delete or insert a letter) after the first character."""
    n = len(names)
    lens = names.str.len_chars().to_numpy().astype(np.int64)
    k = 1 + np.floor(rng.random(n) * np.maximum(lens - 1, 1)).astype(np.int64)
    k = np.minimum(k, np.maximum(lens - 1, 1))
    a = rng.integers(0, 26, n)
    alphabet = pl.Series(list("abcdefghijklmnopqrstuvwxyz"))
    df = pl.DataFrame(
        {
            "s": names,
            "k": k,
            "op": rng.integers(0, 3, n),
            "a": alphabet.gather(a),
            "b": alphabet.gather((a + 1) % 26),
        }
    )
    s, kk = pl.col("s"), pl.col("k")
    new = (
        pl.when(s.str.slice(kk, 1).str.to_lowercase() == pl.col("a"))
        .then(pl.col("b"))
        .otherwise(pl.col("a"))
    )
    out = df.select(
        pl.when(pl.col("op") == 0)
        .then(s.str.slice(0, kk) + new + s.str.slice(kk + 1))
        .when((pl.col("op") == 1) & (pl.col("s").str.len_chars() > 2))
        .then(s.str.slice(0, kk) + s.str.slice(kk + 1))
        .otherwise(s.str.slice(0, kk) + new + s.str.slice(kk))
    ).to_series()
    return out.alias(names.name)


def _corrupt(rng: np.random.Generator, ident: pl.DataFrame, eligible: np.ndarray, n_pc: int
             ) -> pl.DataFrame:
    """Plant realistic identity corruptions on eligible identities; records what changed."""
    n = ident.height
    u = rng.random(n)
    n_corr = np.where(eligible & (u < 0.40), 1, 0) + np.where(eligible & (u < 0.06), 1, 0)
    given = ident["given_name"]
    dob = ident["date_of_birth"]
    day = dob.dt.day().to_numpy()
    month = dob.dt.month().to_numpy()
    ok = np.ones((n, len(CORRUPTIONS)), dtype=bool)
    ok[:, 1] = given.is_in(list(NICKNAMES)).to_numpy()
    ok[:, 2] = (day <= 12) & (day != month)
    keys = np.where(ok, rng.random((n, len(CORRUPTIONS))), -1.0)
    first = keys.argmax(axis=1)
    keys2 = keys.copy()
    keys2[np.arange(n), first] = -1.0
    pc_first = first >= 3
    keys2[pc_first, 3] = -1.0  # postcode changed and missing are exclusive
    keys2[pc_first, 4] = -1.0
    second = keys2.argmax(axis=1)
    second_ok = keys2[np.arange(n), second] >= 0
    flags = np.zeros((n, len(CORRUPTIONS)), dtype=bool)
    flags[np.arange(n), first] = n_corr >= 1
    flags[np.arange(n), second] |= (n_corr >= 2) & second_ok

    typo = _typo(rng, ident["family_name"])
    nick = given.replace(NICKNAMES)
    b = pl.col("dob")
    small = b.dt.day() <= 12  # only then is the swapped date a real date
    swapped = pl.DataFrame({"dob": dob}).select(
        pl.date(
            b.dt.year(),
            pl.when(small).then(b.dt.day()).otherwise(b.dt.month()),
            pl.when(small).then(b.dt.month()).otherwise(b.dt.day()),
        )
    ).to_series()
    shift = 1 + rng.integers(0, max(n_pc - 1, 1), n)
    moved = (ident["postcode_idx"].to_numpy() + shift) % n_pc
    f = [pl.Series(flags[:, i]) for i in range(len(CORRUPTIONS))]
    corruption = pl.select(
        pl.concat_str(
            [pl.when(f[i]).then(pl.lit(c)) for i, c in enumerate(CORRUPTIONS)],
            separator=";",
            ignore_nulls=True,
        )
    ).to_series()
    return ident.with_columns(
        family_name=pl.when(f[0]).then(typo).otherwise(pl.col("family_name")),
        given_name=pl.when(f[1]).then(nick).otherwise(pl.col("given_name")),
        date_of_birth=pl.when(f[2]).then(swapped).otherwise(pl.col("date_of_birth")),
        postcode_idx=pl.when(f[3]).then(pl.Series(moved)).when(f[4]).then(None)
        .otherwise(pl.col("postcode_idx")),
        # Null (a blank CSV cell, not "") when nothing was changed.
        corruption=pl.when(corruption != "").then(corruption),
    )


# --------------------------------------------------------------------------------------------
# The plan: identities and pathways across all weeks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    identities: pl.DataFrame
    pathways: pl.DataFrame  # typed canonical fields + internal _columns
    duplicates: pl.DataFrame


def _plan_system(rng: np.random.Generator, persons: pl.DataFrame, providers: list[dict[str, Any]],
                 geo: _Geo, censuses: list[dt.date]) -> _Plan:
    n = persons.height
    weeks = len(censuses)
    n_prov = len(providers)
    is_ind = np.array([p["kind"] == "independent" for p in providers])
    asa = persons["asa"].to_numpy()
    bmi = persons["bmi"].to_numpy()
    complex_ = (asa >= 3) | (bmi >= 40) | persons["interpreter_required"].to_numpy() | \
        persons["learning_disability"].to_numpy()

    # Persons joining in later weeks (new referrals) come from a reserve of the `n` persons.
    growth = 1.13 * _WEEKLY_TURNOVER * (weeks - 1)
    reserve = min(n - int(round(n / (1.0 + growth))), int(0.4 * n)) if weeks > 1 else 0
    active = n - reserve
    w_in_person = np.zeros(n, dtype=np.int64)
    if reserve:
        w_in_person[active:] = 1 + rng.permutation(np.arange(reserve) % (weeks - 1))

    # Home provider: trusts bigger than IS; IS providers select low-complexity patients.
    base = np.array([(1.0 - 0.12 * (i % 3)) if not is_ind[i] else 0.65 for i in range(n_prov)])
    w = np.tile(base, (n, 1))
    w[:, is_ind] *= np.where(complex_, 0.12, 1.0)[:, None]
    p1 = _weighted_rows(rng, w)

    role_u = rng.random(n)
    can_multi = n_prov >= 2
    multi = (role_u < 0.10) & (np.arange(n) < active) & can_multi
    same2 = (role_u >= 0.10) & (role_u < 0.13) & (np.arange(n) < active)
    w2 = w.copy()
    w2[np.arange(n), p1] = 0.0
    if is_ind.any() and (~is_ind).any():
        # IS providers draw from trusts' patients; IS patients also appear on a trust list.
        w2[:, is_ind] *= np.where(is_ind[p1], 0.0, 5.0)[:, None]
    multi &= w2.sum(axis=1) > 0
    w2[~multi] = 1.0
    p2 = _weighted_rows(rng, w2)

    multi_idx = np.flatnonzero(multi)
    n_dup = 0 if len(multi_idx) < 2 else max(2, int(round(0.025 * len(multi_idx))))
    dup_person = np.zeros(n, dtype=bool)
    dup_person[rng.choice(multi_idx, n_dup, replace=False) if n_dup else []] = True

    at_trust1 = ~is_ind[p1]
    at_trust2 = ~is_ind[p2]
    tf1 = _tf_draw(rng, at_trust1)
    # Duplicates: the function must exist at both providers, so use the IS list if either is IS.
    tf1 = np.where(dup_person, _tf_draw(rng, at_trust1 & at_trust2), tf1)
    tf2_multi = np.where(dup_person, tf1, _tf_other(rng, at_trust2, tf1))
    tf2_same = _tf_other(rng, at_trust1, tf1)

    # Identities: one per (person, provider).
    primary_person = np.arange(n)
    secondary_person = multi_idx
    id_person = np.concatenate([primary_person, secondary_person])
    id_prov = np.concatenate([p1, p2[multi_idx]])
    id_secondary = np.concatenate([np.zeros(n, bool), np.ones(len(multi_idx), bool)])
    n_id = len(id_person)
    blank_p = np.where(is_ind[id_prov], 0.45, 0.13)
    blank = (rng.random(n_id) < blank_p) & ~dup_person[id_person]
    ident = persons.gather(id_person).select(
        "person_key", "given_name", "family_name", "date_of_birth", "sex", "postcode_idx",
        "decile", "ethnic_category", "learning_disability", "interpreter_required", "nhs_number",
    ).with_columns(
        pl.Series("_ident", np.arange(n_id)),
        pl.Series("_prov", id_prov),
        pl.Series("_person", id_person),
        pl.Series("_w_in", w_in_person[id_person]),
        pl.Series("nhs_number_usable", ~blank),
    )
    ident = _corrupt(rng, ident, id_secondary & blank, geo.postcodes.height)
    local_num = np.zeros(n_id, dtype=np.int64)
    for p in range(n_prov):
        sel = np.flatnonzero(id_prov == p)
        local_num[sel] = 1_000_000 + rng.choice(9_000_000, size=len(sel), replace=False)
    prov_codes = pl.Series([p["provider_code"] for p in providers])
    status_ok = np.array(["01", "02"])[_choice(rng, n_id, (0.95, 0.05))]
    status_blank = np.array(["03", "04", "07", ""])[_choice(rng, n_id, (0.3, 0.2, 0.3, 0.2))]
    status = np.where(blank, status_blank, status_ok)
    pc_idx = ident["postcode_idx"]
    ident = ident.with_columns(
        local_patient_id=_ids(prov_codes.gather(id_prov), local_num, 7, "local_patient_id"),
        nhs_number=pl.when(pl.Series(blank)).then(None).otherwise(pl.col("nhs_number")),
        nhs_number_status=_null_where_not(pl.Series(status, dtype=pl.String), status != ""),
        postcode=geo.postcodes["pcds"].gather(pc_idx.fill_null(0)).zip_with(
            pc_idx.is_not_null(), pl.Series([None], dtype=pl.String)),
        lsoa11=geo.lsoa["lsoa11"].gather(
            geo.postcodes["lsoa_idx"].gather(pc_idx.fill_null(0))).zip_with(
            pc_idx.is_not_null(), pl.Series([None], dtype=pl.String)),
    )
    ident_of_primary = np.arange(n)
    ident_of_secondary = n + np.arange(len(multi_idx))

    # Pathways: every person's first; a second at another provider (multi) or the same (same2).
    same2_idx = np.flatnonzero(same2)
    pw_ident = np.concatenate([ident_of_primary, ident_of_secondary, ident_of_primary[same2_idx]])
    pw_person = id_person[pw_ident]
    pw_tf = np.concatenate([tf1, tf2_multi[multi_idx], tf2_same[same2_idx]])
    pw_dup = dup_person[pw_person]
    pw_w_in = w_in_person[pw_person]
    m = len(pw_ident)
    # Shuffle so pathway ids are not ordered by patient role (ids are issued in this order).
    order = rng.permutation(m)
    order = order[np.argsort(pw_w_in[order], kind="stable")]
    pw_ident, pw_person, pw_tf, pw_dup, pw_w_in = (
        a[order] for a in (pw_ident, pw_person, pw_tf, pw_dup, pw_w_in)
    )
    pw_prov = id_prov[pw_ident]
    at_trust = ~is_ind[pw_prov]
    leave_after = rng.geometric(_WEEKLY_TURNOVER, m)
    pw_w_out = np.where(pw_dup, weeks, np.minimum(weeks, pw_w_in + leave_after))
    census_days = np.array([_days(c) for c in censuses], dtype=np.int64)
    cols = _pathway_columns(
        rng,
        tf=pw_tf,
        at_trust=at_trust,
        decile=persons["decile"].to_numpy()[pw_person],
        asa=asa[pw_person],
        bmi=bmi[pw_person],
        created=census_days[pw_w_in],
        new_entry=pw_w_in > 0,
        force_rtt=pw_dup,
    )
    n_sites = np.array([len(p["sites"]) for p in providers])
    site_offset = np.concatenate([[0], np.cumsum(n_sites)[:-1]])
    site_codes = pl.Series([s["site_code"] for p in providers for s in p["sites"]])
    site = site_offset[pw_prov] + np.floor(rng.random(m) * n_sites[pw_prov]).astype(np.int64)
    pw_prov_code = prov_codes.gather(pw_prov)
    id_base = rng.integers(10_000_000, 90_000_000, n_prov)
    idf = ident.gather(pw_ident)
    pathways = pl.DataFrame(
        {
            "provider_code": pw_prov_code,
            "site_code": site_codes.gather(site),
            "pathway_id": _ids(pw_prov_code, id_base[pw_prov] * 10 + np.arange(m), 10,
                               "pathway_id"),
            "pathway_id_issuer": pw_prov_code,
            "referral_id": _ids("RF", 7_000_000_000 + np.arange(m) * 7, 10, "referral_id"),
            "local_patient_id": idf["local_patient_id"],
            "nhs_number": idf["nhs_number"],
            "nhs_number_status": idf["nhs_number_status"],
            "family_name": idf["family_name"],
            "given_name": idf["given_name"],
            "date_of_birth": idf["date_of_birth"],
            "sex": idf["sex"],
            "postcode": idf["postcode"],
            "lsoa11": idf["lsoa11"],
            "ethnic_category": idf["ethnic_category"],
            **{k: v for k, v in cols.items()},
            "learning_disability": idf["learning_disability"],
            "interpreter_required": idf["interpreter_required"],
            "_ident": pw_ident,
            "_prov": pw_prov,
            "_w_in": pw_w_in,
            "_w_out": pw_w_out,
            "_dup": pw_dup,
            "_nhs_blank": ~idf["nhs_number_usable"].to_numpy(),
            "_person_key": idf["person_key"],
        }
    )
    dups = (
        pathways.filter(pl.col("_dup"))
        .sort("_person_key", "_prov")
        .group_by("_person_key", maintain_order=True)
        .agg(
            pl.col("treatment_function_code").first(),
            pl.col("provider_code").first().alias("provider_code_1"),
            pl.col("pathway_id").first().alias("pathway_id_1"),
            pl.col("rtt_start_date").first().alias("rtt_start_date_1"),
            pl.col("provider_code").last().alias("provider_code_2"),
            pl.col("pathway_id").last().alias("pathway_id_2"),
            pl.col("rtt_start_date").last().alias("rtt_start_date_2"),
        )
        .rename({"_person_key": "person_key"})
    )
    return _Plan(identities=ident, pathways=pathways, duplicates=dups)


# --------------------------------------------------------------------------------------------
# Planted defects
# --------------------------------------------------------------------------------------------


class _BadDate:
    """Marker for an unparseable date; rendered per dialect date format."""


_BAD_DATE: Final[_BadDate] = _BadDate()


@dataclass
class _Plant:
    kind: str  # truth kind, or "normalised"
    column: str  # canonical column
    rows: np.ndarray  # 0-based rows written
    values: list[Any]  # per row: None, dt.date, int, str or _BAD_DATE
    outcome: str  # "rejected" | "warning" | "normalised"
    report_rows: np.ndarray | None = None  # rows reported (default: rows)


def _plan_defects(rng: np.random.Generator, frame: pl.DataFrame, census: dt.date,
                  typed_dates: bool, sent: frozenset[str]) -> list[_Plant]:
    """Choose victim rows (disjoint, one problem each) for every defect kind, in the columns
    the file has (`sent`): a dialect without dates of birth cannot carry a bad one."""
    rows = frame.height
    if rows < 60:
        return []
    n = 1 if rows < 200 else int(np.clip(rows // 500, 2, 6))
    avail = ~frame["_dup"].to_numpy()
    rtt = frame["_rtt"].to_numpy()
    wl = frame["waiting_list_type"].to_numpy()
    nhs_blank = frame["_nhs_blank"].to_numpy()
    plants: list[_Plant] = []

    def take(k: int, mask: np.ndarray | None = None) -> np.ndarray:
        cand = np.flatnonzero(avail if mask is None else (avail & mask))
        k = min(k, len(cand))
        chosen = np.sort(rng.choice(cand, k, replace=False)) if k else np.zeros(0, np.int64)
        avail[chosen] = False
        return chosen

    def cycle(options: Sequence[Any], k: int) -> list[Any]:
        off = int(rng.integers(0, len(options)))
        return [options[(off + i) % len(options)] for i in range(k)]

    def future(k: int, hi: int) -> list[dt.date]:
        return [census + dt.timedelta(days=int(x)) for x in rng.integers(1, hi, k)]

    def add(kind: str, outcome: str, col_vals: list[tuple[str, Any]], mask: np.ndarray | None = None
            ) -> None:
        col_vals = [(col, val) for col, val in col_vals if col in sent]
        if not col_vals:
            return
        chosen = take(len(col_vals), mask)
        by_col: dict[str, tuple[list[int], list[Any]]] = {}
        for r, (col, val) in zip(chosen.tolist(), col_vals, strict=False):
            by_col.setdefault(col, ([], []))
            by_col[col][0].append(r)
            by_col[col][1].append(val)
        for col, (rs, vals) in by_col.items():
            plants.append(_Plant(kind, col, np.asarray(rs, dtype=np.int64), vals, outcome))

    # Rejected. Blank pathway ids at most once per file (two blanks could also read as a
    # duplicate key, which would make the truth ambiguous).
    missing = ["pathway_id"] + cycle(
        ["local_patient_id", "waiting_list_type", "treatment_function_code"], max(n - 1, 0))
    add("missing_value", "rejected", [(c, None) for c in missing[: max(n, 1)]])
    # A date of birth is a demographic: not a date, or after the census, it is blanked with a
    # warning (the waiting patient stays listed); the pathway's own dates reject the row.
    if not typed_dates:
        bad_cols = cycle(["date_of_birth", "decision_to_admit_date", "last_validated_date",
                          "tci_date"], max(n, 2))
        add("bad_date", "rejected", [(c, _BAD_DATE) for c in bad_cols if c != "date_of_birth"])
        add("bad_date", "warning", [(c, _BAD_DATE) for c in bad_cols if c == "date_of_birth"])
    dac_cols = cycle(["date_of_birth", "decision_to_admit_date", "last_validated_date",
                      "last_attended_date", "last_dna_date"], max(n, 2))
    after = list(zip(dac_cols, future(len(dac_cols), 90), strict=True))
    add("date_after_census", "rejected", [(c, d) for c, d in after if c != "date_of_birth"])
    add("date_after_census", "warning", [(c, d) for c, d in after if c == "date_of_birth"])
    add("clock_start_after_census", "rejected",
        [("rtt_start_date", d) for d in future(n, 60)], rtt)
    bad_codes: list[tuple[str, Any]] = [
        ("treatment_function_code", "999"), ("waiting_list_type", "XXXX"), ("rtt_status", "77"),
        ("clinical_priority", "P9"), ("asa_grade", 7), ("priority_type", "8"),
    ]
    add("bad_code", "rejected", cycle(bad_codes, max(n, 3)))
    stops = [str(s) for s in sorted(codes.RTT_CLOCK_STOP_STATUSES)]
    add("clock_stop_on_open_pathway", "rejected", [("rtt_status", s) for s in cycle(stops, n)], rtt)
    pairs = max(1, n // 2)
    chosen = take(2 * pairs)
    if len(chosen) >= 2:
        chosen = chosen[: len(chosen) // 2 * 2]
        perm = rng.permutation(len(chosen))
        src, dst = chosen[perm[: len(chosen) // 2]], chosen[perm[len(chosen) // 2:]]
        ids = frame["pathway_id"].gather(src).to_list()
        plants.append(_Plant("duplicate_pathway_key", "pathway_id", dst, ids, "rejected",
                             report_rows=np.sort(np.concatenate([src, dst]))))
    # Warnings (row loads, value blanked). Invalid NHS numbers only where the identity has no
    # number anyway, so the identity truth (nhs_number_usable) holds in every week.
    add("invalid_nhs_number", "warning",
        [("nhs_number", v) for v in _invalid_nhs_numbers(rng, n)], nhs_blank)
    add("bad_code_blanked", "warning", cycle([("ethnic_category", "W9"), ("sex", "7")], max(n, 2)))
    add("unknown_clock_start", "warning", [("rtt_start_date", None)] * n, rtt)
    # Normalised silently: local waiting-list spellings the loader must accept.
    add("normalised", "normalised", [("waiting_list_type", "PTL0")] * n, wl == "ORTT")
    add("normalised", "normalised", cycle([("waiting_list_type", "PLTI"),
                                           ("waiting_list_type", "ptli")], max(n, 2)), wl == "IRTT")
    return plants


# --------------------------------------------------------------------------------------------
# Rendering a canonical frame in a dialect
# --------------------------------------------------------------------------------------------


def _bad_date_text(fmt: str, i: int, year: int) -> str:
    """An unparseable date for the format: an impossible calendar date or free text."""
    if i % 2 == 1:
        return "not known"
    if fmt == "%d/%m/%Y":
        return f"31/02/{year}"
    if fmt == "%Y-%m-%d":
        return f"{year}-02-30"
    return "not known"


def _render(frame: pl.DataFrame, dialect: Dialect, plants: list[_Plant], census: dt.date
            ) -> pl.DataFrame:
    """The file's rows in the dialect's headers and value conventions, defects applied."""
    typed = dialect.file_format == "parquet"
    cols = [c for c in FIELD_NAMES if c in dialect.columns]
    out = frame.select(cols)
    if not typed:
        exprs: list[pl.Expr] = []
        for c in cols:
            e = pl.col(c)
            if c in DATE_FIELDS:
                e = e.dt.strftime(dialect.date_format)
            elif c in ("learning_disability", "interpreter_required"):
                e = pl.when(e).then(pl.lit("Y")).when(e.not_()).then(pl.lit("N"))
            elif c == "asa_grade" and not dialect.numeric_cells:
                e = e.cast(pl.String)
            elif c == "bmi" and not dialect.numeric_cells:
                e = e.round(1).cast(pl.String)
            elif c == "nhs_number" and dialect.spaced_nhs_number:
                e = e.str.slice(0, 3) + " " + e.str.slice(3, 3) + " " + e.str.slice(6)
            if c in dialect.values:
                e = e.replace(dialect.values[c])
            exprs.append(e.alias(c))
        out = out.select(exprs)
    for j, plant in enumerate(plants):
        col = out[plant.column]
        vals: list[Any] = []
        for i, v in enumerate(plant.values):
            if isinstance(v, _BadDate):
                vals.append(_bad_date_text(dialect.date_format, i + j, census.year))
            elif isinstance(v, dt.date) and not typed:
                vals.append(v.strftime(dialect.date_format))
            elif isinstance(v, int) and col.dtype == pl.String:
                vals.append(str(v))
            else:
                vals.append(v)
        new = pl.Series(vals, dtype=col.dtype)
        out = out.with_columns(col.scatter(plant.rows, new))
    return out.rename({c: dialect.columns[c] for c in cols})


def _write_frame(df: pl.DataFrame, path: Path, dialect: Dialect, census: dt.date) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if dialect.file_format == "parquet":
        df.write_parquet(path)
    elif dialect.file_format == "xlsx":
        from xlsxwriter import Workbook

        # xlsxwriter stamps the time of writing into the file; the census date instead makes
        # the same seed give the same bytes (and `ptl demo` run twice loads nothing new).
        workbook = Workbook(str(path))
        workbook.set_properties({"created": dt.datetime.combine(census, dt.time())})
        df.write_excel(workbook, worksheet="PTL", autofit=False)
        workbook.close()
    elif dialect.encoding == "utf-8":
        df.write_csv(path, separator=dialect.delimiter, include_bom=dialect.bom)
    else:
        text = df.write_csv(separator=dialect.delimiter)
        path.write_bytes(text.encode(dialect.encoding))


def _profile_toml(dialect: Dialect, provider_code: str) -> str:
    lines = [f"name = {_toml_str(f'{provider_code.lower()}-{dialect.name}')}",
             f"date_format = {_toml_str(dialect.date_format)}"]
    if dialect.file_format == "csv":
        lines.append(f"delimiter = {_toml_str(dialect.delimiter)}")
        lines.append(f"encoding = {_toml_str(dialect.encoding)}")
    if dialect.file_format == "xlsx":
        lines.append('sheet = "PTL"')
    lines += ["", "[columns]"]
    lines += [f"{c} = {_toml_str(h)}" for c, h in dialect.columns.items()]
    for fname, mapping in dialect.values.items():
        lines += ["", f"[values.{fname}]"]
        lines += [f"{_toml_str(src)} = {_toml_str(canon)}" for canon, src in mapping.items()]
    if "provider_code" not in dialect.columns:
        lines += ["", "[defaults]", f"provider_code = {_toml_str(provider_code)}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def generate_system(
    out_dir: Path,
    *,
    trusts: int = 3,
    independents: int = 2,
    patients: int = 20_000,
    weeks: int = 1,
    census_date: dt.date | None = None,
    seed: int = 42,
    imd_path: Path | None = None,
    bad_rows: bool = True,
) -> SynthSystem:
    """Write a synthetic ICB (extracts, profiles, reference data) and its ground truth."""
    if trusts < 0 or independents < 0 or trusts + independents < 1:
        raise ValueError("need at least one provider")
    if trusts > 260 or independents > 260:
        raise ValueError("at most 260 providers of each kind")
    if patients < 1:
        raise ValueError("patients must be positive")
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    census = census_date or last_sunday()
    if census.weekday() != 6:
        raise ValueError(f"census date {census} is not a Sunday")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    censuses = [census - dt.timedelta(days=7 * (weeks - 1 - w)) for w in range(weeks)]

    geo = _make_geo(np.random.default_rng([seed, 1]), Path(imd_path) if imd_path else None)
    providers = _make_providers(np.random.default_rng([seed, 2]), trusts, independents, geo)
    persons = _make_persons(np.random.default_rng([seed, 3]), patients, geo, censuses[0])
    plan = _plan_system(np.random.default_rng([seed, 4]), persons, providers, geo, censuses)
    _write_refdata(out_dir, geo, providers)

    profiles_dir = out_dir / "profiles"
    profile_of: dict[str, str] = {}
    for p in providers:
        d = _DIALECT_BY_NAME[p["dialect"]]
        if d.builtin_profile:
            profile_of[p["provider_code"]] = d.builtin_profile
        else:
            profiles_dir.mkdir(parents=True, exist_ok=True)
            path = profiles_dir / f"{p['provider_code']}.toml"
            path.write_text(_profile_toml(d, p["provider_code"]), encoding="utf-8")
            profile_of[p["provider_code"]] = str(path)

    feeds: list[SynthFeed] = []
    rejections: list[pl.DataFrame] = []
    warnings: list[pl.DataFrame] = []
    normalised: list[pl.DataFrame] = []
    loaded_idents: list[np.ndarray] = []
    pw = plan.pathways
    for w, census_w in enumerate(censuses):
        week = pw.filter((pl.col("_w_in") <= w) & (pl.col("_w_out") > w)).with_columns(
            census_date=pl.lit(census_w, dtype=pl.Date)
        )
        for pi, p in enumerate(providers):
            code = p["provider_code"]
            d = _DIALECT_BY_NAME[p["dialect"]]
            frame = week.filter(pl.col("_prov") == pi)
            rel = Path("feeds") / code / f"{code}_{census_w.isoformat()}.{_EXT[d.file_format]}"
            rng = np.random.default_rng([seed, 100, w, pi])
            plants = (_plan_defects(rng, frame, census_w, d.file_format == "parquet",
                                    frozenset(d.columns)) if bad_rows else [])
            _write_frame(_render(frame, d, plants, census_w), out_dir / rel, d, census_w)
            offset = 1 if d.file_format == "parquet" else 2
            rejected_rows: set[int] = set()
            for plant in plants:
                rows = plant.report_rows if plant.report_rows is not None else plant.rows
                truth = pl.DataFrame(
                    {
                        "file": rel.as_posix(), "provider_code": code,
                        "census_date": census_w.isoformat(),
                        "row": rows + offset, "column": plant.column, "kind": plant.kind,
                    },
                    schema=_TRUTH_ROW_SCHEMA,
                )
                if plant.outcome == "rejected":
                    rejections.append(truth)
                    rejected_rows.update(rows.tolist())
                elif plant.outcome == "warning":
                    warnings.append(truth)
                else:
                    normalised.append(truth.with_columns(
                        value=pl.Series([str(v) for v in plant.values], dtype=pl.String)))
            keep = np.ones(frame.height, dtype=bool)
            keep[list(rejected_rows)] = False
            loaded_idents.append(frame["_ident"].to_numpy()[keep])
            feeds.append(
                SynthFeed(
                    provider_code=code,
                    census_date=census_w,
                    path=out_dir / rel,
                    profile=profile_of[code],
                    file_format=d.file_format,
                    rows=frame.height,
                    expected_loaded=frame.height - len(rejected_rows),
                    expected_rejected=len(rejected_rows),
                )
            )

    truth_dir = out_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    empty = pl.DataFrame(schema=_TRUTH_ROW_SCHEMA)
    order = ["census_date", "provider_code", "row"]
    pl.concat([empty, *rejections]).sort(order).write_csv(truth_dir / "rejections.csv")
    pl.concat([empty, *warnings]).sort(order).write_csv(truth_dir / "warnings.csv")
    pl.concat([empty.with_columns(value=pl.lit(None, pl.String)), *normalised]).sort(
        order).write_csv(truth_dir / "normalised.csv")
    loaded = np.zeros(plan.identities.height, dtype=bool)
    if loaded_idents:
        loaded[np.concatenate(loaded_idents)] = True
    written = np.zeros(plan.identities.height, dtype=bool)
    written[pw["_ident"].to_numpy()] = True
    prov_codes = pl.Series([p["provider_code"] for p in providers])
    (
        plan.identities.with_columns(
            provider_code=prov_codes.gather(plan.identities["_prov"]),
            loaded=pl.Series(loaded),
        )
        .filter(pl.Series(written))
        .select("provider_code", "local_patient_id", "person_key", "nhs_number_usable",
                "corruption", "loaded")
        .sort("provider_code", "local_patient_id")
        .write_csv(truth_dir / "identities.csv")
    )
    plan.duplicates.write_csv(truth_dir / "duplicate_pathways.csv")
    (
        persons.with_columns(
            postcode=geo.postcodes["pcds"].gather(persons["postcode_idx"]),
            lsoa11=geo.lsoa["lsoa11"].gather(geo.postcodes["lsoa_idx"].gather(
                persons["postcode_idx"])),
        )
        .select("person_key", "nhs_number", "given_name", "family_name", "date_of_birth",
                "sex", "postcode", "lsoa11", "decile", "ethnic_category")
        .rename({"decile": "imd_decile"})
        .write_csv(truth_dir / "persons.csv")
    )
    feeds.sort(key=lambda f: (f.census_date, f.provider_code))
    manifest = {
        "seed": seed,
        "parameters": {
            "trusts": trusts, "independents": independents, "patients": patients,
            "weeks": weeks, "census_date": census.isoformat(),
            "imd_path": str(imd_path) if imd_path else None, "bad_rows": bad_rows,
        },
        "providers": providers,
        "feeds": [
            {
                "provider_code": f.provider_code,
                "census_date": f.census_date.isoformat(),
                "path": f.path.relative_to(out_dir).as_posix(),
                "profile": (Path(f.profile).relative_to(out_dir).as_posix()
                            if f.profile.endswith(".toml") else f.profile),
                "file_format": f.file_format,
                "rows": f.rows,
                "expected_loaded": f.expected_loaded,
                "expected_rejected": f.expected_rejected,
            }
            for f in feeds
        ],
    }
    (truth_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False),
                                             encoding="utf-8")
    return SynthSystem(out_dir=out_dir, feeds=feeds, providers=providers, truth_dir=truth_dir)


def write_canonical_extract(
    path: Path,
    *,
    rows: int,
    census_date: dt.date,
    provider_code: str = "RXX",
    seed: int = 1,
    file_format: str = "csv",
) -> Path:
    """One clean extract with the canonical field names (benchmarks): every row is valid."""
    if file_format not in _EXT:
        raise ValueError(f"unknown file format {file_format!r}")
    if rows < 0:
        raise ValueError("rows must be >= 0")
    path = Path(path)
    rng = np.random.default_rng([seed, 9])
    geo = _make_geo(np.random.default_rng([seed, 1]), None)
    # ~3% of patients have a second pathway at a different treatment function.
    n_second = int(rows * 0.03)
    n_persons = rows - n_second
    persons = _make_persons(np.random.default_rng([seed, 3]), max(n_persons, 0), geo, census_date)
    second_of = rng.choice(max(n_persons, 1), n_second, replace=False) if n_persons else \
        np.zeros(0, np.int64)
    person = np.concatenate([np.arange(n_persons), second_of]).astype(np.int64)
    at_trust = np.ones(rows, dtype=bool)
    tf_first = _tf_draw(rng, at_trust[:n_persons])
    tf = np.concatenate([tf_first, _tf_other(rng, at_trust[n_persons:], tf_first[second_of])])
    blank = rng.random(n_persons) < 0.08
    local_num = 1_000_000 + rng.choice(9_000_000, size=n_persons, replace=False)
    census_day = _days(census_date)
    cols = _pathway_columns(
        rng,
        tf=tf,
        at_trust=at_trust,
        decile=persons["decile"].to_numpy()[person],
        asa=persons["asa"].to_numpy()[person],
        bmi=persons["bmi"].to_numpy()[person],
        created=np.full(rows, census_day, dtype=np.int64),
        new_entry=np.zeros(rows, dtype=bool),
        force_rtt=np.zeros(rows, dtype=bool),
    )
    pp = persons.gather(person)
    pc_idx = pp["postcode_idx"]
    sites = pl.Series([f"{provider_code}{k:02d}" for k in (1, 2, 3)])
    nhs = _null_where_not(pp["nhs_number"], ~blank[person])
    status = pl.select(pl.when(nhs.is_null()).then(pl.lit("07")).otherwise(pl.lit("01")))
    frame = pl.DataFrame(
        {
            "provider_code": pl.repeat(provider_code, rows, dtype=pl.String, eager=True),
            "site_code": sites.gather(rng.integers(0, 3, rows)),
            "census_date": pl.repeat(census_date, rows, dtype=pl.Date, eager=True),
            "pathway_id": _ids(provider_code, 1_000_000_000 + np.arange(rows), 10, "pathway_id"),
            "pathway_id_issuer": pl.repeat(provider_code, rows, dtype=pl.String, eager=True),
            "referral_id": _ids("RF", 5_000_000_000 + np.arange(rows), 10, "referral_id"),
            "local_patient_id": _ids(provider_code, local_num[person], 7, "local_patient_id"),
            "nhs_number": nhs,
            "nhs_number_status": status.to_series(),
            "family_name": pp["family_name"],
            "given_name": pp["given_name"],
            "date_of_birth": pp["date_of_birth"],
            "sex": pp["sex"],
            "postcode": geo.postcodes["pcds"].gather(pc_idx),
            "lsoa11": geo.lsoa["lsoa11"].gather(geo.postcodes["lsoa_idx"].gather(pc_idx)),
            "ethnic_category": pp["ethnic_category"],
            **{k: v for k, v in cols.items() if not k.startswith("_")},
            "learning_disability": pp["learning_disability"],
            "interpreter_required": pp["interpreter_required"],
        }
    ).select(FIELD_NAMES)
    dialect = Dialect("canonical", file_format, _CANONICAL_COLUMNS, builtin_profile="canonical",
                      numeric_cells=file_format == "xlsx")
    _write_frame(_render(frame, dialect, [], census_date), path, dialect, census_date)
    return path.resolve()


# --------------------------------------------------------------------------------------------
# Source identities only (linkage quality tests and benchmarks: 100k-1M records in seconds,
# without writing or ingesting extracts)
# --------------------------------------------------------------------------------------------

#: A Sunday: the census synthetic identities are drawn at.
IDENTITY_CENSUS: Final[dt.date] = dt.date(2025, 6, 1)


def synthetic_identities(patients: int, *, trusts: int = 3, independents: int = 2, seed: int = 7,
                         without_nhs_share: float | None = None) -> pl.DataFrame:
    """Source identities of `patients` synthetic people across the providers (ids from 1).

    `without_nhs_share`: blank further NHS numbers (chosen at random, status set to
    "trace required") until at least this share of records has no usable number.
    """
    geo = _make_geo(np.random.default_rng([seed, 1]), None)
    providers = _make_providers(np.random.default_rng([seed, 2]), trusts, independents, geo)
    persons = _make_persons(np.random.default_rng([seed, 3]), patients, geo, IDENTITY_CENSUS)
    plan = _plan_system(np.random.default_rng([seed, 4]), persons, providers, geo, [IDENTITY_CENSUS])
    codes = pl.Series([p["provider_code"] for p in providers])
    frame = plan.identities.with_columns(provider_code=codes.gather(plan.identities["_prov"]))
    # A usable number with status 02 (not traced) is linked probabilistically, not on the number.
    usable = pl.col("nhs_number_usable") & (pl.col("nhs_number_status").fill_null("") != "02")
    frame = frame.with_columns(usable.alias("nhs_number_usable"))
    if without_nhs_share is not None:
        rng = np.random.default_rng([seed, 5])
        lacking = frame.height - int(frame["nhs_number_usable"].sum())
        wanted = int(np.ceil(without_nhs_share * frame.height)) - lacking
        if wanted > 0:
            candidates = np.flatnonzero(frame["nhs_number_usable"].to_numpy())
            blank = np.zeros(frame.height, dtype=bool)
            blank[rng.choice(candidates, size=min(wanted, len(candidates)), replace=False)] = True
            mask = pl.Series(blank)
            frame = frame.with_columns(
                nhs_number=pl.when(mask).then(None).otherwise(pl.col("nhs_number")),
                nhs_number_status=pl.when(mask).then(pl.lit("03")).otherwise(pl.col("nhs_number_status")),
                nhs_number_usable=pl.col("nhs_number_usable") & ~mask,
            )
    return frame.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("id"),
        "provider_code", "local_patient_id", "nhs_number", "nhs_number_status", "family_name",
        "given_name", "date_of_birth", "sex", "postcode", "person_key", "nhs_number_usable",
        pl.col("corruption").fill_null(""),
    )


def source_identity_rows(identities: pl.DataFrame, *, first_feed_id: int = 0,
                         census_date: dt.date = IDENTITY_CENSUS) -> pl.DataFrame:
    """The `source_identity` table rows of synthetic identities (truth columns dropped)."""
    return identities.select(
        "id", "provider_code", "local_patient_id", "nhs_number", "nhs_number_status", "family_name",
        "given_name", "date_of_birth", "sex", "postcode",
        pl.lit(first_feed_id, dtype=pl.Int64).alias("first_feed_id"),
        pl.lit(census_date, dtype=pl.Date).alias("values_census_date"),
    )
