"""Every validation rule: a bad row, the exact reason, and what happens to the row."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nhs_number import is_valid

from ingest.errors import FeedRefused
from ingest.profiles import load_profile
from ingest.read import read_extract
from ingest.validate import Validated, map_columns, nhs_number_valid_expr, validate
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
    ({"date_of_birth": "not known"}, "date_of_birth", "bad_date",
     "'not known' is not a date (expected YYYY-MM-DD, the format of this column)"),
    ({"date_of_birth": "2024-07-01"}, "date_of_birth", "date_after_census",
     "date_of_birth 2024-07-01 is after the census date 2024-06-30"),
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
    ({"nhs_number_status": "09"}, "nhs_number_status", "bad_code",
     "'09' is not an NHS number status indicator (01-08)"),
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
