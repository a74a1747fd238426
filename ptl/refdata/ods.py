"""NHS organisations from the ODS "etr" (NHS trusts) file: headerless CSV.

Column order (ODS standard layout): code, name, national grouping (NHS England region),
high-level health geography (ICB), address lines 1–5, postcode, open date, close date, …
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ptl.refdata.provenance import RefdataError, record_load
from ptl.store.engine import write_connection
from ptl.store.models import Organisation


def read_ods(path: Path, kind: str = "trust") -> pl.DataFrame:
    raw = pl.read_csv(path, has_header=False, infer_schema=False, encoding="utf8-lossy")
    if raw.width < 12:
        raise RefdataError(
            f"{path.name}: expected the ODS etr layout (27 columns, no header); found {raw.width} columns"
        )
    cols = raw.columns

    def as_date(name: str) -> pl.Expr:
        return pl.col(name).str.strptime(pl.Date, "%Y%m%d", strict=False)

    return raw.select(
        pl.col(cols[0]).str.strip_chars().alias("code"),
        pl.col(cols[1]).str.strip_chars().alias("name"),
        pl.lit(kind).alias("kind"),
        pl.col(cols[2]).alias("region_code"),
        pl.col(cols[3]).alias("icb_code"),
        pl.col(cols[9]).alias("postcode"),
        as_date(cols[10]).alias("open_date"),
        as_date(cols[11]).alias("close_date"),
    ).filter(pl.col("code").is_not_null())


def load_ods(engine: Engine, path: Path, kind: str = "trust") -> int:
    """Insert or update organisations (organisations already referenced by feeds are kept)."""
    frame = read_ods(path, kind)
    now = dt.datetime.now(dt.UTC)
    rows = [dict(row, updated_at=now) for row in frame.iter_rows(named=True)]
    with write_connection(engine) as connection, connection.begin():
        insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        statement = insert(Organisation)
        statement = statement.on_conflict_do_update(
            index_elements=["code"],
            set_={c: statement.excluded[c] for c in
                  ("name", "kind", "region_code", "icb_code", "postcode", "open_date", "close_date",
                   "updated_at")},
        )
        if rows:
            connection.execute(statement, rows)
        record_load(connection, "ods", path, len(rows))
    return len(rows)
