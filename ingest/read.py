"""Reading provider extracts (CSV, XLSX, Parquet) into an all-text Polars frame.

Every value becomes text (or null) so that validation treats every format alike and can quote
the value it rejects exactly as the provider sent it. Dates typed by Excel or Parquet become
text in the profile's `date_format` (ISO when it sets none), so validation reads them as the
dates they are; whole-number floats (Excel's way of holding codes) lose their ".0".

Files are untrusted: an XLSX is checked before it is parsed (its zip parts, their sizes and
compression, each sheet's declared extent, the shared strings) and every cell is held to
Excel's own limit of 32,767 characters. Refusals never quote a value from the file: reader
errors are explained in fixed words. `ingest.untrusted` runs this module in a child process
with memory and time limits.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ingest.errors import FeedRefused
from ingest.profiles import Profile

FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx",
           ".parquet": "parquet", ".pq": "parquet"}
_DELIMITERS = (",", ";", "\t", "|")

#: Excel's own limit on the characters of one cell: no PTL field comes near it, and a longer
#: value is not an extract's (a 150 MB "name" would be held, stored and served in full).
MAX_CELL_CHARS = 32_767
#: More parts than any workbook a PAS writes (a sheet, its styles, strings, themes, metadata).
MAX_XLSX_PARTS = 10_000
#: Sheet XML compresses 10-20:1; a zip bomb compresses about 1,000:1.
MAX_COMPRESSION_RATIO = 200
#: Parts smaller than this are not held to the ratio (tiny XML compresses well and is harmless).
_RATIO_CHECKED_FROM = 1 << 20
#: How calamine writes a typed date or datetime cell when asked for text.
_TYPED_DATETIME = r"^[+-]?\d{4,}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$"
_DIMENSION = re.compile(rb'<dimension[^>]*\sref="\$?([A-Z]{1,3})\$?(\d{1,7})(?::\$?([A-Z]{1,3})\$?(\d{1,7}))?"')
_SST_COUNTS = re.compile(rb'<sst\b[^>]*>')
_COUNT_ATTRIBUTE = re.compile(rb'\s(?:count|uniqueCount)="(\d+)"')


@dataclass(frozen=True)
class Extract:
    """A file as read: all-text columns, with where each row sits in the file."""

    frame: pl.DataFrame
    file_format: str
    #: number to add to a 0-based data-row index to give the row number a person sees
    row_offset: int


@dataclass(frozen=True)
class ReadLimits:
    """What a file may make the reader hold (settings `PTL_READ_MAX_CELLS` and
    `PTL_READ_MAX_UNPACKED_MB`). The defaults admit a full 1,048,576-row sheet of 38 columns."""

    #: most cells (rows × columns) an XLSX sheet may declare, and shared strings it may hold
    max_cells: int = 40_000_000
    #: most bytes the parts of an XLSX may unpack to
    max_unpacked_bytes: int = 3072 << 20


def sha256_of(source: Path | bytes) -> str:
    """The file's sha256 (hex), from its bytes or read from its path a megabyte at a time."""
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    path = source
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FeedRefused(
            f"{path.name}: unsupported file type '{path.suffix}'; send CSV, XLSX or Parquet",
            kind="unreadable",
        )
    return fmt


def read_extract(path: Path, profile: Profile, data: bytes | None = None,
                 limits: ReadLimits | None = None) -> Extract:
    """Read `path` (or its bytes, when the caller has them) as text columns; refuse the whole
    file if it cannot be read or exceeds `limits`."""
    fmt = file_format_of(path)
    limits = limits or ReadLimits()
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FeedRefused(f"{path.name}: cannot be read ({exc.strerror})", kind="unreadable") from None
    try:
        if fmt == "csv":
            frame = _read_csv(data, profile)
            offset = 2  # header is spreadsheet row 1
        elif fmt == "xlsx":
            check_workbook(data, limits)
            frame = _read_xlsx(data, profile)
            offset = 2
        else:
            frame = _read_parquet(data, profile)
            offset = 1  # Parquet has no header row: record numbers from 1
    except FeedRefused as refusal:
        raise FeedRefused(f"{path.name}: {refusal}", kind=refusal.kind) from None
    except MemoryError:
        raise FeedRefused(f"{path.name}: the file is too large to read in the memory allowed",
                          kind="too_large") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unreadable
        # The reader's own words can quote the file's content (a line, a cell): never pass them on.
        raise FeedRefused(f"{path.name}: not a readable {fmt.upper()} file ({_reader_failure(fmt, exc)})",
                          kind="unreadable") from None
    _check_cell_lengths(path.name, frame)
    frame = _without_nul(frame)
    if frame.height == 0:
        raise FeedRefused(f"{path.name}: the file has no data rows", kind="empty")
    return Extract(frame=frame, file_format=fmt, row_offset=offset)


def _reader_failure(fmt: str, exc: BaseException) -> str:
    """A value-free account of why a reader failed, from the kind of failure."""
    text = str(exc).lower()
    if isinstance(exc, pl.exceptions.NoDataError) or "empty" in text:
        return "it is empty"
    if fmt == "csv":
        if "more fields" in text or "ragged" in text or "fields than" in text:
            return "a line has more fields than the header line"
        if "utf-8" in text or "utf8" in text or isinstance(exc, UnicodeError):
            return "its text is not in the declared encoding"
        if "duplicate" in text:
            return "two columns have the same header"
        if "quot" in text:
            return "a quoted field is not closed"
        return "check it is delimited text with one header line"
    if fmt == "xlsx":
        return "it is damaged or not an Excel workbook"
    return "it is damaged or not a Parquet file"


def _check_cell_lengths(name: str, frame: pl.DataFrame) -> None:
    """Refuse a file with a cell longer than Excel allows. Byte lengths are free to read (string
    views hold them); characters are counted only in a column whose bytes could exceed the limit."""
    if frame.width == 0 or frame.height == 0:
        return
    longest = frame.select(pl.all().str.len_bytes().max()).row(0)
    for position, (column, length) in enumerate(zip(frame.columns, longest, strict=True), start=1):
        if length is not None and length > MAX_CELL_CHARS and \
                (frame.get_column(column).str.len_chars().max() or 0) > MAX_CELL_CHARS:  # type: ignore[operator]
            raise FeedRefused(
                f"{name}: a cell in column {position} is longer than {MAX_CELL_CHARS:,} characters "
                "(Excel's limit for one cell); no PTL field is anywhere near that long", kind="too_large")


def _sniff_delimiter(data: bytes) -> str:
    end = data.find(b"\n")
    header = data[: end if end >= 0 else len(data)].decode("utf-8", errors="replace")
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv(data: bytes, profile: Profile) -> pl.DataFrame:
    """UTF-8 (BOM allowed) unless declared otherwise; a file that is not valid UTF-8 is read
    as Windows-1252, the usual encoding of extracts saved by Excel on Windows."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    delimiter = profile.delimiter or _sniff_delimiter(data)

    def parse(text: bytes) -> pl.DataFrame:
        # The bytes themselves, not a BytesIO over them, which Polars copies first.
        return pl.read_csv(text, separator=delimiter, infer_schema=False,
                           truncate_ragged_lines=False, raise_if_empty=True)

    if profile.encoding not in (None, "utf-8"):
        return parse(data.decode(profile.encoding).encode("utf-8"))
    try:
        return parse(data)  # Polars checks the UTF-8 itself, at no extra pass
    except pl.exceptions.ComputeError as exc:
        if "utf-8" not in str(exc).lower() and "utf8" not in str(exc).lower():
            raise
        if profile.encoding == "utf-8":
            raise FeedRefused("the file is declared UTF-8 but is not valid UTF-8", kind="unreadable") from None
        return parse(data.decode("cp1252", errors="replace").encode("utf-8"))


def check_workbook(data: bytes, limits: ReadLimits) -> None:
    """Refuse an XLSX that is not a workbook or would make the reader hold too much, before it
    is parsed: its parts (count, names, declared and actual unpacked sizes, compression), each
    sheet's declared extent and the shared strings' declared counts and longest text."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise FeedRefused("not an XLSX workbook (it is not a zip archive, or it is cut short)",
                          kind="unreadable") from None
    with archive:
        parts = archive.infolist()
        if len(parts) > MAX_XLSX_PARTS:
            raise FeedRefused(f"not an XLSX workbook ({len(parts):,} parts; a workbook has a few dozen)",
                              kind="unreadable")
        names = [part.filename for part in parts]
        if len(set(names)) != len(names):
            raise FeedRefused("not an XLSX workbook (a part appears twice in the archive)", kind="unreadable")
        if "[Content_Types].xml" not in names or "xl/workbook.xml" not in names:
            raise FeedRefused("not an XLSX workbook (perhaps another kind of file renamed .xlsx)",
                              kind="unreadable")
        declared = sum(part.file_size for part in parts)
        if declared > limits.max_unpacked_bytes:
            raise FeedRefused(_unpacked_too_large(declared, limits), kind="too_large")
        for part in parts:
            if part.file_size >= _RATIO_CHECKED_FROM and \
                    part.file_size > MAX_COMPRESSION_RATIO * max(part.compress_size, 1):
                raise FeedRefused(
                    f"refused as a likely zip bomb: a part unpacks to more than {MAX_COMPRESSION_RATIO} "
                    "times its packed size", kind="too_large")
        unpacked = 0
        for part in parts:
            unpacked += _check_part(archive, part, limits, limits.max_unpacked_bytes - unpacked)


def _unpacked_too_large(size: int, limits: ReadLimits) -> str:
    return (f"the workbook unpacks to more than {limits.max_unpacked_bytes >> 20:,} MB "
            f"({size >> 20:,} MB or more; setting PTL_READ_MAX_UNPACKED_MB)")


def _part_chunks(archive: zipfile.ZipFile, part: zipfile.ZipInfo, allowance: int,
                 limits: ReadLimits) -> Iterator[bytes]:
    """The unpacked bytes of one part, a megabyte at a time, refusing as soon as they exceed
    what is left of the allowance (a part may unpack to more than its header declares)."""
    seen = 0
    try:
        with archive.open(part) as stream:
            while chunk := stream.read(1 << 20):
                seen += len(chunk)
                if seen > allowance:
                    raise FeedRefused(_unpacked_too_large(limits.max_unpacked_bytes + 1, limits),
                                      kind="too_large")
                yield chunk
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError,
            NotImplementedError, RuntimeError, ValueError):
        raise FeedRefused("not a readable XLSX workbook (a part is damaged or encrypted)",
                          kind="unreadable") from None


def _check_part(archive: zipfile.ZipFile, part: zipfile.ZipInfo, limits: ReadLimits, allowance: int) -> int:
    """Unpack one part (checking its true size and checksum) and check what the reader would
    trust in it. Returns its unpacked size."""
    name = part.filename
    is_sheet = name.startswith("xl/worksheets/") and name.endswith(".xml")
    is_strings = name == "xl/sharedStrings.xml"
    size = 0
    head = b""
    longest_text = 0
    since_tag = 0  # characters since the last '<' at the end of the previous chunk
    for chunk in _part_chunks(archive, part, allowance, limits):
        size += len(chunk)
        if len(head) < 65_536 and (is_sheet or is_strings):
            head += chunk[: 65_536 - len(head)]
            if is_sheet:
                _check_sheet_extent(head, limits)
            else:
                _check_string_counts(head, limits)
        if is_strings:
            # The longest run of text between tags, vectorised over the chunk: the reader copies
            # a shared string into every cell that uses it, so one long string used by many cells
            # is a memory bomb in a small file.
            tags = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == ord("<"))
            if tags.size == 0:
                since_tag += len(chunk)
            else:
                gaps = np.diff(tags)
                longest_text = max(longest_text, since_tag + int(tags[0]),
                                   int(gaps.max()) if gaps.size else 0)
                since_tag = len(chunk) - int(tags[-1])
            longest_text = max(longest_text, since_tag)
            # UTF-8 takes at most 4 bytes a character: beyond this no text node can fit the limit.
            if longest_text > 4 * MAX_CELL_CHARS + 64:
                raise FeedRefused(
                    f"a shared string is longer than {MAX_CELL_CHARS:,} characters (Excel's limit "
                    "for one cell)", kind="too_large")
    return size


def _column_number(letters: bytes) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + (letter - ord("A") + 1)
    return number


def _check_sheet_extent(head: bytes, limits: ReadLimits) -> None:
    """A sheet's declared extent (`<dimension ref="A1:AH250001"/>`, before its data)."""
    if b"<sheetData" in head:
        head = head[: head.index(b"<sheetData")]
    found = _DIMENSION.search(head)
    if found is None:
        return
    first_col, first_row, last_col, last_row = found.groups()
    rows = abs(int(last_row or first_row) - int(first_row)) + 1
    columns = abs(_column_number(last_col or first_col) - _column_number(first_col)) + 1
    if rows * columns > limits.max_cells:
        raise FeedRefused(
            f"a sheet declares {rows:,} rows × {columns:,} columns, more than the "
            f"{limits.max_cells:,} cells allowed (setting PTL_READ_MAX_CELLS)", kind="too_large")


def _check_string_counts(head: bytes, limits: ReadLimits) -> None:
    """The shared strings' declared counts, which the reader allocates for up front."""
    found = _SST_COUNTS.search(head)
    if found is None:
        return
    for count in _COUNT_ATTRIBUTE.findall(found.group(0)):
        if len(count) > 12 or int(count) > limits.max_cells:
            raise FeedRefused(
                f"the workbook declares more shared strings than the {limits.max_cells:,} cells "
                "allowed (setting PTL_READ_MAX_CELLS)", kind="too_large")


def _read_xlsx(data: bytes, profile: Profile) -> pl.DataFrame:
    """Every cell as text so codes keep their form; empty rows kept so row numbers stay true.
    Typed date cells are written in the profile's date format (see `_typed_dates`)."""
    import fastexcel

    reader = fastexcel.read_excel(data)
    sheet: str | int = profile.sheet or 0
    try:
        text = pl.DataFrame(reader.load_sheet(sheet, dtypes="string", eager=True))
    except fastexcel.SheetNotFoundError:
        raise FeedRefused(f"the workbook has no sheet named '{profile.sheet}' (the profile's `sheet`)",
                          kind="unreadable") from None
    if text.width == 0:
        return text
    text = text.cast({c: pl.String for c, dtype in text.schema.items() if dtype != pl.String})
    text = _typed_dates(reader, sheet, text, profile)
    # Unnamed columns with nothing in them are formatting, as Polars' own reader has it.
    text = text.drop([c for c in text.columns
                      if (c == "" or re.fullmatch(r"__UNNAMED__\d+", c)) and text[c].null_count() == text.height])
    # Trailing blank rows are formatting, not data.
    non_empty = text.select(pl.any_horizontal(pl.all().is_not_null())).to_series()
    positions = non_empty.arg_true()
    return text.head(int(positions[-1]) + 1 if len(positions) else 0)


def _typed_dates(reader: object, sheet: str | int, text: pl.DataFrame, profile: Profile) -> pl.DataFrame:
    """Write each typed date cell as a date in its column's format.

    Asked for text, the reader writes a typed date cell as '1961-03-12 00:00:00'. A column whose
    every value has that form is read as those dates (text in that form can only mean the same
    date). A column where only some do is read again as datetimes, which gives typed cells and
    nothing for text cells (but turns plain numbers into dates: a typed cell is one with both),
    so text in the column keeps its own spelling. The format is the profile's `date_format`;
    without one, the format of the column's text dates (so a column half typed, half text is
    in one format), or ISO. A second read costs as much as the first: only such mixed columns
    pay it."""
    hits = text.select(pl.all().str.contains(_TYPED_DATETIME).sum()).row(0)
    filled = text.select(pl.all().count()).row(0)
    whole = [i for i, (hit, count) in enumerate(zip(hits, filled, strict=True)) if hit and hit == count]
    mixed = [i for i, (hit, count) in enumerate(zip(hits, filled, strict=True)) if 0 < hit < count]
    moments = {i: text.to_series(i).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False) for i in whole}
    if mixed:
        typed = pl.DataFrame(reader.load_sheet(  # type: ignore[attr-defined]
            sheet, dtypes="datetime", use_columns=mixed, eager=True))
        if typed.height == text.height and typed.width == len(mixed):
            moments.update(zip(mixed, typed.get_columns(), strict=True))
    if not moments:
        return text
    from ingest.validate import column_date_format  # the one rule for a column's date format

    replaced: list[pl.Series] = []
    for position, moment in sorted(moments.items()):
        cell = text.to_series(position)
        is_typed = (moment.is_not_null() & cell.str.contains(_TYPED_DATETIME)).fill_null(False)
        text_dates = cell.filter(~is_typed).drop_nulls()
        fmt = profile.date_format or (
            column_date_format(text_dates, None)[0] if text_dates.len() else None) or "%Y-%m-%d"
        replaced.append(moment.dt.strftime(fmt).zip_with(is_typed, cell).alias(cell.name))
    return text.with_columns(replaced)


def _read_parquet(data: bytes, profile: Profile) -> pl.DataFrame:
    """A Parquet file's columns as text; nested and binary columns are refused (a PTL extract
    holds one plain value per cell)."""
    schema = pl.read_parquet_schema(io.BytesIO(data))
    for position, dtype in enumerate(schema.values(), start=1):
        if dtype.is_nested() or dtype == pl.Binary or dtype == pl.Object:
            kind = "binary data" if dtype == pl.Binary else "nested values (lists or structures)"
            raise FeedRefused(f"column {position} holds {kind}; a PTL extract holds one plain value "
                              "(text, number, date or true/false) per cell", kind="unreadable")
    return _as_text(pl.read_parquet(io.BytesIO(data)), profile.date_format)


def _as_text(frame: pl.DataFrame, date_format: str | None = None) -> pl.DataFrame:
    """Cast typed columns (Parquet) to text the way a person would write them: dates in the
    profile's date format (ISO without one)."""
    exprs: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype == pl.Date or isinstance(dtype, pl.Datetime):
            exprs.append(column.dt.strftime(date_format or "%Y-%m-%d"))
        elif dtype.is_float():
            whole = column.round(0) == column
            exprs.append(
                pl.when(whole).then(column.cast(pl.Int64, strict=False).cast(pl.String))
                .otherwise(column.cast(pl.String)).alias(name)
            )
        elif dtype == pl.Boolean:
            exprs.append(pl.when(column).then(pl.lit("Y")).when(~column).then(pl.lit("N")).alias(name))
        else:
            exprs.append(column.cast(pl.String))
    return frame.select(exprs)


def _without_nul(frame: pl.DataFrame) -> pl.DataFrame:
    """Headers stripped of surrounding space, and NUL characters taken out of headers and
    values. No extract means a NUL (a text field cannot hold one on PostgreSQL, so one value
    would fail the whole load, or the record of its refusal); Polars checks every column in
    one parallel pass and only columns holding one are rewritten."""
    frame = frame.rename({c: c.replace("\x00", "").strip() for c in frame.columns})
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not text:
        return frame
    found = frame.select(pl.col(name).str.contains("\x00", literal=True).any() for name in text).row(0)
    holding = [name for name, has in zip(text, found, strict=True) if has]
    if holding:
        frame = frame.with_columns(pl.col(name).str.replace_all("\x00", "", literal=True) for name in holding)
    return frame
