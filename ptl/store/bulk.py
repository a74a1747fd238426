"""Bulk movement of Polars frames in and out of the store, on each backend's fast path.

Writes: PostgreSQL `COPY … FROM STDIN` through psycopg, in PostgreSQL's binary format encoded
from Arrow by pgpq (in Rust) when every column has a binary encoding, else as CSV; SQLite
`executemany` inside the caller's transaction. Never one ORM insert per row.

Binary COPY spares the server parsing text: a million pathway rows cost it about 40% less
CPU than the same rows as CSV, and encoding them costs the client less than writing the CSV
(bench/RESULTS.md). Binary values must be exactly the column's type, so the frame is first
conformed to the table's columns as the server describes them.
Reads: PostgreSQL `COPY (query) TO STDOUT` into Polars; SQLite through the DB-API cursor.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import polars as pl
from sqlalchemy import Connection

try:  # the `postgres` extra
    import pgpq
except ImportError:  # pragma: no cover - CSV COPY still works without it
    pgpq = None  # type: ignore[assignment]

#: Rows per COPY batch: bounds the memory of the CSV text held at once.
COPY_BATCH_ROWS = 200_000
#: Rows pgpq encodes at a time for a binary COPY. It holds the GIL while it encodes (about
#: 0.8 µs a pathway row), so a 100k-row batch in one call stalled every other Python thread
#: of a load for 80 ms at a time; chunks this size also let the server parse one chunk while
#: the next is encoded. A million-row load into PostgreSQL: 0.05–0.3 s quicker in 6 s
#: (bench/RESULTS.md, fifth round).
BINARY_CHUNK_ROWS = 16_384
_NULL = r"\N"


def _dbapi(connection: Connection) -> Any:
    return connection.connection.driver_connection


def insert_frame(
    connection: Connection,
    table: str,
    frame: pl.DataFrame,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert every row of `frame` into `table` (columns by name) in the open transaction."""
    if frame.height == 0:
        return 0
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    if connection.dialect.name == "postgresql":
        cursor = _dbapi(connection).cursor()
        binary = _binary_frame(cursor, table, frame)
        if binary is not None:
            _copy_binary(cursor, f'COPY "{table}" ({columns}) FROM STDIN WITH (FORMAT binary)', binary,
                         progress)
            return frame.height
        sql = f'COPY "{table}" ({columns}) FROM STDIN WITH (FORMAT csv, NULL \'{_NULL}\')'
        with cursor.copy(sql) as copy:
            for offset in range(0, frame.height, COPY_BATCH_ROWS):
                batch = frame.slice(offset, COPY_BATCH_ROWS)
                buffer = io.BytesIO()
                batch.write_csv(buffer, include_header=False, null_value=_NULL,
                                date_format="%Y-%m-%d", datetime_format="%Y-%m-%dT%H:%M:%S%.f%z")
                copy.write(buffer.getvalue())
                if progress:
                    progress(min(offset + COPY_BATCH_ROWS, frame.height))
        return frame.height
    prepared = sqlite_values(frame)
    # Python binds every value of every row: a column holding one value throughout (the feed,
    # the provider, the census; a field nobody filled) is written once, as a literal.
    constant = {name: value for name, value in zip(
        prepared.columns,
        prepared.select(pl.all().n_unique() == 1).row(0),
        strict=True,
    ) if value}
    literals = {name: _sql_literal(prepared.get_column(name)[0]) for name in constant}
    bound = [name for name in prepared.columns if name not in literals]
    values = ", ".join(literals.get(name, "?") for name in prepared.columns)
    cursor = _dbapi(connection).cursor()
    sql = f'INSERT INTO "{table}" ({columns}) VALUES ({values})'
    for offset in range(0, prepared.height, COPY_BATCH_ROWS):
        batch = prepared.slice(offset, COPY_BATCH_ROWS)
        cursor.executemany(sql, batch.select(bound).iter_rows() if bound else [()] * batch.height)
        if progress:
            progress(min(offset + COPY_BATCH_ROWS, prepared.height))
    return frame.height


#: PostgreSQL column types (as `format_type` names them) with a binary encoding from the
#: Polars type beside them; anything else (json, numeric, arrays…) goes as CSV.
_BINARY_TYPES: dict[str, pl.DataType] = {
    "bigint": pl.Int64(), "integer": pl.Int32(), "smallint": pl.Int16(),
    "double precision": pl.Float64(), "real": pl.Float32(), "boolean": pl.Boolean(),
    "date": pl.Date(), "text": pl.String(),
    "timestamp with time zone": pl.Datetime("us", "UTC"), "timestamp without time zone": pl.Datetime("us"),
}


def _binary_type(format_type: str) -> pl.DataType | None:
    if format_type.startswith(("character varying", "character(")) or format_type == "character":
        return pl.String()
    return _BINARY_TYPES.get(format_type)


def _binary_frame(cursor: Any, table: str, frame: pl.DataFrame) -> pl.DataFrame | None:
    """`frame` with every column cast to the binary form of its table column, or None when a
    column has no binary encoding here (or text would have to be parsed into another type:
    the server's text input does that, as CSV)."""
    if pgpq is None:
        return None
    cursor.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (f'"{table}"',),
    )
    declared = dict(cursor.fetchall())
    casts: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        target = _binary_type(declared.get(name, ""))
        if target is None or (dtype == pl.String and target != pl.String):
            return None
        column = pl.col(name)
        if isinstance(target, pl.Datetime) and isinstance(dtype, pl.Datetime) and dtype.time_zone is None \
                and target.time_zone is not None:
            column = column.dt.replace_time_zone("UTC")  # naive times are UTC throughout
        casts.append(column.cast(target) if dtype != target else column)
    return frame.select(casts)


def _copy_binary(cursor: Any, sql: str, frame: pl.DataFrame, progress: Callable[[int], None] | None) -> None:
    # Arrow's string views as Polars holds them (pgpq reads them): no copy of every string.
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    encoder = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
    with cursor.copy(sql) as copy:
        copy.write(encoder.write_header())
        done = 0
        for batch in table.to_batches(max_chunksize=BINARY_CHUNK_ROWS):
            copy.write(encoder.write_batch(batch))
            done += batch.num_rows
            if progress:
                progress(done)
        copy.write(encoder.finish())


def _sql_literal(value: object) -> str:
    """A SQLite literal for a value of a stored column (text quoted, quotes doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def sqlite_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns as SQLAlchemy stores them in SQLite: dates as ISO text, datetimes as
    'YYYY-MM-DD HH:MM:SS.ffffff', booleans as 0/1."""
    return frame.with_columns(
        [pl.col(n).dt.strftime("%Y-%m-%d") for n, t in frame.schema.items() if t == pl.Date]
        + [pl.col(n).cast(pl.Int8) for n, t in frame.schema.items() if t == pl.Boolean]
        + [pl.col(n).dt.strftime("%Y-%m-%d %H:%M:%S.%6f") for n, t in frame.schema.items()
           if isinstance(t, pl.Datetime)]
    )


def read_frame(
    connection: Connection,
    sql: str,
    params: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """Run a query (`:name` parameters) and return a Polars frame typed by `schema`.

    PostgreSQL streams `COPY (query) TO STDOUT` as CSV (fast for large reads); SQLite goes
    through its cursor. Columns not in `schema` are read as text.
    """
    schema = schema or {}
    if connection.dialect.name == "postgresql":
        cursor = _dbapi(connection).cursor()
        statement = re.sub(r"(?<!:):([a-zA-Z_][a-zA-Z0-9_]*)", r"%(\1)s", sql)
        buffer = io.BytesIO()
        with cursor.copy(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv, HEADER true, NULL '{_NULL}')",
                         params or {}) as copy:
            for chunk in copy:
                buffer.write(chunk)
        buffer.seek(0)
        if buffer.getbuffer().nbytes == 0:
            return pl.DataFrame(schema={n: t for n, t in schema.items()})
        frame = pl.read_csv(buffer, infer_schema=False, null_values=[_NULL])
    else:
        cursor = _dbapi(connection).cursor()
        cursor.execute(sql, params or {})  # sqlite3 takes `:name` parameters as they are
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        # SQLite hands back native ints, floats and text (dates are ISO text); build the frame
        # from them directly and only fall back to text when a column mixes types.
        try:
            frame = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
        except (TypeError, pl.exceptions.PolarsError):
            frame = pl.DataFrame(
                [[None if v is None else str(v) for v in row] for row in rows],
                schema={n: pl.String for n in names}, orient="row",
            )
        if not rows:
            frame = pl.DataFrame(schema={n: pl.String for n in names})
    return frame.with_columns([_cast(name, dtype) for name, dtype in schema.items() if name in frame.columns])


def _cast(name: str, dtype: Any) -> pl.Expr:
    column = pl.col(name)
    if dtype == pl.Date:
        return column.cast(pl.String).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    if dtype == pl.Boolean:
        return pl.when(column.is_null()).then(None).otherwise(
            column.cast(pl.String).str.to_lowercase().is_in(["1", "t", "true"])
        ).alias(name)
    return column.cast(dtype, strict=False)
