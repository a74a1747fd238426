"""English Indices of Deprivation 2019 (GOV.UK "File 1: index of multiple deprivation").

Accepts the published CSV (ranks quoted with thousands separators, e.g. "29,199") or XLSX
(sheet "IMD2019"). Quintile 1 = deciles 1–2 = the most deprived fifth ("Core20").
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from sqlalchemy import Engine, delete

from ptl.refdata.provenance import RefdataError, find_column, record_load
from ptl.store.bulk import insert_frame, read_frame
from ptl.store.engine import write_connection
from ptl.store.models import ImdLsoa

IMD_COLUMNS = {
    "lsoa11": ("LSOA code (2011)", "lsoa11cd", "LSOA11CD"),
    "lsoa_name": ("LSOA name (2011)", "lsoa11nm"),
    "lad_code": ("Local Authority District code (2019)", "lad19cd"),
    "lad_name": ("Local Authority District name (2019)", "lad19nm"),
    "imd_rank": ("Index of Multiple Deprivation (IMD) Rank",
                 "Index of Multiple Deprivation (IMD) Rank (where 1 is most deprived)"),
    "imd_decile": ("Index of Multiple Deprivation (IMD) Decile",
                   "Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)"),
}


def read_imd(path: Path) -> pl.DataFrame:
    if path.suffix.lower() in (".xlsx", ".xls"):
        try:
            raw = pl.read_excel(path, sheet_name="IMD2019", infer_schema_length=0)
        except Exception:  # noqa: BLE001 - fall back to the first sheet
            raw = pl.read_excel(path, sheet_id=1, infer_schema_length=0)
    else:
        raw = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    raw = raw.rename({c: c.lstrip("\ufeff").strip() for c in raw.columns})
    names = {field: find_column(raw.columns, candidates, field, path)
             for field, candidates in IMD_COLUMNS.items()
             if field in ("lsoa11", "imd_rank", "imd_decile") or any(
                 c.lower() in {h.lower() for h in raw.columns} for c in candidates)}
    frame = raw.select(
        pl.col(names["lsoa11"]).str.strip_chars().alias("lsoa11"),
        *(pl.col(names[f]).alias(f) if f in names else pl.lit(None, pl.String).alias(f)
          for f in ("lsoa_name", "lad_code", "lad_name")),
        pl.col(names["imd_rank"]).str.replace_all(r"[,\s]", "").cast(pl.Int32, strict=False).alias("imd_rank"),
        pl.col(names["imd_decile"]).str.strip_chars().cast(pl.Int16, strict=False).alias("imd_decile"),
    ).filter(pl.col("lsoa11").is_not_null())
    bad = frame.filter(pl.col("imd_rank").is_null() | ~pl.col("imd_decile").is_between(1, 10))
    if bad.height:
        raise RefdataError(
            f"{path.name}: {bad.height} row(s) have no usable IMD rank or decile "
            f"(first: LSOA {bad.item(0, 'lsoa11')})"
        )
    return frame.with_columns(((pl.col("imd_decile") + 1) // 2).cast(pl.Int16).alias("imd_quintile"))


def load_imd(engine: Engine, path: Path) -> int:
    """Replace the IMD table with the file's contents (one transaction)."""
    frame = read_imd(path)
    with write_connection(engine) as connection, connection.begin():
        connection.execute(delete(ImdLsoa))
        insert_frame(connection, "imd_lsoa", frame)
        record_load(connection, "imd", path, frame.height)
    return frame.height


def imd_lookup(connection) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    """lsoa11 → imd_decile, imd_quintile for every loaded LSOA."""
    return read_frame(
        connection,
        "SELECT lsoa11, imd_decile, imd_quintile FROM imd_lsoa",
        schema={"lsoa11": pl.String, "imd_decile": pl.Int16, "imd_quintile": pl.Int16},
    )
