"""Postcode → 2011 LSOA from the ONS postcode directory (NSPL or ONSPD, CSV).

Only the columns needed are kept: the postcode (`pcds`, else `pcd`/`pcd2`), `lsoa11` and the
centroid (`lat`, `long`). Postcodes are stored in the single-space form `AA9A 9AA`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, bindparam, delete, select

from ptl.refdata.provenance import find_column, record_load
from ptl.store.bulk import insert_frame
from ptl.store.engine import write_connection
from ptl.store.models import PostcodeLsoa


def normalise_postcode(text: pl.Expr) -> pl.Expr:
    """Upper-case, single space before the inward code ('ls14ab' → 'LS1 4AB')."""
    squashed = text.str.to_uppercase().str.replace_all(r"\s", "")
    return (
        pl.when(squashed.str.len_chars() >= 5)
        .then(squashed.str.slice(0, squashed.str.len_chars() - 3) + " " + squashed.str.slice(-3))
        .otherwise(None)
    )


def read_postcodes(path: Path) -> pl.DataFrame:
    header = pl.read_csv(path, n_rows=0, infer_schema=False).columns
    postcode = find_column(header, ("pcds", "pcd", "pcd2", "pcd7", "pcd8", "postcode"), "postcode", path)
    lsoa = find_column(header, ("lsoa11", "lsoa11cd", "lsoa11_code", "lsoa"), "2011 LSOA", path)
    lat = next((c for c in header if c.lower() in ("lat", "latitude")), None)
    long = next((c for c in header if c.lower() in ("long", "longitude", "lon")), None)
    wanted = [postcode, lsoa] + [c for c in (lat, long) if c]
    raw = pl.read_csv(path, columns=wanted, infer_schema=False)
    frame = raw.select(
        normalise_postcode(pl.col(postcode)).alias("postcode"),
        pl.col(lsoa).str.strip_chars().alias("lsoa11"),
        (pl.col(lat).cast(pl.Float64, strict=False) if lat else pl.lit(None, pl.Float64)).alias("latitude"),
        (pl.col(long).cast(pl.Float64, strict=False) if long else pl.lit(None, pl.Float64)).alias("longitude"),
    ).filter(pl.col("postcode").is_not_null())
    frame = frame.with_columns(
        # NSPL marks missing LSOAs with pseudo-codes; keep English 2011 LSOAs only.
        pl.when(pl.col("lsoa11").str.contains(r"^[EW]01[0-9]{6}$")).then(pl.col("lsoa11")).alias("lsoa11"),
        # 99.999999 is ONS's "no grid reference" latitude.
        pl.when(pl.col("latitude") < 90).then(pl.col("latitude")).alias("latitude"),
        pl.when(pl.col("latitude") < 90).then(pl.col("longitude")).alias("longitude"),
        pl.col("postcode").str.split(" ").list.first().alias("outward_code"),
    )
    return frame.unique("postcode", keep="last")


def load_postcodes(engine: Engine, path: Path) -> int:
    frame = read_postcodes(path)
    with write_connection(engine) as connection, connection.begin():
        connection.execute(delete(PostcodeLsoa))
        insert_frame(connection, "postcode_lsoa", frame)
        record_load(connection, "postcodes", path, frame.height)
    return frame.height


def postcode_lookup(connection: Connection, postcodes: pl.Series) -> pl.DataFrame:
    """postcode → lsoa11 for the given postcodes, fetched by outward code (indexed)."""
    outward = postcodes.drop_nulls().str.split(" ").list.first().unique().sort().to_list()
    if not outward:
        return pl.DataFrame(schema={"postcode": pl.String, "lookup_lsoa11": pl.String})
    rows: list[tuple[str, str | None]] = []
    statement = select(PostcodeLsoa.postcode, PostcodeLsoa.lsoa11).where(
        PostcodeLsoa.outward_code.in_(bindparam("outward", expanding=True))
    )
    for start in range(0, len(outward), 500):
        rows.extend(connection.execute(statement, {"outward": outward[start : start + 500]}).tuples())
    return pl.DataFrame(rows, schema={"postcode": pl.String, "lookup_lsoa11": pl.String}, orient="row")
