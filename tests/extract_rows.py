"""Small hand-written canonical extracts for tests: one good row, and variations of it."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

CENSUS = dt.date(2024, 6, 30)


def good_row(n: int = 1, **overrides: str) -> dict[str, str]:
    """A valid open admitted RTT pathway on the census of 2024-06-30."""
    row = {
        "provider_code": "RXX",
        "census_date": CENSUS.isoformat(),
        "pathway_id": f"PPI{n:06d}",
        "local_patient_id": f"L{n:06d}",
        "nhs_number": "9434765919",
        "nhs_number_status": "01",
        "family_name": "Smith",
        "given_name": "Alex",
        "date_of_birth": "1960-03-04",
        "sex": "2",
        "postcode": "LS1 4AB",
        "ethnic_category": "A",
        "rtt_start_date": "2024-01-15",
        "rtt_status": "20",
        "waiting_list_type": "IRTT",
        "treatment_function_code": "110",
        "priority_type": "1",
        "clinical_priority": "P3",
        "procedure_code": "W371",
        "intended_management": "2",
        "asa_grade": "2",
        "bmi": "27.5",
        "learning_disability": "N",
        "interpreter_required": "N",
        "last_validated_date": "2024-05-01",
    }
    row.update(overrides)
    return row


def good_rows(count: int, start: int = 1) -> list[dict[str, str]]:
    return [good_row(n) for n in range(start, start + count)]


def write_csv(path: Path, rows: list[dict[str, str]], delimiter: str = ",", encoding: str = "utf-8") -> Path:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path
