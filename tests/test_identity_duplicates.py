"""Duplicate pathways: the same need waiting twice, found from person ids and pathway keys,
counted once in system totals; checked on hand-built frames and on a synthetic system."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine

from ptl.identity import counted_once, duplicate_pathways, link
from ptl.settings import Settings
from ptl.store.bulk import read_frame

_SCHEMA = {
    "id": pl.Int64, "provider_code": pl.String, "pathway_id": pl.String, "pathway_id_issuer": pl.String,
    "person_id": pl.Int64, "treatment_function_code": pl.String, "rtt_start_date": pl.Date,
    "days_waited": pl.Int64, "week_band": pl.Int64, "is_rtt": pl.Boolean,
}
CENSUS = dt.date(2025, 6, 1)


def _pathway(row_id: int, provider: str, person: int, tfc: str, start: str | None, *,
             pathway_id: str | None = None, issuer: str | None = None, rtt: bool = True) -> dict[str, object]:
    clock = dt.date.fromisoformat(start) if start else None
    days = (CENSUS - clock).days if clock else None
    return {"id": row_id, "provider_code": provider, "pathway_id": pathway_id or f"PW{row_id}",
            "pathway_id_issuer": issuer or provider, "person_id": person, "treatment_function_code": tfc,
            "rtt_start_date": clock, "days_waited": days,
            "week_band": None if days is None else (0 if days <= 7 else -(-days // 7) - 1), "is_rtt": rtt}


def test_duplicate_rules_and_the_earliest_clock_start_stands() -> None:
    current = pl.DataFrame([
        _pathway(1, "RXA", 10, "110", "2025-01-06"),
        _pathway(2, "NXB", 10, "110", "2024-11-04"),                 # same person, same TF, elsewhere
        _pathway(3, "RXA", 10, "130", "2025-02-03"),                 # another need: not a duplicate
        _pathway(4, "RXA", 11, "110", "2025-03-03"),
        _pathway(5, "RXA", 11, "110", "2025-04-07"),                 # two at one provider: not this rule
        _pathway(6, "RXA", 12, "101", "2025-01-13", pathway_id="K1", issuer="RXA"),
        _pathway(7, "RXB", 13, "101", "2025-02-10", pathway_id="K1", issuer="RXA"),  # same key, 2 providers
        _pathway(8, "RXA", 14, "502", "2025-01-01", rtt=False),
        _pathway(9, "NXB", 14, "502", "2025-01-02", rtt=False),      # non-RTT: not counted as waiting
        _pathway(10, "RXC", 10, "110", None),                         # unknown clock start: never kept
    ], schema=_SCHEMA)
    found = duplicate_pathways(current)
    person = found.filter(pl.col("reason") == "same_person_same_treatment_function")
    assert sorted(person["id"].to_list()) == [1, 2, 10]
    assert person.filter(pl.col("keep"))["id"].to_list() == [2]
    assert set(person["group_providers"]) == {"NXB,RXA,RXC"}
    assert person["earliest_clock_start"].unique().to_list() == [dt.date(2024, 11, 4)]
    key = found.filter(pl.col("reason") == "same_pathway_key")
    assert sorted(key["id"].to_list()) == [6, 7] and key.filter(pl.col("keep"))["id"].to_list() == [6]
    assert (found["weeks_waited"] == found["week_band"]).all()
    totals = counted_once(current)
    assert sorted(totals["id"].to_list()) == [2, 3, 4, 5, 6, 8, 9]


def test_no_duplicates_is_an_empty_worklist() -> None:
    current = pl.DataFrame([_pathway(1, "RXA", 1, "110", "2025-01-06"),
                            _pathway(2, "RXB", 2, "110", "2025-01-06")], schema=_SCHEMA)
    assert duplicate_pathways(current).height == 0
    assert counted_once(current).height == 2


@pytest.mark.slow
def test_planted_duplicates_found_and_nothing_else(store_engine: Engine, tmp_path: Path) -> None:
    from ingest.pipeline import ingest_file
    from ptl.synth import generate_system

    system = generate_system(tmp_path / "synth", patients=3_000, weeks=1, census_date=CENSUS, seed=3,
                             bad_rows=False)
    url = store_engine.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, link_match_threshold=0.8)
    for feed in system.feeds:
        result = ingest_file(store_engine, feed.path, provider_code=feed.provider_code, profile=feed.profile,
                             census_date=feed.census_date,
                             settings=settings)
        assert result.status == "loaded", result.message
    link(store_engine, settings)
    with store_engine.connect() as connection:
        current = read_frame(
            connection,
            "SELECT p.id, p.provider_code, p.pathway_id, p.pathway_id_issuer, l.person_id, "
            "p.treatment_function_code, p.rtt_start_date, p.days_waited, p.week_band, p.is_rtt "
            "FROM pathway p JOIN current_snapshot c ON c.feed_id = p.feed_id "
            "LEFT JOIN identity_link l ON l.source_identity_id = p.source_identity_id",
            schema={k: v for k, v in _SCHEMA.items()},
        )
    found = duplicate_pathways(current)
    truth = pl.read_csv(system.truth_dir / "duplicate_pathways.csv", infer_schema=False)
    assert truth.height > 0
    planted = pl.concat([
        truth.select(pl.col("provider_code_1").alias("provider_code"), pl.col("pathway_id_1").alias("pathway_id")),
        truth.select(pl.col("provider_code_2").alias("provider_code"), pl.col("pathway_id_2").alias("pathway_id")),
    ]).sort("provider_code", "pathway_id")
    flagged = found.select("provider_code", "pathway_id").unique().sort("provider_code", "pathway_id")
    assert flagged.equals(planted)
    assert found.filter(pl.col("keep")).height == truth.height
