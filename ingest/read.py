"""Reading provider extracts (CSV, XLSX, Parquet) into an all-text Polars frame.

Every value becomes text (or null) so that validation treats every format alike and can quote
the value it rejects exactly as the provider sent it. Dates typed by Excel or Parquet become
ISO text; whole-number floats (Excel's way of holding codes) lose their ".0".
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ingest.errors import FeedRefused
from ingest.profiles import Profile

FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx",
           ".parquet": "parquet", ".pq": "parquet"}
_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class Extract:
    """A file as read: all-text columns, with where each row sits in the file."""

    frame: pl.DataFrame
    file_format: str
    #: number to add to a 0-based data-row index to give the row number a person sees
    row_offset: int


def sha256_of(path: Path) -> str:
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


def read_extract(path: Path, profile: Profile, data: bytes | None = None) -> Extract:
    """Read `path` (or its bytes, when the caller has them) as text columns; refuse the whole
    file if it cannot be read."""
    fmt = file_format_of(path)
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
            frame = _read_xlsx(data, profile)
            offset = 2
        else:
            frame = _as_text(pl.read_parquet(io.BytesIO(data)))
            offset = 1  # Parquet has no header row: record numbers from 1
    except FeedRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unreadable
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FeedRefused(
            f"{path.name}: not a readable {fmt.upper()} file ({detail[:300]})", kind="unreadable"
        ) from None
    frame = frame.rename({c: c.strip() for c in frame.columns})
    if frame.height == 0:
        raise FeedRefused(f"{path.name}: the file has no data rows", kind="empty")
    return Extract(frame=frame, file_format=fmt, row_offset=offset)


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


def _read_xlsx(data: bytes, profile: Profile) -> pl.DataFrame:
    # Every cell as text so codes keep their form; empty rows kept so row numbers stay true.
    if profile.sheet:
        frame = pl.read_excel(io.BytesIO(data), sheet_name=profile.sheet, infer_schema_length=0,
                              drop_empty_rows=False)
    else:
        frame = pl.read_excel(io.BytesIO(data), sheet_id=1, infer_schema_length=0,
                              drop_empty_rows=False)
    # Trailing blank rows are formatting, not data.
    non_empty = frame.select(pl.any_horizontal(pl.all().is_not_null())).to_series()
    positions = non_empty.arg_true()
    return frame.head(int(positions[-1]) + 1 if len(positions) else 0)


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast typed columns (Parquet) to text the way a person would write them."""
    exprs: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype == pl.Date or isinstance(dtype, pl.Datetime):
            exprs.append(column.dt.strftime("%Y-%m-%d"))
        elif dtype.is_float():
            whole = column.round(0) == column
            exprs.append(
                pl.when(whole).then(column.cast(pl.Int64).cast(pl.String))
                .otherwise(column.cast(pl.String)).alias(name)
            )
        elif dtype == pl.Boolean:
            exprs.append(pl.when(column).then(pl.lit("Y")).when(~column).then(pl.lit("N")).alias(name))
        else:
            exprs.append(column.cast(pl.String))
    return frame.select(exprs)
