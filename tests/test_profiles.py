"""Column profiles: built-ins, TOML profiles, and refusals that name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import ProfileError
from ingest.profiles import load_profile, parse_profile_text
from ptl.fields import FIELDS, REQUIRED_COLUMNS

GOOD = """
name = "northfield-pas"
date_format = "%d/%m/%Y"
delimiter = ";"
encoding = "windows-1252"
[columns]
pathway_id = "Pathway Ref"
local_patient_id = "Hospital No"
rtt_start_date = "Clock Start"
waiting_list_type = "List Type"
treatment_function_code = "Specialty"
sex = ["Gender", "Sex"]
[values.treatment_function_code]
"Trauma & Orthopaedics" = "110"
[values.sex]
M = "1"
F = "2"
[defaults]
provider_code = "RZB"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.toml"
    path.write_text(text)
    return path


def test_a_local_profile_is_read(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, GOOD))
    assert profile.name == "northfield-pas"
    assert profile.encoding == "cp1252" and profile.delimiter == ";" and profile.date_format == "%d/%m/%Y"
    assert profile.columns["sex"] == ("Gender", "Sex")
    assert profile.values["treatment_function_code"] == {"Trauma & Orthopaedics": "110"}
    assert profile.defaults == {"provider_code": "RZB"}
    assert profile.match_columns(["Pathway Ref", "hospital no", "Sex"]) == {
        "pathway_id": "Pathway Ref", "local_patient_id": "hospital no", "sex": "Sex"}


def test_wlmds_profile_matches_data_lake_names_case_insensitively() -> None:
    profile = load_profile("wlmds")
    headers = ["REFERRAL_TO_TREATMENT_PERIOD_START_DATE", "activity_treatment_function_code",
               "Waiting_List_Type", "PROCEDURE_PRIORITY_CODE", "Person_Stated_Gender_Code",
               "ETHNIC_CATEGORY", "week_ending_date", "ORGANISATION_IDENTIFIER_CODE_OF_PROVIDER"]
    assert profile.match_columns(headers) == {
        "rtt_start_date": headers[0], "treatment_function_code": headers[1], "waiting_list_type": headers[2],
        "clinical_priority": headers[3], "sex": headers[4], "ethnic_category": headers[5],
        "census_date": headers[6], "provider_code": headers[7]}


def test_canonical_profile_names_every_field() -> None:
    profile = load_profile("canonical")
    assert profile.match_columns([f.name for f in FIELDS]) == {f.name: f.name for f in FIELDS}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("pathway_id = ", "pathway_ident = "),
         "[columns] names unknown canonical field 'pathway_ident' (did you mean 'pathway_id'?)"),
        (GOOD.replace('[values.sex]', '[values.gender]'),
         "[values.gender] names unknown canonical field 'gender'"),
        (GOOD.replace('provider_code = "RZB"', 'provider = "RZB"'),
         "[defaults] names unknown canonical field 'provider'"),
        (GOOD.replace('treatment_function_code = "Specialty"\n', ""),
         "required field(s) not mapped in [columns] or [defaults]: treatment_function_code"),
        (GOOD.replace('encoding = "windows-1252"', 'encoding = "ebcdic"'),
         "encoding 'ebcdic' is not supported: use utf-8 or windows-1252"),
        ("colour = 'blue'\n" + GOOD, "unknown setting(s) colour"),
        ('name = "x"\n[columns\n', "is not valid TOML"),
    ],
    ids=["unknown-column-field", "unknown-values-field", "unknown-default-field", "missing-required",
         "bad-encoding", "unknown-setting", "bad-toml"],
)
def test_bad_profiles_are_refused_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProfileError) as error:
        load_profile(write(tmp_path, text))
    assert message in str(error.value)


def test_unknown_builtin_and_missing_file() -> None:
    with pytest.raises(ProfileError, match="unknown profile 'wlmdz'"):
        load_profile("wlmdz")
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile("/nonexistent/profile.toml")


def test_provider_and_census_date_may_be_declared_at_ingest_instead_of_mapped(tmp_path: Path) -> None:
    """Both are required columns, but a profile may leave them to `--provider`/`--census-date`;
    every other required field must be mapped."""
    text = GOOD.replace('[defaults]\nprovider_code = "RZB"\n', "")
    profile = load_profile(write(tmp_path, text))
    assert profile.defaults == {} and "provider_code" not in profile.columns
    assert {"provider_code", "census_date"} <= set(REQUIRED_COLUMNS)
    with pytest.raises(ProfileError, match="required field\\(s\\) not mapped .*: rtt_start_date"):
        load_profile(write(tmp_path, text.replace('rtt_start_date = "Clock Start"\n', "")))


@pytest.mark.parametrize(("text", "message"), [
    ("nested = " + "[" * 100_000 + "]" * 100_000, "levels deep"),
    ("nested = " + "{a = " * 5_000 + "1" + "}" * 5_000, "levels deep"),
    ("[" + ".".join(["values"] * 20_000) + "]\n", "levels deep"),
    ("[values.sex]\nM = { deeper = { still = '1' } }\n", "levels deep"),
    ("description = '" + "x" * (300 * 1024) + "'\n", "larger than 256 KiB"),
], ids=["arrays", "inline-tables", "dotted-keys", "five-levels", "too-large"])
def test_hostile_profiles_are_refused_not_crashed(tmp_path: Path, text: str, message: str) -> None:
    """Deep nesting once ended in a RecursionError; text from a file and text sent with an upload
    go through the same parser and limits."""
    with pytest.raises(ProfileError, match=message):
        load_profile(write(tmp_path, text))
    with pytest.raises(ProfileError, match=message):
        parse_profile_text(text, source="uploaded profile")


def test_a_profile_at_the_depth_limit_still_loads() -> None:
    profile = parse_profile_text(GOOD, source="uploaded profile")
    assert profile.values["sex"] == {"M": "1", "F": "2"} and profile.columns["sex"] == ("Gender", "Sex")
