"""Reading extracts: CSV dialects and encodings, XLSX sheets, Parquet types."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from ingest.errors import FeedRefused
from ingest.pipeline import ingest_file
from ingest.profiles import load_profile, parse_profile
from ingest.read import read_extract
from ptl.settings import Settings
from tests.extract_rows import CENSUS, good_row, good_rows, write_csv

CANONICAL = load_profile("canonical")


def test_utf8_with_bom_reads_the_first_header_cleanly(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bom.csv", good_rows(2), encoding="utf-8-sig")
    frame = read_extract(path, CANONICAL).frame
    assert frame.columns[0] == "provider_code"


def test_windows_1252_is_detected_and_decoded(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cp.csv", [good_row(1, family_name="Zoë Müñoz")], encoding="cp1252")
    frame = read_extract(path, CANONICAL).frame
    assert frame.item(0, "family_name") == "Zoë Müñoz"


def test_declared_encoding_is_used(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cp.csv", [good_row(1, family_name="Zoë")], encoding="cp1252")
    profile = parse_profile({"encoding": "windows-1252", "columns": {f: f for f in CANONICAL.columns}})
    assert read_extract(path, profile).frame.item(0, "family_name") == "Zoë"


def test_xlsx_first_sheet_or_a_named_one_with_true_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "ptl.xlsx"
    frame = pl.DataFrame(good_rows(3)).with_columns(
        pl.col("rtt_start_date").str.to_date(), pl.col("asa_grade").cast(pl.Int64))
    import xlsxwriter

    with xlsxwriter.Workbook(path) as workbook:
        pl.DataFrame({"note": ["cover sheet"]}).write_excel(workbook, worksheet="Cover")
        frame.write_excel(workbook, worksheet="PTL")
    named = parse_profile({"sheet": "PTL", "columns": {f: f for f in CANONICAL.columns}})
    extract = read_extract(path, named)
    assert extract.row_offset == 2 and extract.frame.height == 3
    assert extract.frame.item(0, "rtt_start_date").startswith("2024-01-15")
    assert extract.frame.item(0, "asa_grade") == "2"  # not "2.0"
    assert read_extract(path, CANONICAL).frame.columns == ["note"]


def test_parquet_typed_columns_become_text(tmp_path: Path) -> None:
    path = tmp_path / "ptl.parquet"
    pl.DataFrame(good_rows(2)).with_columns(
        pl.col("rtt_start_date").str.to_date(),
        pl.col("bmi").cast(pl.Float64),
        pl.col("asa_grade").cast(pl.Int16),
        (pl.col("learning_disability") == "Y").alias("learning_disability"),
    ).write_parquet(path)
    extract = read_extract(path, CANONICAL)
    row = extract.frame.row(0, named=True)
    assert extract.row_offset == 1
    assert (row["rtt_start_date"], row["bmi"], row["asa_grade"], row["learning_disability"]) == (
        "2024-01-15", "27.5", "2", "N")
    assert isinstance(dt.date.fromisoformat(row["rtt_start_date"]), dt.date)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("ptl.pdf", b"%PDF", "unsupported file type '.pdf'"),
    ("ptl.parquet", b"not parquet", "not a readable PARQUET file"),
    ("ptl.csv", b"", "not a readable CSV file"),
])
def test_unreadable_files_are_refused_with_a_reason(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(FeedRefused, match=message):
        read_extract(path, CANONICAL)


# Typed spreadsheet dates: a date the provider's software typed is that date whatever the
# profile's `date_format` (which applies to dates written as text).

_DATE_COLUMNS = ("census_date", "date_of_birth", "rtt_start_date", "last_validated_date")
_NUMBER_COLUMNS = ("nhs_number", "treatment_function_code", "asa_grade", "bmi", "sex")


def _typed_workbook(path: Path, rows: list[dict[str, str]], text_format: str) -> Path:
    """An XLSX as a PAS writes one: date columns typed as Excel dates (shown DD/MM/YYYY),
    numbers typed as numbers, and `last_validated_date` typed in the first half of the rows and
    text (in `text_format`) in the rest; `decision_to_admit_date` a typed datetime with a time."""
    import xlsxwriter

    columns = [*rows[0], "decision_to_admit_date"]
    with xlsxwriter.Workbook(path) as workbook:
        shown = workbook.add_format({"num_format": "dd/mm/yyyy"})
        stamped = workbook.add_format({"num_format": "dd/mm/yyyy hh:mm"})
        sheet = workbook.add_worksheet("PTL")
        sheet.write_row(0, 0, columns)
        for r, row in enumerate(rows, start=1):
            for c, name in enumerate(columns):
                if name == "decision_to_admit_date":
                    sheet.write_datetime(r, c, dt.datetime(2024, 1, 10, 14, 35), stamped)
                    continue
                value = row[name]
                if name in _DATE_COLUMNS:
                    day = dt.date.fromisoformat(value)
                    if name == "last_validated_date" and r > len(rows) // 2:
                        sheet.write_string(r, c, day.strftime(text_format))
                    else:
                        sheet.write_datetime(r, c, dt.datetime.combine(day, dt.time()), shown)
                elif name in _NUMBER_COLUMNS:
                    sheet.write_number(r, c, float(value))
                else:
                    sheet.write_string(r, c, value)
    return path


@pytest.mark.parametrize(("date_format", "text_format"), [
    (None, "%Y-%m-%d"),  # no format: typed cells ISO, like the text ones
    (None, "%d/%m/%Y"),  # no format: typed cells follow the column's text dates
    ("%d/%m/%Y", "%d/%m/%Y"),  # the case that refused whole files
    ("%Y%m%d", "%Y%m%d"),
])
def test_typed_xlsx_dates_load_as_their_dates_whatever_the_date_format(
        store_engine: Engine, tmp_path: Path, date_format: str | None, text_format: str) -> None:
    rows = [good_row(n, date_of_birth=(dt.date(1940, 1, 1) + dt.timedelta(days=997 * n)).isoformat(),
                     rtt_start_date=(dt.date(2024, 1, 1) + dt.timedelta(days=n)).isoformat(),
                     last_validated_date=(dt.date(2024, 5, 1) + dt.timedelta(days=n)).isoformat())
            for n in range(1, 9)]
    path = _typed_workbook(tmp_path / "ptl.xlsx", rows, text_format)
    raw: dict[str, object] = {"columns": {f: f for f in CANONICAL.columns}}
    if date_format:
        raw["date_format"] = date_format
    result = ingest_file(store_engine, path, provider_code="RXX", profile=parse_profile(raw),
                         source="api", settings=Settings())
    assert (result.status, result.rows_loaded, result.rows_rejected) == ("loaded", 8, 0), result.message
    with store_engine.connect() as connection:
        stored = connection.execute(sa.text(
            "SELECT i.local_patient_id, i.date_of_birth, p.rtt_start_date, p.last_validated_date, "
            "p.decision_to_admit_date, p.census_date, p.asa_grade, i.nhs_number, p.treatment_function_code "
            "FROM pathway p JOIN source_identity i ON i.id = p.source_identity_id ORDER BY 1")).all()
    assert [tuple(_day(v) for v in row) for row in stored] == [
        (row["local_patient_id"], dt.date.fromisoformat(row["date_of_birth"]),
         dt.date.fromisoformat(row["rtt_start_date"]), dt.date.fromisoformat(row["last_validated_date"]),
         dt.date(2024, 1, 10), CENSUS, 2, "9434765919", "110")
        for row in rows]


def _day(value: object) -> object:
    """A stored date as a date (SQLite hands some back as text)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[:4].isdigit():
        return dt.date.fromisoformat(value[:10])
    return value


def test_a_text_date_in_another_form_is_still_held_to_the_profiles_format(tmp_path: Path) -> None:
    """Only typed cells are freed from `date_format`: text is the provider's own spelling."""
    import xlsxwriter

    path = tmp_path / "ptl.xlsx"
    with xlsxwriter.Workbook(path) as workbook:
        sheet = workbook.add_worksheet()
        sheet.write_row(0, 0, ["rtt_start_date", "note"])
        sheet.write_datetime(1, 0, dt.datetime(2024, 1, 15), workbook.add_format({"num_format": "d mmm yyyy"}))
        sheet.write_string(2, 0, "1961-03-12 00:00:00")  # text that looks like a typed cell
        sheet.write_number(3, 0, 45000)  # a plain number is not a date
        sheet.write_string(1, 1, "x")
    profile = parse_profile({"date_format": "%d/%m/%Y", "columns": {f: f for f in CANONICAL.columns}})
    assert read_extract(path, profile).frame.get_column("rtt_start_date").to_list() == [
        "15/01/2024", "1961-03-12 00:00:00", "45000"]


@pytest.mark.parametrize("date_format", [None, "%d/%m/%Y"])
def test_parquet_date_and_datetime_columns_load_whatever_the_date_format(
        store_engine: Engine, tmp_path: Path, date_format: str | None) -> None:
    path = tmp_path / "ptl.parquet"
    pl.DataFrame(good_rows(3)).with_columns(
        pl.col("rtt_start_date").str.to_date(),
        pl.col("census_date").str.to_date(),
        pl.col("date_of_birth").str.to_datetime("%Y-%m-%d"),
        pl.col("nhs_number").cast(pl.Int64),
        # a date column left as text is in the profile's format
        pl.col("last_validated_date").str.to_date().dt.strftime(date_format or "%Y-%m-%d"),
    ).write_parquet(path)
    raw: dict[str, object] = {"columns": {f: f for f in CANONICAL.columns}}
    if date_format:
        raw["date_format"] = date_format
    result = ingest_file(store_engine, path, provider_code="RXX", profile=parse_profile(raw),
                         settings=Settings())
    assert (result.status, result.rows_loaded) == ("loaded", 3), result.message
    with store_engine.connect() as connection:
        stored = connection.execute(sa.text(
            "SELECT p.rtt_start_date, i.date_of_birth, i.nhs_number FROM pathway p "
            "JOIN source_identity i ON i.id = p.source_identity_id")).all()
    assert {tuple(_day(v) for v in row) for row in stored} == {
        (dt.date(2024, 1, 15), dt.date(1960, 3, 4), "9434765919")}


@pytest.mark.parametrize(("content", "reason"), [
    (b"nhs_number,family_name\n9434765919,Smith\n9434765919,Smith,LS1 4AB,1960-03-04\n",
     "a line has more fields than the header line"),
    (b'nhs_number,family_name\n9434765919,"Smith\n9434765919,Smith LS1 4AB 1960-03-04\n',
     "check it is delimited text with one header line"),
], ids=["ragged", "unclosed-quote"])
def test_reader_errors_quote_nothing_from_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    """The reader's own message quoted the offending line (a patient's values) into the feed
    record, the API and drop-folder sidecars."""
    path = tmp_path / "ptl.csv"
    path.write_bytes(content)
    with pytest.raises(FeedRefused) as refused:
        read_extract(path, CANONICAL)
    message = str(refused.value)
    assert f"ptl.csv: not a readable CSV file ({reason})" == message
    for value in ("9434765919", "Smith", "LS1 4AB", "1960-03-04"):
        assert value not in message


def test_a_sheet_the_workbook_lacks_is_named_in_the_refusal(tmp_path: Path) -> None:
    path = tmp_path / "ptl.xlsx"
    pl.DataFrame(good_rows(2)).write_excel(path, worksheet="Cover")
    profile = parse_profile({"sheet": "PTL", "columns": {f: f for f in CANONICAL.columns}})
    with pytest.raises(FeedRefused, match=r"ptl.xlsx: the workbook has no sheet named 'PTL' \(the profile's `sheet`\)"):
        read_extract(path, profile)
