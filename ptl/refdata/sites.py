"""Treatment sites and their coordinates, from a sites CSV (`ptl refdata load sites FILE`).

Layout (header names case-insensitive): `site_code`, `provider_code`, `name`, `postcode`,
`lat`, `long` (`latitude`/`longitude` also accepted). This is the layout `ptl synth` writes to
`refdata/sites.csv`; a real one is built from the ODS site files (ets.csv: site code, parent
organisation, name, postcode) with coordinates from the ONS postcode directory. A site without
coordinates gets its postcode's centroid from the loaded postcode directory, so a list of site
codes and postcodes is enough once `ptl refdata load postcodes` has run.

Loading inserts or updates sites (sites already referenced stay) and adds a stub organisation
for a provider code not loaded from ODS yet, because `site.organisation_code` must name one.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ptl.refdata.postcodes import normalise_postcode
from ptl.refdata.provenance import RefdataError, find_column, record_load
from ptl.store.engine import write_connection
from ptl.store.models import Organisation, PostcodeLsoa, Site

SITE_SCHEMA: dict[str, pl.DataType] = {
    "code": pl.String(),
    "organisation_code": pl.String(),
    "name": pl.String(),
    "postcode": pl.String(),
    "latitude": pl.Float64(),
    "longitude": pl.Float64(),
}


def read_sites(path: Path) -> pl.DataFrame:
    """The sites file as `site` rows; refuses a file without site or provider codes."""
    header = pl.read_csv(path, n_rows=0, infer_schema=False).columns
    code = find_column(header, ("site_code", "site", "code"), "site code", path)
    provider = find_column(header, ("provider_code", "organisation_code", "provider"), "provider code", path)
    name = next((c for c in header if c.strip().lower() in ("name", "site_name")), None)
    postcode = next((c for c in header if c.strip().lower() in ("postcode", "pcds")), None)
    lat = next((c for c in header if c.strip().lower() in ("lat", "latitude")), None)
    long = next((c for c in header if c.strip().lower() in ("long", "longitude", "lon")), None)
    raw = pl.read_csv(path, infer_schema=False)

    def text(column: str | None) -> pl.Expr:
        return pl.col(column).str.strip_chars() if column else pl.lit(None, pl.String)

    def number(column: str | None) -> pl.Expr:
        return pl.col(column).cast(pl.Float64, strict=False) if column else pl.lit(None, pl.Float64)

    frame = raw.select(
        text(code).str.to_uppercase().alias("code"),
        text(provider).str.to_uppercase().alias("organisation_code"),
        text(name).alias("name"),
        (normalise_postcode(pl.col(postcode)) if postcode else pl.lit(None, pl.String)).alias("postcode"),
        number(lat).alias("latitude"),
        number(long).alias("longitude"),
    ).filter(pl.col("code").is_not_null() & (pl.col("code") != ""))
    bad = frame.filter(pl.col("organisation_code").is_null() | (pl.col("organisation_code") == ""))
    if bad.height:
        raise RefdataError(f"{path.name}: {bad.height} site(s) have no provider code; every site "
                           "needs the ODS code of its provider")
    outside = frame.filter(~pl.col("latitude").is_between(49.0, 61.5) | ~pl.col("longitude").is_between(-9.0, 2.5))
    if outside.height:
        raise RefdataError(f"{path.name}: {outside.height} site(s) have coordinates outside Great Britain "
                           f"(first: {outside['code'][0]}); `lat`/`long` must be WGS84 degrees")
    return frame.unique("code", keep="last").cast(SITE_SCHEMA)  # type: ignore[arg-type]


def _fill_from_postcodes(connection: Connection, frame: pl.DataFrame) -> pl.DataFrame:
    """Coordinates for sites that have a postcode but no lat/long, from the postcode directory."""
    missing = frame.filter(pl.col("latitude").is_null() & pl.col("postcode").is_not_null())
    if missing.height == 0:
        return frame
    rows = connection.execute(
        select(PostcodeLsoa.postcode, PostcodeLsoa.latitude, PostcodeLsoa.longitude)
        .where(PostcodeLsoa.postcode.in_(missing["postcode"].unique().to_list()))
    ).tuples().all()
    found = pl.DataFrame(rows, schema={"postcode": pl.String, "pc_lat": pl.Float64, "pc_long": pl.Float64},
                         orient="row")
    return (frame.join(found, on="postcode", how="left", maintain_order="left")
            .with_columns(pl.coalesce("latitude", "pc_lat").alias("latitude"),
                          pl.coalesce("longitude", "pc_long").alias("longitude"))
            .drop("pc_lat", "pc_long"))


def load_sites(engine: Engine, path: Path) -> int:
    """Insert or update every site in the file; returns the number of sites."""
    frame = read_sites(path)
    with write_connection(engine) as connection, connection.begin():
        frame = _fill_from_postcodes(connection, frame)
        insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        providers = [{"code": c} for c in frame["organisation_code"].unique().sort().to_list()]
        if providers:
            connection.execute(insert(Organisation).on_conflict_do_nothing(index_elements=["code"]), providers)
        statement = insert(Site)
        statement = statement.on_conflict_do_update(
            index_elements=["code"],
            set_={c: statement.excluded[c] for c in ("organisation_code", "name", "postcode", "latitude",
                                                     "longitude")},
        )
        if frame.height:
            connection.execute(statement, frame.to_dicts())
        record_load(connection, "sites", path, frame.height)
    return frame.height
