"""Declared capacity end to end on both store backends: the table, `ptl capacity`, the
`/api/v1/capacity` endpoints with their role rules and audit, and `/sites/stats` showing a new
declaration without a feed load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from api.context import api_context
from ptl.cli import main
from ptl.declared_capacity import declare
from tests.extract_rows import good_row, write_csv
from tests.test_api import assert_problem
from tests.test_api_fixtures import CENSUS, ApiSystem, api_system  # noqa: F401 - fixture


def test_the_table_refuses_a_capacity_that_is_not_positive(store_engine: Engine) -> None:
    row = {"provider_code": "RXX", "weekly_capacity": 0, "valid_from": CENSUS, "declared_by": "test",
           "declared_at": sa.func.now()}
    from ptl.store.models import DeclaredCapacity

    with pytest.raises(IntegrityError), store_engine.begin() as connection:
        connection.execute(sa.insert(DeclaredCapacity).values(**row))
    with store_engine.begin() as connection:
        connection.execute(sa.insert(DeclaredCapacity).values(**{**row, "weekly_capacity": 1}))


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_store(store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("PTL_DATABASE_URL", store_url)
    monkeypatch.setenv("PTL_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PTL_LOG_FORMAT", "json")
    assert main(["db", "upgrade"]) == 0
    rows = [good_row(n, site_code="RXX01") for n in range(1, 4)]
    assert main(["ingest", str(write_csv(tmp_path / "rxx.csv", rows)), "--provider", "RXX",
                 "--profile", "canonical"]) == 0
    sites = tmp_path / "sites.csv"
    sites.write_text("site_code,provider_code,name,postcode,lat,long\nRYY01,RYY,Elsewhere,LS1 4AP,53.8,-1.55\n",
                     encoding="utf-8")
    assert main(["refdata", "load", "sites", str(sites)]) == 0
    return store_url


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1, captured.err
    return captured.err.strip()


def test_cli_declares_lists_and_withdraws(cli_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["capacity", "declare", "--provider", "rxx", "--treatment-function", "110", "--weekly", "30"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "capacity declaration 1: RXX every site, treatment function 110: 30 clock stops a week from 2024-06-30")
    assert main(["capacity", "declare", "--provider", "RXX", "--site", "rxx01", "--weekly", "1,200",
                 "--valid-from", "2024-07-07", "--note", "new theatre from July", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["site_code"], second["weekly_capacity"], second["valid_from"]) == ("RXX01", 1200, "2024-07-07")
    assert second["declared_by"].startswith("cli:")
    assert main(["capacity", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["id"], d["status"]) for d in listed] == [(1, "in_force"), (2, "scheduled")]
    assert main(["capacity", "list", "--provider", "RYY"]) == 0
    assert capsys.readouterr().out.startswith("no capacity declared")
    assert main(["capacity", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["id", "provider", "site", "TFC", "weekly", "valid", "from", "status", "declared"]
    assert "RXX01" in table[2] and "1,200" in table[2] and "(new theatre from July)" in table[2]
    assert main(["capacity", "withdraw", "1"]) == 0
    assert "withdrawn; it no longer counts" in capsys.readouterr().out
    assert _refused(["capacity", "withdraw", "1"], capsys).startswith(
        "ptl capacity: capacity declaration 1 was already withdrawn on ")
    assert _refused(["capacity", "withdraw", "99"], capsys) == (
        "ptl capacity: there is no capacity declaration 99: see `ptl capacity list`")


#: Bad declarations and the exact line each gets.
REFUSALS: list[tuple[list[str], str]] = [
    (["--provider", "RZZ", "--weekly", "5"],
     "--provider: 'RZZ' is not a known organisation: load its first extract (`ptl ingest`) or the ODS file "
     "(`ptl refdata load ods FILE`) before declaring its capacity"),
    (["--provider", "R-X", "--weekly", "5"], "--provider: 'R-X' is not an ODS code (3 to 12 letters or digits)"),
    (["--provider", "RXX", "--weekly", "0"],
     "--weekly: 0 is not a capacity; give 1 to 20,000 clock stops a week (to stop a declaration counting, "
     "withdraw it)"),
    (["--provider", "RXX", "--weekly", "ten"],
     "--weekly: 'ten' is not a whole number; give 1 to 20,000 clock stops a week"),
    (["--provider", "RXX", "--weekly", "52000"],
     "--weekly: 52,000 a week is more than any provider delivers; give 1 to 20,000 clock stops a week "
     "(is it a yearly or monthly figure?)"),
    (["--provider", "RXX", "--weekly", "5", "--treatment-function", "999"],
     "--treatment-function: '999' is not a treatment function code (3 characters, e.g. 110 trauma and "
     "orthopaedics)"),
    (["--provider", "RXX", "--weekly", "5", "--valid-from", "07/07/2024"],
     "--valid-from: '07/07/2024' is not a date; use YYYY-MM-DD"),
    (["--provider", "RXX", "--weekly", "5", "--site", "RYY01"], "--site: site RYY01 belongs to RYY, not RXX"),
    (["--provider", "RXX", "--weekly", "5", "--site", "RXX09"],
     "--site: 'RXX09' is neither a loaded site of RXX (`ptl refdata load sites FILE`) nor a site on RXX's "
     "current list"),
    (["--provider", "RXX", "--weekly", "0", "--valid-from", "soon"],
     "--weekly: 0 is not a capacity; give 1 to 20,000 clock stops a week (to stop a declaration counting, "
     "withdraw it); --valid-from: 'soon' is not a date; use YYYY-MM-DD"),
]


def test_cli_refuses_bad_declarations_in_one_line(cli_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    # One store for every case: each refusal leaves it unchanged.
    for options, message in REFUSALS:
        assert _refused(["capacity", "declare", *options], capsys) == f"ptl capacity: {message}", options
    assert main(["capacity", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


# --- the API -----------------------------------------------------------------------------------


def post(system: ApiSystem, key: str, body: Any) -> Any:
    return system.client.post("/api/v1/capacity", json=body, headers={"Authorization": f"Bearer {system.keys[key]}"})


def delete(system: ApiSystem, key: str, declaration_id: int) -> Any:
    return system.client.delete(f"/api/v1/capacity/{declaration_id}",
                                headers={"Authorization": f"Bearer {system.keys[key]}"})


def audit_rows(engine: Engine, action: str) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text(
            "SELECT organisation_code, role, filters FROM audit_event WHERE action = :a ORDER BY id"), {"a": action}))


def test_api_declarations_follow_the_role_rules_and_are_audited(api_system: ApiSystem) -> None:  # noqa: F811
    body = {"provider_code": "RAA", "site_code": "RAA01", "treatment_function_code": "110", "weekly_capacity": 25}
    created = post(api_system, "provider:RAA", body)
    assert created.status_code == 201, created.text
    stored = created.json()
    assert (stored["valid_from"], stored["status"], stored["declared_by_organisation"]) == (
        CENSUS.isoformat(), "in_force", "RAA")
    other = assert_problem(post(api_system, "provider:RBB", body), 403)
    assert other["detail"] == "a provider key declares its own organisation's capacity only (RBB), not RAA's"
    assert_problem(post(api_system, "analyst", body), 403)
    assert_problem(post(api_system, "admin", body), 403)
    assert post(api_system, "icb", {**body, "site_code": None, "weekly_capacity": 300}).status_code == 201

    shapes = assert_problem(post(api_system, "icb", {**body, "treatment_function_code": "999", "note": "a\x00b"}), 400)
    assert {p["name"] for p in shapes["invalid-params"]} == {"treatment_function_code", "note"}
    foreign = assert_problem(post(api_system, "icb", {**body, "site_code": "RBB01"}), 400)
    assert foreign["invalid-params"] == [{"name": "site_code", "reason": "'RBB01' is neither a loaded site of RAA "
                                          "(`ptl refdata load sites FILE`) nor a site on RAA's current list"}]
    unknown = assert_problem(post(api_system, "icb", {**body, "provider_code": "RZZ"}), 400)
    assert "'RZZ' is not a known organisation" in unknown["detail"]
    assert "weekly_capacity" in assert_problem(post(api_system, "icb", {**body, "weekly_capacity": 0}), 400)["detail"]
    assert_problem(post(api_system, "icb", {**body, "colour": "blue"}), 400)

    declared = audit_rows(api_system.engine, "capacity_declared")
    assert [(r.organisation_code, r.role) for r in declared] == [("RAA", "provider"), ("QWO", "icb")]
    assert json.loads(declared[0].filters) == {
        "declaration_id": stored["id"], "provider_code": "RAA", "site_code": "RAA01",
        "treatment_function_code": "110", "weekly_capacity": 25, "valid_from": CENSUS.isoformat()}

    listed = api_system.get("/api/v1/capacity?provider=raa", "analyst")
    assert listed.status_code == 200
    assert [(d["weekly_capacity"], d["status"]) for d in listed.json()["items"]] == [(300, "in_force"), (25, "in_force")]
    assert api_system.get("/api/v1/capacity?provider=RBB", "analyst").json()["items"] == []
    assert_problem(api_system.get("/api/v1/capacity?provider=R%21", "analyst"), 400)

    assert_problem(delete(api_system, "provider:RBB", stored["id"]), 403)
    withdrawn = delete(api_system, "provider:RAA", stored["id"])
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    assert "already withdrawn" in assert_problem(delete(api_system, "icb", stored["id"]), 409)["detail"]
    assert_problem(delete(api_system, "icb", 999), 404)
    assert [json.loads(r.filters) for r in audit_rows(api_system.engine, "capacity_withdrawn")] == [
        {"declaration_id": stored["id"], "provider_code": "RAA"}]


def _stats(system: ApiSystem, key: str, query: str) -> dict[Any, dict[str, Any]]:
    answer = system.get(f"/api/v1/sites/stats?{query}", key)
    assert answer.status_code == 200, answer.text
    return {(row["provider_code"], row["site_code"]): row for row in answer.json()["items"]}


def test_sites_stats_show_a_new_declaration_at_once(api_system: ApiSystem) -> None:  # noqa: F811
    query = "by=provider&treatment_function=110"
    before = _stats(api_system, "icb", query)
    assert before[("RAA", None)]["declared_weekly_capacity"] is None
    assert post(api_system, "provider:RAA", {"provider_code": "RAA", "treatment_function_code": "110",
                                             "weekly_capacity": 40}).status_code == 201
    row = _stats(api_system, "icb", query)[("RAA", None)]
    assert row["declared_weekly_capacity"] == 40
    assert row["declared_expected_wait_weeks"] == pytest.approx(row["capacity_queue"] / 40)
    assert row["declared_load"] is None  # one census: no weekly additions to compare
    assert {k: v for k, v in row.items() if not k.startswith("declared")} == {
        k: v for k, v in before[("RAA", None)].items() if not k.startswith("declared")}
    # A declaration valid only after the census does not count yet.
    declare(api_system.engine, provider_code="RAA", treatment_function_code="110", weekly_capacity=90,
            valid_from="2025-02-02", declared_by="test")
    assert _stats(api_system, "icb", query)[("RAA", None)]["declared_weekly_capacity"] == 40
    # One made by another process (the CLI elsewhere) shows once the data version is checked.
    with api_system.engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO declared_capacity (provider_code, treatment_function_code, weekly_capacity, valid_from, "
            "declared_by, declared_at) VALUES ('RAA', '110', 55, :census, 'cli:elsewhere', :at)"),
            {"census": CENSUS, "at": "2099-01-01 00:00:00"})
    api_context_of(api_system).version_check_seconds = 0.0
    assert _stats(api_system, "icb", query)[("RAA", None)]["declared_weekly_capacity"] == 55


def api_context_of(system: ApiSystem) -> Any:
    class _Request:  # api_context reads only `app.state`
        app = system.app

    return api_context(_Request())  # type: ignore[arg-type]


def test_declared_figures_follow_small_number_suppression(api_system: ApiSystem) -> None:  # noqa: F811
    query = "by=site&treatment_function=110"
    rows = _stats(api_system, "icb", query)
    for provider, site in rows:
        if site is not None:
            declare(api_system.engine, provider_code=provider, site_code=site, treatment_function_code="110",
                    weekly_capacity=7, declared_by="test")
    threshold = api_system.settings.suppress_below
    seen = {"suppressed": 0, "shown": 0}
    for key, row in _stats(api_system, "analyst", query).items():
        if key[1] is None:
            continue
        # The declared figure is an organisation's own statement: always shown.
        assert row["declared_weekly_capacity"] == 7
        if row["capacity_queue"] is None:
            assert row["suppressed"] and row["declared_expected_wait_weeks"] is None
            seen["suppressed"] += 1
        else:
            assert row["capacity_queue"] == 0 or row["capacity_queue"] >= threshold
            assert row["declared_expected_wait_weeks"] == pytest.approx(row["capacity_queue"] / 7)
            seen["shown"] += 1
    assert seen["suppressed"] and seen["shown"], seen
