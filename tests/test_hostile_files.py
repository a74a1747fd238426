"""Hostile files: whatever arrives, the caller lives, holds a bounded amount of memory, and
answers with a refusal that names the problem and quotes nothing from the file.

Workbooks are built part by part (a PAS never writes these; an attacker does), and the child
process's limits are exercised for real: files that would need gigabytes are read under a small
memory limit and must come back as refusals.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from ingest.errors import FeedRefused
from ingest.pipeline import ingest_file
from ingest.profiles import load_profile
from ingest.read import ReadLimits, read_extract
from ingest.untrusted import read_in_child
from ptl.settings import Settings
from tests.extract_rows import good_rows, write_csv

CANONICAL = load_profile("canonical")
#: Values planted in hostile files: no refusal may repeat them.
PATIENT_VALUES = ("9434765919", "Smith", "LS1 4AB", "1960-03-04", "L000001")

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def workbook_bytes(sheet_data: str, *, dimension: str | None = None, shared: list[str] | None = None,
                   unique_count: int | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """A minimal XLSX, part by part: one sheet holding `sheet_data` (its `<sheetData>` rows)."""
    strings = shared or ["nhs_number"]
    count = len(strings) if unique_count is None else unique_count
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/'
            '2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
            'package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sharedStrings+xml"/></Types>'),
        "_rels/.rels": (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_RELS}">'
                        f'<Relationship Id="rId1" Type="{_DOC}/officeDocument" Target="xl/workbook.xml"/>'
                        "</Relationships>"),
        "xl/workbook.xml": (f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{_MAIN}" '
                            f'xmlns:r="{_DOC}"><sheets><sheet name="PTL" sheetId="1" r:id="rId1"/>'
                            "</sheets></workbook>"),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_RELS}">'
            f'<Relationship Id="rId1" Type="{_DOC}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_DOC}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>"),
        "xl/worksheets/sheet1.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_MAIN}">'
            + (f'<dimension ref="{dimension}"/>' if dimension else "")
            + f"<sheetData>{sheet_data}</sheetData></worksheet>"),
        "xl/sharedStrings.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}" count="{count}" uniqueCount="{count}">'
            + "".join(f"<si><t>{s}</t></si>" for s in strings) + "</sst>"),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


#: A header and one patient's row, as inline strings.
_PATIENT_ROWS = ('<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="inlineStr"><is><t>family_name</t></is></c></row>'
                 '<row r="2"><c r="A2" t="inlineStr"><is><t>9434765919</t></is></c>'
                 '<c r="B2" t="inlineStr"><is><t>Smith</t></is></c></row>')


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _assert_value_free(message: str) -> None:
    for value in PATIENT_VALUES:
        assert value not in message


def _refused_in_child(path: Path, *, memory_mb: int = 1024, seconds: float = 60,
                      limits: ReadLimits | None = None) -> FeedRefused:
    with pytest.raises(FeedRefused) as refused:
        read_in_child(path, CANONICAL, limits or ReadLimits(), memory_mb=memory_mb, seconds=seconds)
    _assert_value_free(str(refused.value))
    return refused.value


def test_a_workbook_declaring_xfd1048576_is_refused_before_parsing_and_recorded(
        store_engine: Engine, tmp_path: Path) -> None:
    """The 8 KB upload that aborted the API process (calamine asked for 512 GiB)."""
    path = _write(tmp_path / "ptl.xlsx", workbook_bytes(_PATIENT_ROWS, dimension="A1:XFD1048576"))
    result = ingest_file(store_engine, path, provider_code="RXX", profile="canonical", source="api",
                         settings=Settings())
    assert (result.status, result.refusal_kind) == ("refused", "too_large")
    assert "declares 1,048,576 rows × 16,384 columns, more than the 40,000,000 cells allowed" in result.message
    _assert_value_free(result.message)
    with store_engine.connect() as connection:
        status, message = connection.execute(sa.text("SELECT status, message FROM feed WHERE id = :id"),
                                             {"id": result.feed_id}).one()
    assert status == "refused" and "PTL_READ_MAX_CELLS" in message


def test_a_cell_addressed_at_xfd1048576_is_refused_within_the_memory_limit(tmp_path: Path) -> None:
    """No declared extent to check: the reader itself asks for 512 GiB, in the child, and the
    child's memory limit turns that into a refusal."""
    rows = _PATIENT_ROWS + '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
    path = _write(tmp_path / "ptl.xlsx", workbook_bytes(rows))
    refusal = _refused_in_child(path)
    assert refusal.kind == "too_large"
    assert "could not be read within the memory limit of 1,024 MB" in str(refusal)


def test_a_workbook_that_declares_billions_of_shared_strings_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "ptl.xlsx", workbook_bytes(_PATIENT_ROWS, unique_count=2_000_000_000))
    with pytest.raises(FeedRefused, match="declares more shared strings than the 40,000,000 cells allowed"):
        read_extract(path, CANONICAL)


def test_a_shared_strings_bomb_is_refused(tmp_path: Path) -> None:
    """One long shared string used by a few hundred cells is copied into each (300 KB → 9 GB)."""
    noise = np.random.default_rng(1).integers(ord("a"), ord("z") + 1, 200_000, dtype=np.uint8).tobytes().decode()
    cells = "".join(f'<row r="{r}"><c r="A{r}" t="s"><v>1</v></c></row>' for r in range(2, 400))
    path = _write(tmp_path / "ptl.xlsx", workbook_bytes('<row r="1"><c r="A1" t="s"><v>0</v></c></row>' + cells,
                                                         shared=["nhs_number", noise]))
    with pytest.raises(FeedRefused, match="a shared string is longer than 32,767 characters") as refused:
        read_extract(path, CANONICAL)
    assert refused.value.kind == "too_large"


def test_a_shared_strings_bomb_inside_every_check_is_stopped_by_the_memory_limit(tmp_path: Path) -> None:
    """Strings just inside Excel's limit, each used by many cells: only the child's memory limit
    can tell this from a real (if strange) workbook, and it must, without harm to the caller."""
    noise = np.random.default_rng(2).integers(ord("a"), ord("z") + 1, 30_000, dtype=np.uint8).tobytes().decode()
    cells = "".join(f'<row r="{r}"><c r="A{r}" t="s"><v>1</v></c><c r="B{r}" t="s"><v>1</v></c></row>'
                    for r in range(2, 30_000))
    path = _write(tmp_path / "ptl.xlsx", workbook_bytes('<row r="1"><c r="A1" t="s"><v>0</v></c></row>' + cells,
                                                         shared=["nhs_number", noise]))
    assert path.stat().st_size < 1_000_000  # under a megabyte, needs 1.8 GB of cells
    refusal = _refused_in_child(path, memory_mb=512)
    assert "could not be read within the memory limit of 512 MB" in str(refusal)


def test_a_zip_bomb_is_refused_by_its_compression_ratio(tmp_path: Path) -> None:
    path = _write(tmp_path / "ptl.xlsx", workbook_bytes(_PATIENT_ROWS, extra={"xl/media/image1.bin": bytes(50 << 20)}))
    assert path.stat().st_size < 200_000
    with pytest.raises(FeedRefused, match="likely zip bomb: a part unpacks to more than 200 times") as refused:
        read_extract(path, CANONICAL)
    assert refused.value.kind == "too_large"


def test_a_workbook_that_unpacks_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    """Incompressible parts, so the ratio is innocent: the unpacked total is what is capped."""
    noise = np.random.default_rng(3).bytes(3 << 20)
    path = _write(tmp_path / "ptl.xlsx", workbook_bytes(_PATIENT_ROWS, extra={"xl/media/image1.bin": noise}))
    with pytest.raises(FeedRefused, match="unpacks to more than 2 MB") as refused:
        read_extract(path, CANONICAL, limits=ReadLimits(max_unpacked_bytes=2 << 20))
    assert refused.value.kind == "too_large"
    assert read_extract(path, CANONICAL).frame.height == 1  # the default limit admits it


def test_a_part_that_unpacks_to_more_than_it_declares_is_caught_by_unpacking(tmp_path: Path) -> None:
    """Sizes in a zip's headers are the sender's word: a part that lies about its size is
    measured as it unpacks (or fails its checksum)."""
    content = workbook_bytes(_PATIENT_ROWS, extra={"xl/media/image1.bin": np.random.default_rng(4).bytes(1 << 20)})
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        info = archive.getinfo("xl/media/image1.bin")
    # Rewrite the declared size (central directory and local header) to 1 KB.
    small = (1024).to_bytes(4, "little")
    real = info.file_size.to_bytes(4, "little")
    lying = content.replace(real, small)
    assert lying != content
    path = _write(tmp_path / "ptl.xlsx", lying)
    refusal = _refused_in_child(path)
    assert refusal.kind in ("unreadable", "too_large")
    assert "xlsx" in str(refusal).lower()


@pytest.mark.parametrize(("content", "expected"), [
    (lambda: workbook_bytes(_PATIENT_ROWS)[:900], "not an XLSX workbook (it is not a zip archive, or it is cut short)"),
    (lambda: b"nhs_number,family_name\n9434765919,Smith\n", "not an XLSX workbook (it is not a zip archive"),
    (lambda: _zip({"word/document.xml": b"<w/>", "[Content_Types].xml": b"<Types/>"}),
     "not an XLSX workbook (perhaps another kind of file renamed .xlsx)"),
    (lambda: _corrupt(workbook_bytes(_PATIENT_ROWS)), "not a readable XLSX workbook (a part is damaged"),
    (lambda: _zip({f"xl/part{i}.xml": b"" for i in range(10_001)}), "10,001 parts"),
], ids=["truncated", "csv-renamed", "not-a-workbook", "corrupt-part", "too-many-parts"])
def test_files_that_are_not_workbooks_are_refused_with_a_reason(tmp_path: Path, content: object,
                                                                expected: str) -> None:
    path = _write(tmp_path / "ptl.xlsx", content())  # type: ignore[operator]
    refusal = _refused_in_child(path)
    assert expected in str(refusal)
    assert refusal.kind == "unreadable"


def test_a_workbook_whose_sheet_is_not_xml_is_refused_without_quoting_it(tmp_path: Path) -> None:
    broken = '<row r="2"><c r="A2" t="inlineStr"><is><t>9434765919 Smith LS1 4AB</t></x></c></row>'
    path = _write(tmp_path / "ptl.xlsx", workbook_bytes(_PATIENT_ROWS + broken))
    refusal = _refused_in_child(path)
    assert str(refusal) == "ptl.xlsx: not a readable XLSX file (it is damaged or not an Excel workbook)"


def _zip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _corrupt(content: bytes) -> bytes:
    """Flip bytes inside the sheet's compressed data (its checksum then fails)."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 5
    damaged = bytearray(content)
    for i in range(start, start + 8):
        damaged[i] ^= 0x5A
    return bytes(damaged)


@pytest.mark.parametrize(("column", "kind"), [
    (pa.array([[1, 2], [3]], type=pa.list_(pa.int64())), "nested values"),
    (pa.array([{"nhs": "9434765919"}, {"nhs": "x"}]), "nested values"),
    (pa.array([b"9434765919", b"\xff\xfe"], type=pa.binary()), "binary data"),
])
def test_parquet_with_nested_or_binary_columns_is_refused(tmp_path: Path, column: pa.Array, kind: str) -> None:
    path = tmp_path / "ptl.parquet"
    pq.write_table(pa.table({"family_name": ["Smith", "Jones"], "odd": column}), path)
    refusal = _refused_in_child(path)
    assert f"column 2 holds {kind}" in str(refusal) and refusal.kind == "unreadable"


def test_a_parquet_file_that_unpacks_to_gigabytes_is_refused_within_the_memory_limit(tmp_path: Path) -> None:
    """Fifty million rows of one repeated value pack into a few kilobytes."""
    path = tmp_path / "ptl.parquet"
    repeated = pa.DictionaryArray.from_arrays(pa.array(np.zeros(50_000_000, dtype=np.int8)), pa.array(["Smith"]))
    pq.write_table(pa.table({"family_name": repeated, "nhs_number": repeated}), path)
    del repeated
    assert path.stat().st_size < 1_000_000
    refusal = _refused_in_child(path, memory_mb=512)
    assert "could not be read within the memory limit of 512 MB" in str(refusal)


def test_a_csv_of_gigantic_line_counts_is_refused_within_the_memory_limit(tmp_path: Path) -> None:
    path = tmp_path / "ptl.csv"
    with path.open("wb") as handle:
        handle.write(b"a,b,c,d,e,f,g,h,i,j,k,l\n")
        handle.write(b",,,,,,,,,,,\n" * 6_000_000)
    refusal = _refused_in_child(path, memory_mb=512)
    assert "could not be read within the memory limit of 512 MB" in str(refusal)


def test_a_read_that_overruns_its_time_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ptl.csv", good_rows(5))
    refusal = _refused_in_child(path, seconds=0.05)
    assert "could not be read within the time limit of 0.05 s" in str(refusal)
    assert read_in_child(path, CANONICAL, ReadLimits(), memory_mb=1024, seconds=60).frame.height == 5


_CALLER = """
import json, sys
from pathlib import Path
from ingest.pipeline import ingest_file
from ptl.settings import Settings
from ptl.store import migrate
from ptl.store.engine import make_engine
engine = make_engine(sys.argv[1])
migrate.upgrade(engine)
result = ingest_file(engine, Path(sys.argv[2]), provider_code="RXX", profile="canonical", source="api",
                     settings=Settings())
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"status": result.status, "kind": result.refusal_kind, "message": result.message,
                  "peak_mib": peak}))
"""


def _ingest_in_a_caller(tmp_path: Path, path: Path, name: str) -> dict[str, object]:
    import json

    done = subprocess.run([sys.executable, "-c", _CALLER, f"sqlite:///{tmp_path / name}.sqlite3", str(path)],
                          capture_output=True, check=True, timeout=300, env={**os.environ})
    answer: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return answer


def test_a_csv_with_a_150_mb_field_is_refused_and_the_caller_holds_none_of_it(tmp_path: Path) -> None:
    """The field that became a 157 MB patient name: refused, and the process that ingests it
    (the API's) peaks no higher than it does for a five-row file."""
    small = write_csv(tmp_path / "small.csv", good_rows(5))
    huge = tmp_path / "huge.csv"
    rows = good_rows(2)
    with huge.open("w") as handle:
        handle.write(",".join(rows[0]) + "\n")
        handle.write(",".join(rows[0].values()) + "\n")
        handle.write(",".join(rows[1].values()).replace("Smith", "Smith" + "x" * (150 << 20)) + "\n")
    baseline = _ingest_in_a_caller(tmp_path, small, "small")
    answer = _ingest_in_a_caller(tmp_path, huge, "huge")
    assert baseline["status"] == "loaded"
    assert (answer["status"], answer["kind"]) == ("refused", "too_large")
    assert "a cell in column 7 is longer than 32,767 characters" in str(answer["message"])
    _assert_value_free(str(answer["message"]))
    assert int(answer["peak_mib"]) - int(baseline["peak_mib"]) < 40  # type: ignore[call-overload]


def test_a_hostile_upload_leaves_the_caller_able_to_load_the_next_file(store_engine: Engine, tmp_path: Path) -> None:
    rows = _PATIENT_ROWS + '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
    hostile = _write(tmp_path / "hostile.xlsx", workbook_bytes(rows))
    settings = Settings(read_memory_mb=1024)
    refused = ingest_file(store_engine, hostile, provider_code="RXX", profile="canonical", source="api",
                          settings=settings)
    assert refused.status == "refused" and refused.feed_id is not None
    good = pl.DataFrame(good_rows(3))
    path = tmp_path / "good.xlsx"
    good.write_excel(path)
    loaded = ingest_file(store_engine, path, provider_code="RXX", profile="canonical", source="api",
                         settings=settings)
    assert (loaded.status, loaded.rows_loaded) == ("loaded", 3), loaded.message
