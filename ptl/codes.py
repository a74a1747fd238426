"""NHS Data Dictionary code lists used by the PTL, and the normalisations we accept.

Each list is the set of valid *canonical* values. Ingest translates local values to these
(per-provider profile) and validates against them.
"""

from __future__ import annotations

from typing import Final

#: Treatment function codes (NHS Data Dictionary, TREATMENT FUNCTION CODE), with names.
#: The RTT reporting functions plus the commoner others seen on elective PTLs.
TREATMENT_FUNCTIONS: Final[dict[str, str]] = {
    "100": "General Surgery",
    "101": "Urology",
    "102": "Transplant Surgery",
    "103": "Breast Surgery",
    "104": "Colorectal Surgery",
    "105": "Hepatobiliary and Pancreatic Surgery",
    "106": "Upper Gastrointestinal Surgery",
    "107": "Vascular Surgery",
    "108": "Spinal Surgery",
    "110": "Trauma and Orthopaedics",
    "111": "Orthopaedic Service",
    "115": "Trauma Surgery",
    "120": "Ear Nose and Throat",
    "130": "Ophthalmology",
    "140": "Oral Surgery",
    "141": "Restorative Dentistry",
    "143": "Orthodontics",
    "144": "Maxillofacial Surgery",
    "145": "Oral and Maxillofacial Surgery",
    "150": "Neurosurgical",
    "160": "Plastic Surgery",
    "161": "Burns Care",
    "170": "Cardiothoracic Surgery",
    "172": "Cardiac Surgery",
    "173": "Thoracic Surgery",
    "180": "Emergency Medicine",
    "191": "Pain Management",
    "300": "General Internal Medicine",
    "301": "Gastroenterology",
    "302": "Endocrinology",
    "303": "Clinical Haematology",
    "306": "Hepatology",
    "307": "Diabetes",
    "314": "Rehabilitation",
    "317": "Allergy",
    "320": "Cardiology",
    "330": "Dermatology",
    "340": "Respiratory Medicine",
    "350": "Infectious Diseases",
    "361": "Nephrology",
    "370": "Medical Oncology",
    "400": "Neurology",
    "410": "Rheumatology",
    "430": "Elderly Medicine",
    "502": "Gynaecology",
    "503": "Gynaecological Oncology",
    "800": "Clinical Oncology",
    "X01": "Other",
    "X02": "Other - Mental Health Services",
    "X03": "Other - Paediatric Services",
    "X04": "Other - Paediatric Surgical Services",
    "X05": "Other - Surgical Services",
    "X06": "Other - Other Services",
}

#: ETHNIC CATEGORY (2001 census based, 16 categories) plus not stated (Z) and not known (99).
ETHNIC_CATEGORIES: Final[dict[str, str]] = {
    "A": "White - British",
    "B": "White - Irish",
    "C": "White - Any other White background",
    "D": "Mixed - White and Black Caribbean",
    "E": "Mixed - White and Black African",
    "F": "Mixed - White and Asian",
    "G": "Mixed - Any other mixed background",
    "H": "Asian or Asian British - Indian",
    "J": "Asian or Asian British - Pakistani",
    "K": "Asian or Asian British - Bangladeshi",
    "L": "Asian or Asian British - Any other Asian background",
    "M": "Black or Black British - Caribbean",
    "N": "Black or Black British - African",
    "P": "Black or Black British - Any other Black background",
    "R": "Other Ethnic Groups - Chinese",
    "S": "Other Ethnic Groups - Any other ethnic group",
    "Z": "Not stated",
    "99": "Not known",
}

#: Broad ethnic group for each category (the six reporting groups).
ETHNIC_GROUP_OF_CATEGORY: Final[dict[str, str]] = {
    **dict.fromkeys("ABC", "White"),
    **dict.fromkeys("DEFG", "Mixed"),
    **dict.fromkeys("HJKL", "Asian"),
    **dict.fromkeys("MNP", "Black"),
    **dict.fromkeys("RS", "Other"),
    "Z": "Not stated/known",
    "99": "Not stated/known",
}
ETHNIC_GROUPS: Final[tuple[str, ...]] = (
    "White",
    "Mixed",
    "Asian",
    "Black",
    "Other",
    "Not stated/known",
)

#: PERSON STATED GENDER CODE.
SEX_CODES: Final[dict[str, str]] = {
    "1": "Male",
    "2": "Female",
    "9": "Indeterminate",
    "X": "Not known",
}

#: NHS NUMBER STATUS INDICATOR CODE.
NHS_NUMBER_STATUSES: Final[dict[str, str]] = {
    "01": "Number present and verified",
    "02": "Number present but not traced",
    "03": "Trace required",
    "04": "Trace attempted - no match or multiple match found",
    "05": "Trace needs to be resolved (NHS number or patient detail conflict)",
    "06": "Trace in progress",
    "07": "Number not present and trace not required",
    "08": "Trace postponed (baby under six weeks old)",
}

#: REFERRAL TO TREATMENT PERIOD STATUS.
RTT_STATUSES: Final[dict[str, str]] = {
    "10": "First activity: clock start",
    "11": "Clock start after active monitoring",
    "12": "Clock start after a decision to treat following active monitoring",
    "20": "Subsequent activity: clock continues",
    "21": "Transfer to another provider: clock continues",
    "30": "First definitive treatment: clock stop",
    "31": "Start of active monitoring initiated by the patient",
    "32": "Start of active monitoring initiated by the care professional",
    "33": "Did not attend first appointment",
    "34": "Decision not to treat",
    "35": "Patient declined treatment",
    "36": "Patient died before treatment",
    "90": "After first definitive treatment",
    "91": "Activity during active monitoring",
    "92": "Not yet referred for treatment",
    "98": "Not applicable to RTT",
    "99": "Not yet known",
}
RTT_CLOCK_STOP_STATUSES: Final[frozenset[str]] = frozenset(
    {"30", "31", "32", "33", "34", "35", "36"}
)

#: Waiting list types (WLMDS). RTT lists carry a running clock.
WAITING_LIST_TYPES: Final[dict[str, str]] = {
    "IRTT": "Admitted RTT (inpatient/day case)",
    "ORTT": "Non-admitted RTT (outpatient)",
    "INON": "Admitted non-RTT",
    "ONON": "Non-admitted non-RTT",
}
RTT_WAITING_LIST_TYPES: Final[frozenset[str]] = frozenset({"IRTT", "ORTT"})
#: Known local spellings and typos seen in real extracts, normalised before validation.
WAITING_LIST_TYPE_SYNONYMS: Final[dict[str, str]] = {
    "PTLI": "IRTT",
    "PLTI": "IRTT",
    "PTL1": "IRTT",
    "PTLO": "ORTT",
    "PTL0": "ORTT",
    "PLTO": "ORTT",
    "IPRTT": "IRTT",
    "OPRTT": "ORTT",
    "ADMITTED": "IRTT",
    "NON-ADMITTED": "ORTT",
    "NONADMITTED": "ORTT",
}

#: PRIORITY TYPE CODE.
PRIORITY_TYPES: Final[dict[str, str]] = {
    "1": "Routine",
    "2": "Urgent",
    "3": "Two week wait",
}

#: Surgical clinical priority (Federation of Surgical Specialty Associations P-codes).
CLINICAL_PRIORITIES: Final[dict[str, str]] = {
    "P1a": "Emergency: within 24 hours",
    "P1b": "Urgent: within 72 hours",
    "P2": "Within 4 weeks",
    "P3": "Within 3 months",
    "P4": "Longer than 3 months",
    "P5": "Patient chose to wait: COVID-19 concerns",
    "P6": "Patient chose to wait: other reasons",
}
#: P5/P6: the patient chose to defer; not waiting for capacity.
DEFERRED_PRIORITIES: Final[frozenset[str]] = frozenset({"P5", "P6"})
#: Queue order of clinical priority (lower sorts first); unknown sorts after P4.
CLINICAL_PRIORITY_RANK: Final[dict[str, int]] = {
    "P1a": 1,
    "P1b": 2,
    "P2": 3,
    "P3": 4,
    "P4": 5,
    "P5": 7,
    "P6": 7,
}
UNKNOWN_PRIORITY_RANK: Final[int] = 6

#: INTENDED MANAGEMENT CODE (patient classification intended at decision to admit).
INTENDED_MANAGEMENT: Final[dict[str, str]] = {
    "1": "Inpatient: at least one night",
    "2": "Day case",
    "3": "Regular day admission",
    "4": "Regular night admission",
    "5": "Inpatient: no overnight stay planned",
    "8": "Not applicable",
    "9": "Not known",
}
DAY_CASE_MANAGEMENT: Final[frozenset[str]] = frozenset({"2"})

#: ASA physical status classification.
ASA_GRADES: Final[tuple[int, ...]] = (1, 2, 3, 4, 5, 6)

#: PIDMAS travel willingness bands (miles; "national" = anywhere in England).
TRAVEL_WILLINGNESS: Final[dict[str, str]] = {
    "50": "Up to 50 miles",
    "100": "Up to 100 miles",
    "national": "Anywhere in England",
}

#: Placeholder NHS numbers that pass the modulus-11 check but identify nobody.
PLACEHOLDER_NHS_NUMBERS: Final[frozenset[str]] = frozenset(
    {str(d) * 10 for d in range(10)} | {"0123456789", "1234567890", "9999999999"}
)

#: Age bands used in reports (inclusive lower bound, label).
AGE_BANDS: Final[tuple[tuple[int, str], ...]] = (
    (0, "0-17"),
    (18, "18-34"),
    (35, "35-49"),
    (50, "50-64"),
    (65, "65-74"),
    (75, "75-84"),
    (85, "85+"),
)

#: Shapes of codes with no closed list, as regular expressions over their canonical spelling
#: (upper case; no spaces; OPCS-4 without its dot).
#: ODS: a site code is 5 characters (RXX01); a provider's own organisation code, 3 to 5.
ODS_SITE_CODE_SHAPE: Final[str] = r"^[A-Z0-9]{3,5}$"
#: OPCS-4 procedure: a letter and three digits (W37.1 → W371).
OPCS4_SHAPE: Final[str] = r"^[A-Z][0-9]{3}$"
#: UK postcode, outward and inward code run together (LS1 4AB → LS14AB).
POSTCODE_SHAPE: Final[str] = r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$"
#: 2011 Lower Layer Super Output Area in England.
LSOA11_SHAPE: Final[str] = r"^E01[0-9]{6}$"
