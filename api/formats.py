"""Answering as JSON or CSV: `?format=csv` or `Accept: text/csv` picks CSV, streamed in chunks
so a whole-system export never sits in memory as one string. Every text cell of every CSV goes
through `ptl.spreadsheet.formula_safe`, so no cell runs as a formula where it is opened."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated, Any, Literal, overload

import polars as pl
from litestar import Request
from litestar.params import Parameter
from litestar.response import Stream

from ptl.spreadsheet import formula_safe_frame

CSV_MEDIA_TYPE = "text/csv"
CSV_CHUNK_ROWS = 20_000

#: The `format` query parameter every view takes.
FormatParam = Annotated[
    Literal["json", "csv"] | None,
    Parameter(query="format", description="json (default) or csv; `Accept: text/csv` also selects CSV"),
]


def wants_csv(request: Request[Any, Any, Any], output: str | None) -> bool:
    if output is not None:
        return output == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV has no nested values: lists become `;`-joined text, structs JSON text; then every
    text cell is made safe to open in a spreadsheet."""
    columns: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.List):
            columns.append(pl.col(name).cast(pl.List(pl.String)).list.join(";").alias(name))
        elif isinstance(dtype, pl.Struct):
            columns.append(pl.col(name).struct.json_encode().alias(name))
        else:
            columns.append(pl.col(name))
    return formula_safe_frame(frame.select(columns))


def csv_chunks(frame: pl.DataFrame, chunk_rows: int = CSV_CHUNK_ROWS) -> Iterator[bytes]:
    flat = _flat(frame)
    if flat.height == 0:
        yield flat.write_csv(include_header=True).encode("utf-8")
        return
    for offset in range(0, flat.height, chunk_rows):
        yield flat.slice(offset, chunk_rows).write_csv(include_header=offset == 0).encode("utf-8")


def csv_response(frame: pl.DataFrame, filename: str, headers: dict[str, str] | None = None) -> Stream:
    return Stream(
        csv_chunks(frame), media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"', **(headers or {})},
    )


@overload
def stored_time(value: dt.datetime) -> dt.datetime: ...
@overload
def stored_time(value: None) -> None: ...
def stored_time(value: dt.datetime | None) -> dt.datetime | None:
    """A time read from the store, with its zone: every stored time is UTC, and SQLite hands
    them back without one (the document promises RFC 3339 date-times, which carry an offset)."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def rows_of(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows for a JSON body (msgspec encodes dates as ISO 8601)."""
    return frame.to_dicts()
