"""The mutual-aid endpoints end to end on the three-provider API system (both backends):
offers, a matching run over the ingested list, the transfer workflow by role, and the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ptl.refdata.sites import load_sites
from tests.test_api_fixtures import ApiSystem, api_system  # noqa: F401 - fixture

OFFER = {"provider_code": "NCC", "site_code": "NCC01", "treatment_function_code": "110", "slots": 3,
         "start_date": "2025-01-06", "end_date": "2025-03-31", "max_distance_miles": 60}


def post(system: ApiSystem, path: str, key: str, body: Any) -> Any:
    return system.client.post(path, json=body, headers={"Authorization": f"Bearer {system.keys[key]}"})


def _sites(system: ApiSystem, folder: Path) -> None:
    path = folder / "sites.csv"
    path.write_text("site_code,provider_code,name,postcode,lat,long\n"
                    "NCC01,NCC,Independent site,LS1 4AP,53.80,-1.55\n"
                    "RAA01,RAA,General,LS1 4AP,53.81,-1.56\n", encoding="utf-8")
    load_sites(system.engine, path)


def test_offers_are_validated_and_owned(api_system: ApiSystem, tmp_path: Path) -> None:  # noqa: F811
    _sites(api_system, tmp_path)
    created = post(api_system, "/api/v1/offers", "provider:NCC", OFFER)
    assert created.status_code == 201, created.text
    assert created.json()["id"] >= 1 and created.json()["max_distance_miles"] == 60
    other = post(api_system, "/api/v1/offers", "provider:RAA", OFFER)
    assert other.status_code == 403 and "its own organisation's capacity only (RAA)" in other.json()["detail"]
    assert post(api_system, "/api/v1/offers", "analyst", OFFER).status_code == 403
    bad = post(api_system, "/api/v1/offers", "icb", {**OFFER, "max_asa": 9, "treatment_function_code": "1"})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    assert {p["name"] for p in bad.json()["invalid-params"]} == {"treatment_function_code", "max_asa"}
    typed = post(api_system, "/api/v1/offers", "icb", {**OFFER, "slots": "many"})
    assert typed.status_code == 400 and "slots" in typed.json()["detail"]
    listed = api_system.get("/api/v1/offers", "analyst")
    assert listed.status_code == 200 and [o["provider_code"] for o in listed.json()["items"]] == ["NCC"]


def test_matching_run_and_transfer_workflow(api_system: ApiSystem, tmp_path: Path) -> None:  # noqa: F811
    _sites(api_system, tmp_path)
    # No distance limit: this system's patients have no LSOA (no postcode directory loaded).
    offer_id = post(api_system, "/api/v1/offers", "icb", {**OFFER, "max_distance_miles": None}).json()["id"]
    assert post(api_system, "/api/v1/matching/runs", "provider:NCC", {"offer_ids": [offer_id]}).status_code == 403
    assert post(api_system, "/api/v1/matching/runs", "icb", {"offer_ids": [999]}).status_code == 400
    created = post(api_system, "/api/v1/matching/runs", "icb", {"offer_ids": [offer_id], "as_of": "2025-01-06"})
    assert created.status_code == 201, created.text
    run = created.json()
    assert {"assignments", "unassigned", "objective", "solver", "seconds", "equity"} <= set(run)
    assert len(run["assignments"]) == 3
    assert all(a["provider_code"] in ("RAA", "RBB") and a["offer_id"] == offer_id for a in run["assignments"])
    assert {u["reason"] for u in run["unassigned"]} <= {"ineligible", "out_of_range", "outranked"}
    fetched = api_system.get(f"/api/v1/matching/runs/{run['id']}?reason=outranked", "icb")
    assert fetched.status_code == 200 and all(u["reason"] == "outranked" for u in fetched.json()["unassigned"])
    assert api_system.get("/api/v1/matching/runs/999", "icb").status_code == 404

    proposed = post(api_system, "/api/v1/transfers", "icb", {"run_id": run["id"]})
    assert proposed.status_code == 201, proposed.text
    transfer_ids = proposed.json()["transfer_ids"]
    first = api_system.get(f"/api/v1/transfers/{transfer_ids[0]}", "icb").json()
    sender, receiver = f"provider:{first['from_provider_code']}", "provider:NCC"
    path = f"/api/v1/transfers/{first['id']}/transitions"
    wrong = post(api_system, path, receiver, {"to_state": "offered_to_patient"})
    assert wrong.status_code == 403 and "sending provider's step" in wrong.json()["detail"]
    early = post(api_system, path, receiver, {"to_state": "completed"})
    assert early.status_code == 409 and "it can next be offered_to_patient" in early.json()["detail"]
    assert post(api_system, path, sender, {"to_state": "offered_to_patient"}).status_code == 200
    no_reason = post(api_system, path, sender, {"to_state": "declined"})
    assert no_reason.status_code == 409 and "reason" in no_reason.json()["detail"]
    declined = post(api_system, path, sender, {"to_state": "declined", "reason": "prefers to wait locally"})
    assert declined.status_code == 200 and declined.json()["decline_reason"] == "prefers to wait locally"
    assert [e["to_state"] for e in declined.json()["events"]] == ["proposed", "offered_to_patient", "declined"]

    mine = api_system.get("/api/v1/transfers", "provider:NCC").json()["items"]
    assert {t["id"] for t in mine} == set(transfer_ids)
    assert api_system.get("/api/v1/transfers", "analyst").status_code == 403
    assert api_system.get("/api/v1/transfers?provider=RAA", "provider:NCC").status_code == 403
    declines = api_system.get("/api/v1/transfers/declines", "analyst")
    assert declines.status_code == 200 and declines.json()["suppress_below"] == 5
    acceptance = api_system.get("/api/v1/matching/acceptance?period=week", "icb")
    assert acceptance.status_code == 200 and acceptance.json()["items"]
    with api_system.engine.connect() as connection:
        actions = [r[0] for r in connection.execute(sa.text("SELECT action FROM audit_event ORDER BY id"))]
    assert {"offer_created", "matching_run", "transfer_proposed", "transfer_step", "read_identifiable"} <= set(actions)
