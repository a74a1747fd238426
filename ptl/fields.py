"""The canonical PTL extract: every field the product understands, its type and meaning.

A provider's extract is mapped onto these names by a profile (`ingest/profiles`). The `wlmds`
profile is generated from the `wlmds` aliases below; the `canonical` profile uses the names as
they are. `docs/FIELDS.md` is written from this table (`ptl fields --markdown`).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Final, Literal

FieldKind = Literal["text", "code", "date", "integer", "number", "boolean", "nhs_number", "postcode"]


@dataclass(frozen=True, slots=True)
class Field:
    """One canonical field of a PTL extract."""

    name: str
    kind: FieldKind
    meaning: str
    #: "column": the column must be mapped; "value": it must also be non-empty on every row.
    required: Literal["no", "column", "value"] = "no"
    #: WLMDS data-lake column names (and common variants) recognised by the `wlmds` profile.
    wlmds: tuple[str, ...] = ()
    #: Identifiable: kept in the identifiable tier (source_identity), never in analytics.
    identifiable: bool = False
    _: KW_ONLY
    #: The longest value accepted, in characters (surrounding spaces trimmed, after the
    #: profile's [values] translation). Identifiers and names are stored as sent, so theirs is
    #: the store's column size; codes, dates, numbers and flags get room for any spelling the
    #: rules translate, and their own rule (code list, shape) keeps only values that fit.
    #: A longer value is never read further, quoted or stored.
    max_length: int
    #: What a value that breaks the field's rules (too long, not in its code list, wrong shape,
    #: not a date…) does: "reject" the row, "blank" the value and load the row with a warning,
    #: or "refuse" the whole file (what the file is: its provider and census). Demographic
    #: fields blank: a waiting patient stays listed whatever their demographics look like.
    invalid: Literal["reject", "blank", "refuse"] = "reject"


#: `max_length` of codes, dates, numbers and flags: longer than any spelling the rules translate
#: (`C_110`, `NON-ADMITTED`, `100 miles`, a date with its time), so an unknown value is reported
#: by its own rule, which names it.
CODED_MAX_LENGTH: Final = 40

FIELDS: Final[tuple[Field, ...]] = (
    Field("provider_code", "code", "ODS code of the provider holding the waiting list (e.g. RXX). "
          "May come from the profile's [defaults] or `--provider` instead of a column.",
          "value", ("ORGANISATION_IDENTIFIER_CODE_OF_PROVIDER", "Provider_Code", "ORG_CODE_PROVIDER"),
          max_length=12, invalid="refuse"),
    Field("site_code", "code", "ODS site code where treatment is planned: 5 characters (RXX01), "
          "or the provider's 3–5 character organisation code.",
          "no", ("ORGANISATION_SITE_IDENTIFIER_OF_TREATMENT", "Site_Code_Of_Treatment"),
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("census_date", "date", "The census (week ending Sunday) the snapshot describes. One per "
          "file. May come from `--census-date` instead of a column. A census after today "
          "refuses the file; one that is not a Sunday loads with a warning.",
          "value", ("Week_Ending_Date", "Census_Date", "CENSUS_DATE"),
          max_length=CODED_MAX_LENGTH, invalid="refuse"),
    Field("pathway_id", "text", "Patient pathway identifier (PPI).",
          "value", ("PATIENT_PATHWAY_IDENTIFIER",),
          max_length=40),
    Field("pathway_id_issuer", "code", "ODS code of the organisation that issued the PPI; "
          "defaults to provider_code.",
          "no", ("ORGANISATION_CODE_PATIENT_PATHWAY_IDENTIFIER_ISSUER",),
          max_length=12),
    Field("referral_id", "text", "Referral identifier.", "no", ("REFERRAL_IDENTIFIER",),
          max_length=40),
    Field("local_patient_id", "text", "The provider's own patient identifier (hospital number).",
          "value", ("LOCAL_PATIENT_IDENTIFIER",), identifiable=True,
          max_length=40),
    Field("nhs_number", "nhs_number", "NHS number, 10 digits (spaces allowed). An invalid or "
          "placeholder number is blanked with a warning; the pathway still loads.",
          "no", ("NHS_NUMBER",), identifiable=True,
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("nhs_number_status", "code", "NHS number status indicator code, 01 (verified) to 08.",
          "no", ("NHS_NUMBER_STATUS_INDICATOR_CODE",), identifiable=True,
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("family_name", "text", "Family name (used for identity matching only).",
          "no", ("PERSON_FAMILY_NAME", "Surname", "Family_Name"), identifiable=True,
          max_length=100, invalid="blank"),
    Field("given_name", "text", "Given name (used for identity matching only).",
          "no", ("PERSON_GIVEN_NAME", "Forename", "Given_Name"), identifiable=True,
          max_length=100, invalid="blank"),
    Field("date_of_birth", "date", "Date of birth. One that is not a date, or is after the "
          "census, is blanked with a warning; the pathway still loads.", "no",
          ("PERSON_BIRTH_DATE", "DATE_OF_BIRTH"), identifiable=True,
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("sex", "code", "Person stated gender code: 1 male, 2 female, 9 indeterminate, X not known.",
          "no", ("PERSON_STATED_GENDER_CODE", "PERSON_GENDER_CODE_CURRENT"),
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("postcode", "postcode", "Postcode of usual address; used to derive the 2011 LSOA.",
          "no", ("POSTCODE_OF_USUAL_ADDRESS", "POSTCODE"), identifiable=True,
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("lsoa11", "code", "2011 Lower Layer Super Output Area code (E01…), when the extract "
          "carries it; otherwise derived from the postcode.",
          "no", ("LSOA_2011", "Der_Postcode_LSOA_2011_Code", "LSOA11"),
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("ethnic_category", "code", "Ethnic category A–S, Z (not stated) or 99 (not known).",
          "no", ("ETHNIC_CATEGORY", "ETHNIC_CATEGORY_CODE"),
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("rtt_start_date", "date", "Referral to treatment period start date (clock start). "
          "Empty on an RTT pathway = unknown clock start (loaded, listed for validation).",
          "column", ("REFERRAL_TO_TREATMENT_PERIOD_START_DATE", "RTT_Start_Date"),
          max_length=CODED_MAX_LENGTH),
    Field("rtt_status", "code", "RTT period status code (10–36, 90–99).",
          "no", ("REFERRAL_TO_TREATMENT_PERIOD_STATUS", "RTT_Status"),
          max_length=CODED_MAX_LENGTH),
    Field("waiting_list_type", "code", "IRTT admitted RTT, ORTT non-admitted RTT, INON/ONON "
          "non-RTT. Known local variants (PTLI, PTLO, PTL0, PLTI…) are normalised.",
          "value", ("Waiting_List_Type",),
          max_length=CODED_MAX_LENGTH),
    Field("treatment_function_code", "code", "Activity treatment function code, 3 characters "
          "(110 trauma and orthopaedics, 130 ophthalmology…).",
          "value", ("ACTIVITY_TREATMENT_FUNCTION_CODE", "TREATMENT_FUNCTION_CODE"),
          max_length=CODED_MAX_LENGTH),
    Field("priority_type", "code", "Priority type code: 1 routine, 2 urgent, 3 two-week wait.",
          "no", ("PRIORITY_TYPE_CODE",),
          max_length=CODED_MAX_LENGTH),
    Field("clinical_priority", "code", "Surgical clinical priority P1a, P1b, P2, P3, P4, P5, P6.",
          "no", ("Procedure_Priority_Code", "Clinical_Priority"),
          max_length=CODED_MAX_LENGTH),
    Field("procedure_code", "code", "Proposed procedure: one OPCS-4 code, a letter and three "
          "digits, the dot optional (W37.1 or W371).",
          "no", ("Proposed_Procedure_OPCS_Code",),
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("intended_management", "code", "Intended management code (1 inpatient, 2 day case…).",
          "no", ("INTENDED_MANAGEMENT_CODE",),
          max_length=CODED_MAX_LENGTH),
    Field("decision_to_admit_date", "date", "Decision to admit date.",
          "no", ("DECISION_TO_ADMIT_DATE",),
          max_length=CODED_MAX_LENGTH),
    Field("tci_date", "date", "To-come-in (booked admission) date.", "no", ("TCI_Date",),
          max_length=CODED_MAX_LENGTH),
    Field("asa_grade", "integer", "ASA physical status 1–6.",
          "no", ("ASA_PHYSICAL_STATUS_CLASSIFICATION_SYSTEM_CODE", "ASA_Grade"),
          max_length=CODED_MAX_LENGTH),
    Field("bmi", "number", "Body mass index (10–100).", "no", ("BMI", "Body_Mass_Index"),
          max_length=CODED_MAX_LENGTH),
    Field("learning_disability", "boolean", "Learning disability flag (Y/N).",
          "no", ("Learning_Disability", "Learning_Disability_Flag"),
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("interpreter_required", "boolean", "Interpreter needed (Y/N).",
          "no", ("Interpreter_Required", "INTERPRETER_LANGUAGE_REQUIRED"),
          max_length=CODED_MAX_LENGTH, invalid="blank"),
    Field("last_validated_date", "date", "Date the pathway was last validated on the PAS.",
          "no", ("Last_PAS_Validation_Date",),
          max_length=CODED_MAX_LENGTH),
    Field("last_attended_date", "date", "Date of the last attended appointment.",
          "no", ("Date_Last_Attended",),
          max_length=CODED_MAX_LENGTH),
    Field("last_dna_date", "date", "Date of the last missed (DNA) appointment.",
          "no", ("Last_DNA_Date",),
          max_length=CODED_MAX_LENGTH),
    Field("travel_willingness", "code", "PIDMAS: how far the patient will travel: 50, 100 "
          "(miles) or national.", "no", ("PIDMAS_Travel_Willingness", "Travel_Willingness"),
          max_length=CODED_MAX_LENGTH),
)

FIELDS_BY_NAME: Final[dict[str, Field]] = {f.name: f for f in FIELDS}
FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FIELDS)
#: Fields whose column must be present (after mapping, defaults and CLI overrides).
REQUIRED_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in FIELDS if f.required != "no")
#: Fields that must be non-empty on every row.
REQUIRED_VALUES: Final[tuple[str, ...]] = tuple(f.name for f in FIELDS if f.required == "value")
IDENTIFIABLE_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in FIELDS if f.identifiable)
DATE_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in FIELDS if f.kind == "date")


def fields_markdown() -> str:
    """The canonical field reference as a Markdown table (the README links to it)."""
    lines = [
        "| field | type | required | max length | if invalid | WLMDS name | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    required_text = {"no": "no", "column": "column", "value": "yes"}
    invalid_text = {"reject": "row rejected", "blank": "value blanked", "refuse": "file refused"}
    for f in FIELDS:
        wlmds = f.wlmds[0] if f.wlmds else ""
        tier = " *(identifiable tier)*" if f.identifiable else ""
        lines.append(
            f"| `{f.name}` | {f.kind} | {required_text[f.required]} | {f.max_length} | {invalid_text[f.invalid]} "
            f"| `{wlmds}` | {f.meaning}{tier} |"
        )
    return "\n".join(lines) + "\n"
