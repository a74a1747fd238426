"""Capacity matching in the store, on SQLite and PostgreSQL: sites, offers, runs, the transfer
workflow (who/when at every step, illegal steps refused) and pathway moves."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from ptl.matching import (
    Actor,
    OfferError,
    TransferError,
    TransferForbidden,
    add_offer,
    advance_transfer,
    get_offers,
    get_run,
    list_offers,
    list_transfers,
    load_moves,
    plan_matching,
    propose_transfers,
)
from ptl.matching.equity import decline_report
from ptl.matching.run import save_run
from ptl.matching.transfer import pathways_in_transfer, slots_used, transfers_frame
from ptl.refdata.provenance import RefdataError
from ptl.refdata.sites import load_sites
from tests.test_matching_core import AS_OF, current_frame, geography, offer

ICB = Actor("icbkey", "icb", "QWO")
RAA = Actor("raakey", "provider", "RAA")
NCC = Actor("ncckey", "provider", "NCC")


def write_sites(folder: Path) -> Path:
    path = folder / "sites.csv"
    path.write_text("site_code,provider_code,name,postcode,lat,long\n"
                    "NCC01,NCC,Oakwood site 1,LS1 4AP,53.79,-1.54\n"
                    "RBB01,RBB,Royal Infirmary,LS2 9JT,53.62,-1.20\n", encoding="utf-8")
    return path


def test_sites_load_with_stub_organisations_and_bad_files_are_refused(store_engine: Engine, tmp_path: Path) -> None:
    assert load_sites(store_engine, write_sites(tmp_path)) == 2
    assert load_sites(store_engine, write_sites(tmp_path)) == 2  # reloading updates in place
    with store_engine.connect() as connection:
        sites = connection.execute(sa.text("SELECT code, organisation_code, latitude FROM site ORDER BY code")).all()
        kinds = connection.execute(sa.text("SELECT code, kind FROM organisation ORDER BY code")).all()
    assert [tuple(s) for s in sites] == [("NCC01", "NCC", 53.79), ("RBB01", "RBB", 53.62)]
    assert [tuple(k) for k in kinds] == [("NCC", "other"), ("RBB", "other")]
    bad = tmp_path / "bad.csv"
    bad.write_text("site_code,provider_code,lat,long\nX01,X,10.0,1.0\n", encoding="utf-8")
    with pytest.raises(RefdataError, match="outside Great Britain"):
        load_sites(store_engine, bad)


def test_offers_round_trip_and_site_checks(store_engine: Engine, tmp_path: Path) -> None:
    load_sites(store_engine, write_sites(tmp_path))
    first = add_offer(store_engine, offer(0, max_asa=2, procedure_codes=["W37.1"], priorities=["P3", "P4"],
                                          max_distance_miles=25.5, interpreter_support=False),
                      created_by="icbkey", organisation_code="QWO")
    second = add_offer(store_engine, offer(0, provider_code="RBB", site_code="RBB01", slots=3), created_by="cli:me")
    assert first.id is not None and second.id is not None and second.id > first.id
    again = get_offers(store_engine, [first.id])[0]
    assert again == first
    assert [o.id for o in list_offers(store_engine)] == [second.id, first.id]
    assert [o.id for o in list_offers(store_engine, provider_code="rbb")] == [second.id]
    assert list_offers(store_engine, active_on=dt.date(2030, 1, 1)) == []
    with pytest.raises(OfferError, match="site_code: site RBB01 belongs to RBB, not NCC"):
        add_offer(store_engine, offer(0, site_code="RBB01"), created_by="x")
    with pytest.raises(OfferError, match="'ZZZ01' is not a loaded site"):
        add_offer(store_engine, offer(0, site_code="ZZZ01"), created_by="x")


def _stored_run(engine: Engine, tmp_path: Path) -> tuple[int, list[int]]:
    load_sites(engine, write_sites(tmp_path))
    stored = add_offer(engine, offer(0, slots=2), created_by="icbkey")
    current = current_frame([
        {"clinical_priority": "P2", "days_waited": 300, "imd_quintile": 1, "ethnic_group": "Asian",
         "learning_disability": True},
        {"clinical_priority": "P3", "days_waited": 400},
        {"clinical_priority": "P4", "days_waited": 500},
        {"clinical_priority": "P5"},
    ])
    result = plan_matching(current, [stored], geography(), as_of=AS_OF)
    run_id = save_run(engine, result, [stored], created_by="icbkey", organisation_code="QWO", filters=None,
                      as_of=AS_OF, data_version=0)
    return run_id, [a["proposal_id"] for a in get_run(engine, run_id)["assignments"]]


def test_run_round_trip(store_engine: Engine, tmp_path: Path) -> None:
    run_id, proposals = _stored_run(store_engine, tmp_path)
    run = get_run(store_engine, run_id)
    assert len(proposals) == 2
    assert [(a["pathway_row_id"], a["clinical_priority"], a["to_provider_code"]) for a in run["assignments"]] == [
        (1, "P2", "NCC"), (2, "P3", "NCC")]
    assert run["assignments"][0]["learning_disability"] is True
    assert run["assignments"][0]["rtt_start_date"] == dt.date(2024, 3, 11)
    assert run["unassigned_by_reason"] == {"ineligible": 1, "outranked": 1}
    assert {u["pathway_row_id"]: u["reason"] for u in run["unassigned"]} == {3: "outranked", 4: "ineligible"}
    assert run["objective"]["assigned_by_band"]["P2"] == 1 and run["objective"]["total_days_waited"] == 700
    assert run["objective"]["scaling"]["overflow_margin"] > 1
    assert run["baseline"]["assigned"] == 2
    assert run["equity"]["populations"] == {"moved": 2, "eligible": 3, "list": 4}
    assert run["solver"].startswith("OR-Tools")
    assert get_run(store_engine, run_id, unassigned_reason="outranked")["unassigned"][0]["pathway_row_id"] == 3


def test_transfer_workflow_records_who_and_when_and_refuses_illegal_steps(store_engine: Engine,
                                                                        tmp_path: Path) -> None:
    run_id, proposals = _stored_run(store_engine, tmp_path)
    with pytest.raises(TransferForbidden, match="ICB coordinator's step"):
        propose_transfers(store_engine, run_id, RAA)
    first, second = propose_transfers(store_engine, run_id, ICB)
    with pytest.raises(TransferError, match="is already transfer"):
        propose_transfers(store_engine, run_id, ICB, [proposals[0]])
    assert slots_used(store_engine, [1]) == {1: 2}
    assert set(pathways_in_transfer(store_engine)["pathway_id"]) == {"PW1", "PW2"}

    with pytest.raises(TransferError, match=f"transfer {first} is proposed, so it cannot become completed"):
        advance_transfer(store_engine, first, "completed", NCC)
    with pytest.raises(TransferForbidden, match="sending provider's step \\(RAA\\)"):
        advance_transfer(store_engine, first, "offered_to_patient", NCC)
    advance_transfer(store_engine, first, "offered_to_patient", RAA)
    advance_transfer(store_engine, first, "accepted", RAA)
    done = advance_transfer(store_engine, first, "completed", NCC)
    assert done["state"] == "completed"
    assert done["offered_by"] == "raakey" and done["decided_by"] == "raakey" and done["completed_by"] == "ncckey"
    assert done["proposed_at"] <= done["offered_at"] <= done["decided_at"] <= done["completed_at"]
    assert [(e["from_state"], e["to_state"], e["actor"], e["actor_organisation"]) for e in done["events"]] == [
        (None, "proposed", "icbkey", "QWO"), ("proposed", "offered_to_patient", "raakey", "RAA"),
        ("offered_to_patient", "accepted", "raakey", "RAA"), ("accepted", "completed", "ncckey", "NCC")]
    with pytest.raises(TransferError, match="it is finished"):
        advance_transfer(store_engine, first, "declined", RAA, "changed mind")

    advance_transfer(store_engine, second, "offered_to_patient", RAA)
    with pytest.raises(TransferError, match="needs the patient's reason"):
        advance_transfer(store_engine, second, "declined", RAA, "  ")
    declined = advance_transfer(store_engine, second, "declined", RAA, "too far to travel")
    assert declined["decline_reason"] == "too far to travel" and declined["events"][-1]["note"] == "too far to travel"
    assert slots_used(store_engine, [1]) == {1: 1}  # a decline gives the slot back

    moves = load_moves(store_engine)
    assert moves.select("transfer_id", "from_pathway_id", "to_provider_code", "original_clock_start").rows() == [
        (first, "PW1", "NCC", dt.date(2024, 3, 11))]
    assert [t["id"] for t in list_transfers(store_engine, state="declined")] == [second]
    assert [t["id"] for t in list_transfers(store_engine, provider_code="ncc")] == [first, second]
    report = decline_report(transfers_frame(store_engine))
    p3 = report.filter(pl.col("dimension") == "imd_quintile").to_dicts()
    assert [(r["group"], r["offered"], r["declined"]) for r in p3] == [("1", 1, 0), ("not recorded", 1, 1)]
