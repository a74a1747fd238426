"""Reference data loaders on the real published files (IMD 2019, ODS etr)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from ptl.refdata.imd import load_imd, read_imd
from ptl.refdata.ods import load_ods
from ptl.refdata.postcodes import load_postcodes
from ptl.refdata.provenance import RefdataError


def test_real_imd_file_reads_every_lsoa(shared_data: Path) -> None:
    imd = read_imd(shared_data / "imd2019_lsoa11.csv")
    assert imd.height == 32_844
    first = imd.row(0, named=True)
    assert (first["lsoa11"], first["imd_rank"], first["imd_decile"], first["imd_quintile"]) == (
        "E01000001", 29_199, 9, 5)
    assert sorted(imd.get_column("imd_quintile").unique().to_list()) == [1, 2, 3, 4, 5]
    assert imd.get_column("imd_rank").min() == 1 and imd.get_column("imd_rank").max() == 32_844


def test_imd_and_ods_load_into_the_store(store_engine: Engine, shared_data: Path) -> None:
    assert load_imd(store_engine, shared_data / "imd2019_lsoa11.csv") == 32_844
    # Loading again replaces, not duplicates.
    assert load_imd(store_engine, shared_data / "imd2019_lsoa11.csv") == 32_844
    trusts = load_ods(store_engine, shared_data / "ods_etr.csv")
    with store_engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM imd_lsoa")).scalar_one() == 32_844
        manchester = connection.execute(sa.text(
            "SELECT name, region_code, postcode FROM organisation WHERE code = 'R0A'")).one()
        loads = connection.execute(sa.text("SELECT kind, rows FROM refdata_load ORDER BY id")).all()
    assert trusts == 218
    assert tuple(manchester) == ("MANCHESTER UNIVERSITY NHS FOUNDATION TRUST", "Y62", "M13 9WL")
    assert [tuple(x) for x in loads] == [("imd", 32_844), ("imd", 32_844), ("ods", 218)]


def test_nspl_layout_postcodes_are_normalised(store_engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "NSPL.csv"
    path.write_text(
        "pcd,pcd2,pcds,dointr,doterm,lsoa11,lat,long\n"
        "LS1 4AB,LS1  4AB,LS1 4AB,198001,,E01011365,53.79,-1.55\n"
        "SW1A1AA,SW1A 1AA,SW1A 1AA,198001,,E01004736,51.50,-0.14\n"
        "ZZ991ZZ,ZZ99 1ZZ,ZZ99 1ZZ,198001,,E99999999,99.999999,0\n"
    )
    assert load_postcodes(store_engine, path) == 3
    with store_engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT postcode, outward_code, lsoa11, latitude FROM postcode_lsoa ORDER BY postcode")).all()
    assert [tuple(r) for r in rows] == [
        ("LS1 4AB", "LS1", "E01011365", 53.79), ("SW1A 1AA", "SW1A", "E01004736", 51.5),
        ("ZZ99 1ZZ", "ZZ99", None, None)]


def test_a_file_in_the_wrong_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "imd.csv"
    path.write_text("area,score\nE01000001,3\n")
    with pytest.raises(RefdataError, match="no lsoa11 column"):
        read_imd(path)
