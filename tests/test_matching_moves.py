"""Completed moves in the analytics snapshot: the receiving provider's pathway continues the
original wait, and the need is counted once."""

from __future__ import annotations

import datetime as dt

import polars as pl

from ptl.matching.move import MOVE_SCHEMA, continue_moved_waits

CENSUS = dt.date(2025, 6, 1)
ORIGINAL = dt.date(2024, 5, 1)


def pathway(id_: int, provider: str, key: str, start: dt.date) -> dict[str, object]:
    days = (CENSUS - start).days
    return {"id": id_, "provider_code": provider, "person_id": 7, "treatment_function_code": "110",
            "pathway_id_issuer": provider, "pathway_id": key, "rtt_start_date": start,
            "census_date": CENSUS, "is_rtt": True, "days_waited": days, "week_band": 0}


MOVE = pl.DataFrame([{"move_id": 1, "transfer_id": 3, "person_id": 7, "treatment_function_code": "110",
                      "original_clock_start": ORIGINAL, "from_provider_code": "RAA",
                      "from_pathway_id": "A1", "from_pathway_id_issuer": "RAA",
                      "to_provider_code": "NZA", "to_site_code": "NZA01"}], schema=dict(MOVE_SCHEMA))


def test_the_receiving_pathway_keeps_the_original_clock_and_the_stale_copy_goes() -> None:
    current = pl.DataFrame([pathway(1, "RAA", "A1", ORIGINAL),
                            pathway(2, "NZA", "N9", dt.date(2025, 5, 20))])  # restarted in error
    out = continue_moved_waits(current, MOVE)
    assert out.get_column("id").to_list() == [2]
    row = out.row(0, named=True)
    assert row["rtt_start_date"] == ORIGINAL
    assert row["days_waited"] == (CENSUS - ORIGINAL).days == 396
    assert row["week_band"] == 56


def test_until_the_receiver_lists_it_the_sending_copy_stands() -> None:
    current = pl.DataFrame([pathway(1, "RAA", "A1", ORIGINAL)])
    out = continue_moved_waits(current, MOVE)
    assert out.get_column("id").to_list() == [1]
    assert out.item(0, "days_waited") == 396


def test_no_moves_changes_nothing() -> None:
    current = pl.DataFrame([pathway(1, "RAA", "A1", ORIGINAL)])
    assert continue_moved_waits(current, MOVE.clear()).equals(current)
