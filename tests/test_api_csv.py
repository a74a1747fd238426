"""Every CSV the API answers is safe to open in a spreadsheet: hostile values planted in the
store (as a sender or a client could get them there) come back with a leading `'`, plain
negative numbers stay numbers. The CSV endpoints are found in the OpenAPI document (every
operation taking `format`), so one added later is covered without editing this file."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.test_api_fixtures import ApiSystem, make_system
from tests.test_spreadsheet import reference

#: planted value → what the CSV must hold
HOSTILE = {
    "=1+1": "'=1+1",
    "@SUM(A1)": "'@SUM(A1)",
    "-2+3": "'-2+3",
    "+447700900123": "'+447700900123",
    "\t=cmd": "'\t=cmd",
    "\r=1+1": "'\r=1+1",
    "-1.5": "-1.5",  # a plain number stays a number
}
#: parameters an operation needs to answer at all (the schema cannot say which values exist)
NEEDS = {"/api/v1/equalisation": {"treatment_function": "110"}, "/api/v1/equity": {"by": "ethnic_category"}}


def plant_hostile_values(engine: Engine) -> None:
    """RAA's first patients and pathways, and its feed, carry values a spreadsheet would run."""
    with engine.begin() as connection:
        def run(sql: str, **params: Any) -> None:
            assert connection.execute(sa.text(sql), params).rowcount >= 1, sql

        run("UPDATE pathway SET site_code = '=1+1', procedure_code = '@SUM(A1)', referral_id = :tab "
            "WHERE pathway_id = 'RAA-PW0000'", tab="\t=cmd")
        run("UPDATE pathway SET site_code = '=1+1', pathway_id = '-2+3' WHERE pathway_id = 'RAA-PW0002'")
        run("UPDATE source_identity SET family_name = '@SUM(A1)', given_name = '+447700900123', "
            "postcode = :cr WHERE local_patient_id = 'RAA-L00000'", cr="\r=1+1")
        run("UPDATE source_identity SET local_patient_id = '-1.5' WHERE local_patient_id = 'RAA-L00001'")
        run("UPDATE feed SET filename = '@SUM(A1).csv', profile = '-2+3' WHERE id = 1")


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite),
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def hostile_system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiSystem]:
    from ptl.store import migrate
    from ptl.store.engine import make_engine
    from tests.conftest import _temporary_postgres_url

    urls = (iter([f"sqlite:///{tmp_path / 'ptl.sqlite3'}"]) if request.param == "sqlite"
            else _temporary_postgres_url())
    engine = make_engine(next(urls))
    try:
        migrate.upgrade(engine)
        yield from make_system(engine, tmp_path, prepare=plant_hostile_values)
    finally:
        engine.dispose()
        for _ in urls:
            pass


def csv_requests(system: ApiSystem) -> list[tuple[str, dict[str, str]]]:
    """(path, query) for every operation that answers `format=csv`, every value of a required
    choice (each validation worklist), real ids in paths."""
    with system.engine.connect() as connection:
        person = connection.execute(sa.text(
            "SELECT l.person_id FROM identity_link l JOIN source_identity s ON s.id = l.source_identity_id "
            "WHERE s.family_name = '@SUM(A1)'")).scalar_one()
    ids = {"person_id": str(person), "feed_id": "1"}
    document = system.client.get("/schema/openapi.json").json()
    requests: list[tuple[str, dict[str, str]]] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            parameters = operation.get("parameters", [])
            if method != "get" or not any(p["name"] == "format" for p in parameters):
                continue
            concrete = path.format(**ids)
            choices: list[dict[str, str]] = [{"format": "csv", **NEEDS.get(path, {})}]
            for parameter in parameters:
                if parameter["in"] == "query" and parameter.get("required"):
                    values = parameter["schema"]["enum"]
                    choices = [{**c, parameter["name"]: v} for c in choices for v in values]
            requests.extend((concrete, query) for query in choices)
    assert len({path for path, _ in requests}) >= 12
    return requests


def test_every_csv_export_neutralises_formulas(hostile_system: ApiSystem) -> None:
    system = hostile_system
    seen: set[str] = set()
    for path, query in csv_requests(system):
        response = system.get(path, "icb", params=query)
        if response.status_code == 403:
            response = system.get(path, "admin", params=query)
        assert response.status_code == 200, (path, query, response.text[:300])
        assert response.headers["content-type"].startswith("text/csv"), path
        table = list(csv.reader(io.StringIO(response.text, newline="")))
        assert table, path
        for row in table:
            for cell in row:
                assert reference(cell) == cell, (path, query, cell)
                seen.add(cell)
    for planted, written in HOSTILE.items():
        assert written in seen, f"{planted!r} never came back in any CSV"
    assert not seen & {"=1+1", "@SUM(A1)", "-2+3", "+447700900123", "\t=cmd", "\r=1+1"}


def test_the_queue_csv_keeps_numbers_and_neutralises_names(hostile_system: ApiSystem) -> None:
    response = hostile_system.get("/api/v1/queue", "icb", params={"format": "csv", "provider": "RAA"})
    rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
    planted = next(r for r in rows if r["family_name"] == "'@SUM(A1)")
    assert (planted["given_name"], planted["site_code"], planted["procedure_code"]) == (
        "'+447700900123", "'=1+1", "'@SUM(A1)")
    assert any(r["local_patient_id"] == "-1.5" for r in rows)
    assert all(int(r["days_waited"]) >= 0 for r in rows if r["days_waited"])
    # The JSON answer is data, not a spreadsheet: it carries the value as stored.
    page = hostile_system.get("/api/v1/queue", "icb", params={"provider": "RAA", "limit": 500}).json()
    assert any(item["family_name"] == "@SUM(A1)" for item in page["items"])
