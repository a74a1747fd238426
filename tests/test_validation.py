"""Every validation rule: a bad row, the exact reason, and what happens to the row."""

from __future__ import annotations

import csv
import datetime as dt
import json
import tempfile
from pathlib import Path
from random import Random

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nhs_number import is_valid

from ingest.errors import FeedRefused
from ingest.profiles import load_profile
from ingest.read import read_extract
from ingest.validate import (
    RAW_CELL_CHARS,
    ROW,
    FileWarning,
    Validated,
    census_warnings,
    map_columns,
    nhs_number_valid_expr,
    validate,
)
from ptl.fields import FIELDS, FIELDS_BY_NAME, REQUIRED_COLUMNS, Field
from ptl.store.models import Pathway, SourceIdentity
from tests.extract_rows import CENSUS, good_row, good_rows, write_csv

CANONICAL = load_profile("canonical")


def check(tmp_path: Path, rows: list[dict[str, str]], **declared: object) -> Validated:
    path = write_csv(tmp_path / "extract.csv", rows)
    extract = read_extract(path, CANONICAL)
    mapped = map_columns(extract.frame, CANONICAL, filename=path.name,
                         provider_code=str(declared.get("provider_code", "RXX")),
                         census_date=declared.get("census_date"))  # type: ignore[arg-type]
    return validate(mapped, CANONICAL, extract.row_offset, extract.frame)


def only_issue(result: Validated) -> dict[str, object]:
    issues = result.issues.to_dicts()
    assert len(issues) == 1, issues
    return issues[0]


REJECTIONS = [
    ({"pathway_id": ""}, "pathway_id", "missing_value", "pathway_id is empty; every row needs one"),
    ({"local_patient_id": ""}, "local_patient_id", "missing_value",
     "local_patient_id is empty; every row needs one"),
    ({"waiting_list_type": ""}, "waiting_list_type", "missing_value",
     "waiting_list_type is empty; every row needs one"),
    ({"treatment_function_code": ""}, "treatment_function_code", "missing_value",
     "treatment_function_code is empty; every row needs one"),
    ({"rtt_start_date": "31/02/2024"}, "rtt_start_date", "bad_date",
     "'31/02/2024' is not a date (expected YYYY-MM-DD, the format of this column)"),
    ({"last_validated_date": "not known"}, "last_validated_date", "bad_date",
     "'not known' is not a date (expected YYYY-MM-DD, the format of this column)"),
    ({"last_validated_date": "2024-07-02"}, "last_validated_date", "date_after_census",
     "last_validated_date 2024-07-02 is after the census date 2024-06-30"),
    ({"decision_to_admit_date": "2024-08-01"}, "decision_to_admit_date", "date_after_census",
     "decision_to_admit_date 2024-08-01 is after the census date 2024-06-30"),
    ({"rtt_start_date": "2024-07-01"}, "rtt_start_date", "clock_start_after_census",
     "clock start 2024-07-01 is after the census date 2024-06-30"),
    ({"treatment_function_code": "999"}, "treatment_function_code", "bad_code",
     "'999' is not a treatment function code (3 characters, e.g. 110); translate local specialty "
     "names under [values.treatment_function_code] in the profile"),
    ({"waiting_list_type": "XXXX"}, "waiting_list_type", "bad_code",
     "'XXXX' is not a waiting list type (IRTT, ORTT, INON or ONON)"),
    ({"rtt_status": "77"}, "rtt_status", "bad_code", "'77' is not an RTT period status code (10-36, 90-99)"),
    ({"priority_type": "8"}, "priority_type", "bad_code",
     "'8' is not a priority type (1 routine, 2 urgent, 3 two-week wait)"),
    ({"clinical_priority": "P9"}, "clinical_priority", "bad_code",
     "'P9' is not a clinical priority (P1a, P1b, P2, P3, P4, P5 or P6)"),
    ({"asa_grade": "7"}, "asa_grade", "bad_code", "'7' is not an ASA grade (1-6)"),
    ({"intended_management": "6"}, "intended_management", "bad_code",
     "'6' is not an intended management code (1-5, 8 or 9)"),
    ({"bmi": "250"}, "bmi", "bad_number", "'250' is not a BMI between 10 and 100"),
    ({"bmi": "heavy"}, "bmi", "bad_number", "'heavy' is not a BMI between 10 and 100"),
    ({"rtt_status": "30"}, "rtt_status", "clock_stop_on_open_pathway",
     "RTT status 30 stops the clock, but the pathway is on the open waiting list: correct the "
     "status or remove the pathway"),
]


@pytest.mark.parametrize(("override", "column", "kind", "reason"), REJECTIONS,
                         ids=[f"{r[1]}-{r[2]}-{list(r[0].values())[0] or 'empty'}" for r in REJECTIONS])
def test_each_rejection_rule_rejects_the_row_with_its_reason(
    tmp_path: Path, override: dict[str, str], column: str, kind: str, reason: str
) -> None:
    rows = good_rows(5)
    rows[2] = good_row(3, **override)
    result = check(tmp_path, rows)
    issue = only_issue(result)
    assert (issue["row"], issue["column"], issue["kind"], issue["severity"]) == (4, column, kind, "rejected")
    assert issue["reason"] == reason
    assert issue["raw_value"] == (override[column] or None)
    assert result.rows_rejected == 1
    assert result.clean.height == 4
    assert "PPI000003" not in result.clean.get_column("pathway_id").to_list()


WARNINGS = [
    ({"nhs_number": "9434765918"}, "nhs_number", "invalid_nhs_number",
     "the NHS number fails the modulus-11 check digit: blanked (the pathway is loaded)"),
    ({"nhs_number": "0000000000"}, "nhs_number", "invalid_nhs_number",
     "the NHS number is a placeholder, not a real number: blanked (the pathway is loaded)"),
    ({"nhs_number": "1111111111"}, "nhs_number", "invalid_nhs_number",
     "the NHS number is a placeholder, not a real number: blanked (the pathway is loaded)"),
    ({"ethnic_category": "W9"}, "ethnic_category", "bad_code_blanked",
     "'W9' is not an ethnic category (A-S, Z or 99): blanked"),
    ({"sex": "7"}, "sex", "bad_code_blanked",
     "'7' is not a stated gender code (1, 2, 9 or X; map local values under [values.sex]): blanked"),
    ({"postcode": "NOT A POSTCODE"}, "postcode", "bad_postcode",
     "the postcode is not a valid UK postcode: blanked, so no LSOA is derived from it"),
    ({"learning_disability": "maybe"}, "learning_disability", "bad_code_blanked",
     "'MAYBE' is not Y or N: blanked"),
    ({"nhs_number_status": "09"}, "nhs_number_status", "bad_code_blanked",
     "'09' is not an NHS number status indicator (01-08): blanked"),
    # A date of birth is identifiable: named, never quoted, and the waiting patient stays listed.
    ({"date_of_birth": "31/02/1961"}, "date_of_birth", "bad_date",
     "date_of_birth is not a date (expected YYYY-MM-DD, the format of this column): blanked"),
    ({"date_of_birth": "2024-07-01"}, "date_of_birth", "date_after_census",
     "date_of_birth is after the census date 2024-06-30: blanked"),
    ({"site_code": "=1+1"}, "site_code", "bad_code_blanked",
     "'=1+1' is not an ODS site code (5 characters such as RXX01, or a 3-5 character organisation "
     "code): blanked"),
    ({"site_code": "RXX0101"}, "site_code", "bad_code_blanked",
     "'RXX0101' is not an ODS site code (5 characters such as RXX01, or a 3-5 character organisation "
     "code): blanked"),
    ({"procedure_code": "=1+1"}, "procedure_code", "bad_code_blanked",
     "'=1+1' is not an OPCS-4 procedure code (a letter and three digits, e.g. W37.1 or W371; one "
     "code): blanked"),
    ({"procedure_code": "W37"}, "procedure_code", "bad_code_blanked",
     "'W37' is not an OPCS-4 procedure code (a letter and three digits, e.g. W37.1 or W371; one "
     "code): blanked"),
    ({"procedure_code": "W37.1, W38.1"}, "procedure_code", "bad_code_blanked",
     "'W371,W381' is not an OPCS-4 procedure code (a letter and three digits, e.g. W37.1 or W371; "
     "one code): blanked"),
    ({"rtt_start_date": ""}, "rtt_start_date", "unknown_clock_start",
     "no clock start on an RTT pathway: loaded without days waited; validate the pathway"),
]


@pytest.mark.parametrize(("override", "column", "kind", "reason"), WARNINGS,
                         ids=[f"{r[1]}-{list(r[0].values())[0] or 'empty'}" for r in WARNINGS])
def test_each_warning_loads_the_row_and_blanks_the_value(
    tmp_path: Path, override: dict[str, str], column: str, kind: str, reason: str
) -> None:
    rows = good_rows(3)
    rows[1] = good_row(2, **override)
    result = check(tmp_path, rows)
    issue = only_issue(result)
    assert (issue["row"], issue["column"], issue["kind"], issue["severity"]) == (3, column, kind, "warning")
    assert issue["reason"] == reason
    assert result.rows_rejected == 0 and result.rows_warned == 1
    loaded = result.clean.filter(pl.col("pathway_id") == "PPI000002")
    assert loaded.height == 1
    assert loaded.item(0, column) is None


def test_duplicate_pathway_keys_reject_every_copy(tmp_path: Path) -> None:
    rows = good_rows(4)
    rows[3] = good_row(4, pathway_id=rows[1]["pathway_id"])
    result = check(tmp_path, rows)
    issues = result.issues.to_dicts()
    assert [(i["row"], i["kind"]) for i in issues] == [(3, "duplicate_pathway_key"), (5, "duplicate_pathway_key")]
    assert issues[0]["reason"] == (
        "pathway PPI000002 is in this file more than once (rows 3, 5); every copy is rejected: "
        "send each open pathway once"
    )
    assert result.clean.height == 2


def test_the_same_pathway_id_from_two_issuers_is_not_a_duplicate(tmp_path: Path) -> None:
    rows = [good_row(1, pathway_id_issuer="RXX"), good_row(2, pathway_id="PPI000001", pathway_id_issuer="RYY")]
    result = check(tmp_path, rows)
    assert result.issues.height == 0 and result.clean.height == 2


def test_known_waiting_list_typos_are_normalised_not_rejected(tmp_path: Path) -> None:
    rows = [good_row(1, waiting_list_type="PTL0"), good_row(2, waiting_list_type="PLTI"),
            good_row(3, waiting_list_type="ptli"), good_row(4, waiting_list_type=" ortt ")]
    result = check(tmp_path, rows)
    assert result.issues.height == 0
    assert result.clean.get_column("waiting_list_type").to_list() == ["ORTT", "IRTT", "IRTT", "ORTT"]


def test_values_are_normalised_to_canonical_forms(tmp_path: Path) -> None:
    rows = [good_row(1, clinical_priority="p1A", nhs_number="943 476 5919", nhs_number_status="1",
                     postcode="ls14ab", treatment_function_code="C_130", asa_grade="3.0", bmi="31,5")]
    clean = check(tmp_path, rows).clean.row(0, named=True)
    assert clean["clinical_priority"] == "P1a"
    assert clean["nhs_number"] == "9434765919"
    assert clean["nhs_number_status"] == "01"
    assert clean["postcode"] == "LS1 4AB"
    assert clean["treatment_function_code"] == "130"
    assert clean["asa_grade"] == 3
    assert clean["bmi"] == 31.5


def test_a_row_with_several_problems_is_counted_once(tmp_path: Path) -> None:
    rows = [good_row(1), good_row(2, treatment_function_code="999", rtt_status="77", sex="7")]
    result = check(tmp_path, rows)
    assert result.rows_rejected == 1
    assert sorted(result.issues.get_column("kind").to_list()) == ["bad_code", "bad_code", "bad_code_blanked"]


def test_rejected_rows_keep_their_raw_source_row(tmp_path: Path) -> None:
    rows = [good_row(1), good_row(2, treatment_function_code="999")]
    issue = only_issue(check(tmp_path, rows))
    assert '"treatment_function_code":"999"' in str(issue["raw_row"])
    assert '"pathway_id":"PPI000002"' in str(issue["raw_row"])


@pytest.mark.parametrize(
    ("rows", "declared", "kind", "message"),
    [
        ([good_row(1, provider_code="RYY")], {}, "provider_mismatch",
         "extract.csv: declared for provider RXX but the file holds provider code(s) RYY; send "
         "each provider's extract under its own code"),
        ([good_row(1), good_row(2, census_date="2024-07-07")], {}, "census_date",
         "extract.csv: the file holds 2 census dates (2024-06-30 … 2024-07-07); send one census per file"),
        ([good_row(1, census_date="last sunday")], {}, "census_date",
         "extract.csv: census date 'last sunday' is not a date"),
        ([good_row(1)], {"census_date": CENSUS.replace(day=23)}, "census_date",
         "extract.csv: declared census date 2024-06-23 but the file says 2024-06-30"),
    ],
    ids=["provider-differs", "two-censuses", "census-not-a-date", "census-differs"],
)
def test_file_level_problems_refuse_the_whole_file(
    tmp_path: Path, rows: list[dict[str, str]], declared: dict[str, object], kind: str, message: str
) -> None:
    with pytest.raises(FeedRefused) as refused:
        check(tmp_path, rows, **declared)
    assert refused.value.kind == kind
    assert str(refused.value) == message


def test_missing_required_columns_are_named(tmp_path: Path) -> None:
    rows = [{k: v for k, v in good_row(1).items() if k not in ("treatment_function_code", "rtt_start_date")}]
    with pytest.raises(FeedRefused) as refused:
        check(tmp_path, rows)
    assert refused.value.kind == "missing_columns"
    assert "missing required column(s): rtt_start_date (header 'rtt_start_date'); " \
           "treatment_function_code (header 'treatment_function_code')" in str(refused.value)


def test_census_date_can_be_declared_when_the_file_has_none(tmp_path: Path) -> None:
    rows = [{k: v for k, v in good_row(1).items() if k != "census_date"}]
    result = check(tmp_path, rows, census_date=CENSUS)
    assert result.clean.item(0, "census_date") == CENSUS
    with pytest.raises(FeedRefused, match=r"missing required column\(s\): census_date .* or pass --census-date"):
        check(tmp_path, rows)


def _with_check_digit(nine: str) -> str:
    total = sum(int(d) * (10 - i) for i, d in enumerate(nine))
    check_digit = 11 - total % 11
    return nine + ("0" if check_digit == 11 else "X" if check_digit == 10 else str(check_digit))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789", min_size=9, max_size=9) | st.sampled_from(["010190123", "311299123", "320190123"]),
       st.integers(0, 9))
def test_vectorised_check_digit_agrees_with_the_nhs_number_package(nine: str, wrong: int) -> None:
    candidates = [_with_check_digit(nine), nine + str(wrong)]
    candidates = [c for c in candidates if "X" not in c]
    ours = pl.DataFrame({"n": candidates}).select(nhs_number_valid_expr(pl.col("n"))).to_series().to_list()
    assert ours == [is_valid(c) for c in candidates]


def test_values_padded_with_whitespace_load_as_their_trimmed_value(tmp_path: Path) -> None:
    """Extracts from fixed-width systems pad codes (`'110 '`, `' P2'`, a tab); the padding is
    no part of the value, and a cell of spaces is blank. Columns without padding are used as
    read, padded ones trimmed."""
    rows = good_rows(3)
    rows[0] = good_row(1, treatment_function_code=" 110 ", clinical_priority="P2\t", referral_id="   ")
    rows[1] = good_row(2, local_patient_id="  LP2", nhs_number="\u00a09434765919")
    result = check(tmp_path, rows)
    assert result.issues.filter(pl.col("severity") == "rejected").is_empty()
    clean = result.clean.sort("local_patient_id")
    first = clean.filter(pl.col("pathway_id") == good_row(1)["pathway_id"]).row(0, named=True)
    assert (first["treatment_function_code"], first["clinical_priority"], first["referral_id"]) == ("110", "P2", None)
    assert "LP2" in clean.get_column("local_patient_id").to_list()
    assert "9434765919" in clean.get_column("nhs_number").to_list()


# Lengths: every field has a maximum (ptl/fields.py), enforced before any other rule reads a value.
LENGTH_RULED = [f for f in FIELDS if f.invalid != "refuse"]


@pytest.mark.parametrize("field", LENGTH_RULED, ids=[f.name for f in LENGTH_RULED])
def test_a_value_at_its_fields_maximum_is_read_and_one_longer_is_reported_by_its_length_alone(
    tmp_path: Path, field: Field
) -> None:
    # Two-byte characters: the maximum counts characters, as the store's columns do.
    at_max, over = "é" * field.max_length, "é" * (field.max_length + 1)
    rows = good_rows(4)
    rows[1] = good_row(2, **{field.name: at_max})
    rows[2] = good_row(3, **{field.name: over})
    result = check(tmp_path, rows)
    issues = result.issues.drop("raw_row")
    assert "too_long" not in issues.filter(pl.col("row") == 3).get_column("kind").to_list()
    blanked = field.invalid == "blank"
    assert issues.filter(pl.col("row") == 4).to_dicts() == [{
        "row": 4, "column": field.name, "source_column": field.name,
        "severity": "warning" if blanked else "rejected", "kind": "too_long",
        "reason": f"{field.name} is {field.max_length + 1} characters long, more than its maximum of "
                  f"{field.max_length}" + (": blanked" if blanked else ""),
        "raw_value": None,
    }]
    clean = result.clean
    over_row = clean.filter(pl.col("pathway_id") == "PPI000003")
    if blanked:
        assert over_row.height == 1 and over_row.item(0, field.name) is None
    else:
        assert over_row.is_empty()
    if field.kind == "text" or field.name == "pathway_id_issuer":  # stored as sent
        kept = clean.filter(pl.col(ROW) == 1).item(0, field.name)
        assert kept == (at_max.upper() if field.name == "pathway_id_issuer" else at_max)


@pytest.mark.parametrize(("column", "kind"), [("provider_code", "provider_mismatch"), ("census_date", "census_date")])
def test_an_over_long_provider_or_census_refuses_the_file_without_quoting_it(
    tmp_path: Path, column: str, kind: str
) -> None:
    value = "Q" * 5000
    rows = [good_row(1), good_row(2, **{column: value})]
    with pytest.raises(FeedRefused) as refused:
        check(tmp_path, rows)
    assert refused.value.kind == kind
    assert "Q" * 20 not in str(refused.value)
    assert "1 row(s) have a" in str(refused.value) and "the longest is 5,000" in str(refused.value)


def test_a_rejected_rows_cells_are_kept_cut_to_a_bound(tmp_path: Path) -> None:
    rows = [good_row(1), good_row(2, treatment_function_code="999", given_name="é" * 5000)]
    result = check(tmp_path, rows)
    rejected = result.issues.filter(pl.col("severity") == "rejected").to_dicts()
    assert [(i["column"], i["kind"]) for i in rejected] == [("treatment_function_code", "bad_code")]
    raw_row = json.loads(str(rejected[0]["raw_row"]))
    assert raw_row["given_name"] == "é" * RAW_CELL_CHARS + "… (5000 characters)"
    assert raw_row["treatment_function_code"] == "999"
    warned = result.issues.filter(pl.col("severity") == "warning").to_dicts()
    assert [(i["column"], i["kind"], i["raw_value"]) for i in warned] == [("given_name", "too_long", None)]


def test_site_and_procedure_codes_in_their_accepted_spellings_load(tmp_path: Path) -> None:
    sites = ["RXX01", "rxx01", "RXX", "8HV48", " RXX02 "]
    procedures = ["W37.1", "w371", "W371", " W37.1 ", "Z94.2"]
    rows = [good_row(n + 1, site_code=site, procedure_code=procedure)
            for n, (site, procedure) in enumerate(zip(sites, procedures, strict=True))]
    result = check(tmp_path, rows)
    assert result.issues.is_empty()
    clean = result.clean.sort(ROW)
    assert clean.get_column("site_code").to_list() == ["RXX01", "RXX01", "RXX", "8HV48", "RXX02"]
    assert clean.get_column("procedure_code").to_list() == ["W371", "W371", "W371", "W371", "Z942"]


def _headerless_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(list(row.values()) for row in rows)
    return path


def _values_of(rows: list[dict[str, str]]) -> set[str]:
    """The values a message must not quote (single characters and two-digit codes are in any text)."""
    return {value for row in rows for value in row.values() if len(value) >= 3}


def test_a_headerless_file_is_named_as_such_without_quoting_its_first_line(tmp_path: Path) -> None:
    rows = [good_row(n, family_name="Okonkwo-Baptiste", given_name="Precious", site_code="RXX01")
            for n in range(1, 4)]
    path = _headerless_csv(tmp_path / "extract.csv", rows)
    extract = read_extract(path, CANONICAL)
    with pytest.raises(FeedRefused) as refused:
        map_columns(extract.frame, CANONICAL, filename=path.name, provider_code="RXX", census_date=None)
    message = str(refused.value)
    assert refused.value.kind == "missing_columns"
    assert message.startswith("extract.csv: the first line looks like data, not headers: it has values "
                              "shaped like nhs_number, postcode, ")
    for name in ("site_code", "waiting_list_type", "treatment_function_code", "clinical_priority",
                 "procedure_code", "dates (date_of_birth, rtt_start_date, census_date…)"):
        assert name in message
    assert [value for value in _values_of(rows) if value in message] == []


def test_wrong_headers_are_listed_except_those_that_look_like_values(tmp_path: Path) -> None:
    long_header = "H" * 500
    rows = [{"Hospital No": "L1", "Surname": "Smith", "9434765919": "x", long_header: "y"}]
    with pytest.raises(FeedRefused) as refused:
        check(tmp_path, rows)
    message = str(refused.value)
    assert message.endswith("The file has: Hospital No, Surname (and 2 that are unnamed or look like values, not shown)")
    assert "9434765919" not in message and long_header not in message


def test_a_census_after_today_is_refused(tmp_path: Path) -> None:
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    with pytest.raises(FeedRefused) as refused:
        check(tmp_path, [good_row(1, census_date=tomorrow.isoformat())])
    assert refused.value.kind == "census_date"
    assert str(refused.value) == (
        f"extract.csv: census date {tomorrow} is after today ({dt.date.today()}): a census describes "
        "a week that has ended; send the file once its week is over"
    )


@pytest.mark.parametrize(("census", "warnings"), [
    (CENSUS, ()),
    (CENSUS - dt.timedelta(days=1), (FileWarning(
        "census_date", "census_not_sunday",
        "census date 2024-06-29 is a Saturday, not a Sunday: WLMDS weeks end on Sunday; the "
        "snapshot loads as that day's"),)),
    (dt.date.today(), census_warnings(dt.date.today())),
], ids=["sunday", "saturday", "today"])
def test_a_census_that_is_not_a_sunday_loads_with_a_warning(
    tmp_path: Path, census: dt.date, warnings: tuple[FileWarning, ...]
) -> None:
    path = write_csv(tmp_path / "extract.csv", [good_row(1, census_date=census.isoformat())])
    extract = read_extract(path, CANONICAL)
    mapped = map_columns(extract.frame, CANONICAL, filename=path.name, provider_code="RXX", census_date=None)
    assert mapped.census_date == census
    assert mapped.warnings == warnings
    assert (mapped.warnings == ()) == (census.isoweekday() == 7)


OPTIONAL_SENT = [name for name in good_row(1) if name not in REQUIRED_COLUMNS]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(OPTIONAL_SENT), unique=True), st.randoms(use_true_random=False))
def test_a_headerless_file_of_any_column_set_is_recognised(optional: list[str], rng: Random) -> None:
    """Whatever columns a provider sends, in whatever order, a file without its header line is
    named as data and none of its first line's values is quoted."""
    names = [name for name in good_row(1) if name in REQUIRED_COLUMNS or name in optional]
    rng.shuffle(names)
    rows = [{name: good_row(n)[name] for name in names} for n in range(1, 3)]
    with tempfile.TemporaryDirectory() as folder:
        path = _headerless_csv(Path(folder) / "extract.csv", rows)
        extract = read_extract(path, CANONICAL)
        with pytest.raises(FeedRefused) as refused:
            map_columns(extract.frame, CANONICAL, filename=path.name, provider_code="RXX", census_date=None)
    message = str(refused.value)
    assert "the first line looks like data, not headers" in message
    assert [value for value in _values_of(rows[:1]) if value in message] == []


def test_a_headerless_workbook_with_typed_cells_is_recognised(tmp_path: Path) -> None:
    """Excel dates and numbers in the first row reach the reader as unnamed or numeric headers."""
    rows = [good_row(n, family_name="Okonkwo-Baptiste") for n in range(1, 4)]
    typed = pl.DataFrame(rows).with_columns(
        pl.col("date_of_birth", "rtt_start_date").str.to_date(),
        pl.col("nhs_number").cast(pl.Int64), pl.col("bmi").cast(pl.Float64),
    )
    path = tmp_path / "extract.xlsx"
    typed.write_excel(path, include_header=False)
    extract = read_extract(path, CANONICAL)
    with pytest.raises(FeedRefused) as refused:
        map_columns(extract.frame, CANONICAL, filename=path.name, provider_code="RXX", census_date=None)
    message = str(refused.value)
    assert message.startswith("extract.xlsx: the first line looks like data, not headers: it has values "
                              "shaped like nhs_number, postcode, ")
    assert [value for value in _values_of(rows[:1]) if value in message] == []


def _store_sizes() -> dict[str, int]:
    """The size of each store column a canonical field is kept in as text."""
    sizes: dict[str, int] = {}
    for table in (Pathway.__table__, SourceIdentity.__table__):
        for column in table.columns:
            length = getattr(column.type, "length", None)
            if column.name in FIELDS_BY_NAME and length is not None:
                sizes[column.name] = length
    return sizes


STORE_SIZES = _store_sizes()
HOSTILE_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="§Ω")
                       | st.sampled_from(" =+-@\t"), max_size=60)


#: The values the house rule names: never in a message, a log line or a sidecar.
PATIENT_FIELDS = ("nhs_number", "family_name", "given_name", "date_of_birth", "postcode", "local_patient_id")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from([f.name for f in LENGTH_RULED]),
                                HOSTILE_TEXT | st.integers(1, 200).map(lambda n: "Ω" * n), max_size=6),
                min_size=1, max_size=6))
def test_whatever_values_arrive_what_loads_fits_the_store_and_no_reason_quotes_a_patient(
    overrides: list[dict[str, str]],
) -> None:
    # A patient's values carry a mark no reason has, so a quoted one cannot hide by coincidence.
    marked = [{name: ("§" + value if name in PATIENT_FIELDS else value) for name, value in row.items()}
              for row in overrides]
    rows = [good_row(n + 1, **override) for n, override in enumerate(marked)]
    with tempfile.TemporaryDirectory() as folder:
        result = check(Path(folder), rows)
    for name, size in STORE_SIZES.items():
        if name in result.clean.columns and result.clean.schema[name] == pl.String:
            longest = result.clean.select(pl.col(name).str.len_chars().max()).item()
            assert longest is None or longest <= size, name
    for issue in result.issues.iter_rows(named=True):
        assert len(issue["reason"]) < 400
        assert "§" not in issue["reason"]
        if issue["column"] in PATIENT_FIELDS:
            assert "Ω" not in issue["reason"]
