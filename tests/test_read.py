"""Reading extracts: CSV dialects and encodings, XLSX sheets, Parquet types."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ingest.errors import FeedRefused
from ingest.profiles import load_profile, parse_profile
from ingest.read import read_extract
from tests.extract_rows import good_row, good_rows, write_csv

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
