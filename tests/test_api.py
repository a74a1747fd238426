"""The HTTP API against a real store (SQLite and PostgreSQL): access per role, audit,
suppression, CSV, problem details, pagination, upload, keys and rate limits."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient
from sqlalchemy import Engine

from api.app import create_app
from ptl.store.access import create_key, revoke_key
from tests import test_api_fixtures as fixtures
from tests.test_api_fixtures import CENSUS, ApiSystem, patient_rows, write_extract

api_system = fixtures.api_system
shared_system = fixtures.shared_system

IDENTITY_FIELDS = ("nhs_number", "family_name", "given_name", "date_of_birth", "postcode", "local_patient_id")

VIEW_PATHS = (
    "/api/v1/queue",
    "/api/v1/sites/stats",
    "/api/v1/equity?by=imd_quintile",
    "/api/v1/equalisation?treatment_function=110",
    "/api/v1/validation?kind=duplicate_pathways",
    "/api/v1/data-quality",
)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:ptl:problem:")
    assert body["title"] and len(body["detail"]) > 20
    assert "Traceback" not in response.text
    return dict(body)


def audit_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT COUNT(*) FROM audit_event")).scalar_one())


def last_audit(engine: Engine) -> Any:
    with engine.connect() as connection:
        return connection.execute(sa.text(
            "SELECT key_id, organisation_code, role, action, endpoint, filters, row_count "
            "FROM audit_event ORDER BY id DESC LIMIT 1")).one()


# --- health, errors ----------------------------------------------------------------------------


def test_health_and_ready_need_no_key(shared_system: ApiSystem) -> None:
    assert shared_system.get("/health", None).json() == {"status": "ok"}
    ready = shared_system.get("/ready", None)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert shared_system.get("/schema/openapi.json", None).status_code == 200


def test_errors_are_problem_details(shared_system: ApiSystem) -> None:
    assert_problem(shared_system.get("/api/v1/nowhere", "icb"), 404)
    assert_problem(shared_system.get("/api/v1/queue?limit=0", "icb"), 400)
    bad = assert_problem(shared_system.get("/api/v1/queue?priority=P9", "icb"), 400)
    assert "P1a" in bad["detail"]
    assert_problem(shared_system.get("/api/v1/queue?cursor=!!not-a-cursor", "icb"), 400)
    assert_problem(shared_system.get("/api/v1/equity?by=shoe_size", "icb"), 400)
    assert_problem(shared_system.get("/api/v1/equalisation", "icb"), 400)
    assert_problem(shared_system.client.delete("/api/v1/queue", headers={
        "Authorization": f"Bearer {shared_system.keys['icb']}"}), 405)


# --- authentication and roles --------------------------------------------------------------------


def test_missing_unknown_and_malformed_keys_are_401(shared_system: ApiSystem) -> None:
    for path in (*VIEW_PATHS, "/api/v1/feeds", "/api/v1/audit", "/api/v1/keys", "/api/v1/persons/1"):
        assert_problem(shared_system.get(path, None), 401)
        assert_problem(shared_system.get(path, "ptl_0123456789ab_" + "x" * 43), 401)
        assert_problem(shared_system.get(path, None, headers={"Authorization": "Basic abc"}), 401)
    # A real key id with the wrong secret is still unknown.
    key_id = shared_system.keys["icb"].split("_")[1]
    assert_problem(shared_system.get("/api/v1/queue", f"ptl_{key_id}_{'y' * 43}"), 401)
    # X-API-Key works as well as Bearer.
    ok = shared_system.client.get("/api/v1/sites/stats", headers={"X-API-Key": shared_system.keys["icb"]})
    assert ok.status_code == 200


@pytest.mark.parametrize(("key", "allowed"), [
    ("icb", {"views", "persons", "feeds"}),
    ("provider:RAA", {"views", "persons", "feeds"}),
    ("analyst", {"views"}),
    ("admin", {"feeds", "audit", "keys"}),
])
def test_each_role_reaches_only_its_endpoints(shared_system: ApiSystem, key: str, allowed: set[str]) -> None:
    groups = {
        "views": VIEW_PATHS,
        "persons": ("/api/v1/persons/1",),
        "feeds": ("/api/v1/feeds", "/api/v1/feeds/1"),
        "audit": ("/api/v1/audit",),
        "keys": ("/api/v1/keys",),
    }
    for group, paths in groups.items():
        for path in paths:
            response = shared_system.get(path, key)
            if group in allowed:
                assert response.status_code == 200, (path, response.text)
            else:
                body = assert_problem(response, 403)
                assert key.split(":")[0] in body["detail"]


def test_provider_cannot_read_another_providers_feed_or_list_its_feeds(shared_system: ApiSystem) -> None:
    assert_problem(shared_system.get("/api/v1/feeds/2", "provider:RAA"), 403)  # RBB's feed
    assert_problem(shared_system.get("/api/v1/feeds?provider=RBB", "provider:RAA"), 403)
    own = shared_system.get("/api/v1/feeds", "provider:RAA").json()["items"]
    assert own and {f["provider_code"] for f in own} == {"RAA"}
    assert_problem(shared_system.get("/api/v1/feeds/999999", "icb"), 404)


# --- disclosure and audit ----------------------------------------------------------------------


def test_icb_queue_is_identifiable_and_audited(shared_system: ApiSystem) -> None:
    before = audit_count(shared_system.engine)
    page = shared_system.get("/api/v1/queue?limit=20&treatment_function=110", "icb").json()
    assert page["items"] and all(i["identifiable"] and i["nhs_number"] and i["family_name"] for i in page["items"])
    assert all(i["treatment_function_code"] == "110" for i in page["items"])
    assert audit_count(shared_system.engine) == before + 1
    event = last_audit(shared_system.engine)
    assert (event.role, event.action, event.endpoint, event.row_count) == (
        "icb", "read_identifiable", "/api/v1/queue", len(page["items"]))
    assert '"treatment_function": "110"' in event.filters


def test_provider_sees_only_its_own_patients_identifiably(shared_system: ApiSystem) -> None:
    items = shared_system.get("/api/v1/queue?limit=500", "provider:RBB").json()["items"]
    own = [i for i in items if i["provider_code"] == "RBB"]
    others = [i for i in items if i["provider_code"] != "RBB"]
    assert own and others
    assert all(i["identifiable"] and i["nhs_number"] and i["person_id"] for i in own)
    for item in others:
        assert not item["identifiable"]
        assert all(item[f] is None for f in (*IDENTITY_FIELDS, "person_id", "pathway_id", "referral_id"))
        assert item["person_key"].startswith("pk_")
    event = last_audit(shared_system.engine)
    assert (event.organisation_code, event.row_count) == ("RBB", len(own))


def test_analyst_rows_are_pseudonymised_and_not_audited(shared_system: ApiSystem) -> None:
    before = audit_count(shared_system.engine)
    for path in ("/api/v1/queue?limit=500", "/api/v1/validation?kind=duplicate_pathways&limit=500",
                 "/api/v1/validation?kind=not_validated&limit=500"):
        for item in shared_system.get(path, "analyst").json()["items"]:
            assert not item["identifiable"]
            assert all(item.get(f) is None for f in (*IDENTITY_FIELDS, "person_id", "pathway_id"))
    assert audit_count(shared_system.engine) == before


def test_duplicates_share_a_person_key_across_providers(shared_system: ApiSystem) -> None:
    rows = shared_system.get("/api/v1/validation?kind=duplicate_pathways&limit=500", "analyst").json()["items"]
    by_group: dict[int, set[str]] = {}
    for row in rows:
        by_group.setdefault(row["duplicate_group"], set()).add(row["person_key"])
    assert len(by_group) == 6  # persons 0..5 wait for 110 at RAA and RBB
    assert all(len(keys) == 1 for keys in by_group.values())


def test_person_endpoint_per_role(shared_system: ApiSystem) -> None:
    queue = shared_system.get("/api/v1/validation?kind=duplicate_pathways&limit=500", "icb").json()["items"]
    person_id = queue[0]["person_id"]
    icb = shared_system.get(f"/api/v1/persons/{person_id}", "icb").json()
    assert {p["provider_code"] for p in icb["pathways"]} == {"RAA", "RBB"}
    assert all(p["identifiable"] and p["nhs_number"] for p in icb["pathways"])
    raa = shared_system.get(f"/api/v1/persons/{person_id}", "provider:RAA").json()
    for pathway in raa["pathways"]:
        assert pathway["identifiable"] == (pathway["provider_code"] == "RAA")
        if pathway["provider_code"] != "RAA":
            assert all(pathway[f] is None for f in IDENTITY_FIELDS)
    event = last_audit(shared_system.engine)
    assert (event.endpoint, event.row_count) == (f"/api/v1/persons/{person_id}", 1)
    assert_problem(shared_system.get(f"/api/v1/persons/{person_id}", "provider:NCC"), 404)
    assert_problem(shared_system.get(f"/api/v1/persons/{person_id}", "analyst"), 403)
    assert_problem(shared_system.get("/api/v1/persons/987654321", "icb"), 404)


def test_feed_detail_withholds_identity_values_from_admins(api_system: ApiSystem, tmp_path: Path) -> None:
    system = api_system
    rows = patient_rows("RAA", 20, first_person=100)
    rows[3]["date_of_birth"] = "31/02/1960"  # an identity value no reason may quote
    extract = write_extract(tmp_path / "RAA-bad.csv", rows)
    upload = _upload(system, "provider:RAA", extract, census_date=None)
    feed_id = upload.json()["feed_id"]
    issues = {k: system.get(f"/api/v1/feeds/{feed_id}", k).json()["issues"] for k in ("provider:RAA", "admin")}
    own = [i for i in issues["provider:RAA"] if i["column"] == "date_of_birth"]
    # Blanked with a warning that names the field, never its value, to the provider itself too.
    assert own and own[0]["severity"] == "warning" and "blanked" in own[0]["reason"]
    assert "31/02/1960" not in own[0]["reason"]
    admin = [i for i in issues["admin"] if i["column"] == "date_of_birth"]
    assert admin and "31/02/1960" not in admin[0]["reason"] and admin[0]["row"] == own[0]["row"]


# --- suppression -------------------------------------------------------------------------------


def test_aggregates_outside_the_identifiable_tier_are_suppressed(shared_system: ApiSystem) -> None:
    threshold = shared_system.settings.suppress_below
    for key in ("analyst", "provider:RAA"):
        answer = shared_system.get("/api/v1/sites/stats", key).json()
        assert answer["suppress_below"] == threshold
        counts = [(row[c], row["suppressed"]) for row in answer["items"]
                  for c in ("open_pathways", "within_18", "over_52", "known_clock_start")]
        assert all(value is None or value == 0 or value >= threshold for value, _ in counts)
        assert any(value is None and flagged for value, flagged in counts)
        equity = shared_system.get("/api/v1/equity?by=ethnic_category", key).json()
        for group in equity["groups"]:
            for column in ("open_pathways", "over_52", "within_18", "known_clock_start"):
                assert group[column] is None or group[column] == 0 or group[column] >= threshold
            if group["over_52"] is None:
                assert group["suppressed"] and group["pct_over_52"] is None and group["rate_ratio"] is None
    icb = shared_system.get("/api/v1/sites/stats", "icb").json()
    assert icb["suppress_below"] is None
    assert any(0 < row["within_18"] < threshold for row in icb["items"])
    asked = shared_system.get("/api/v1/sites/stats?suppress=true", "icb").json()
    assert asked["suppress_below"] == threshold


# --- CSV ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*VIEW_PATHS, "/api/v1/feeds", "/api/v1/feeds/1"])
def test_every_view_answers_csv(shared_system: ApiSystem, path: str) -> None:
    by_param = shared_system.get(path + ("&" if "?" in path else "?") + "format=csv", "icb")
    by_accept = shared_system.get(path, "icb", headers={"Accept": "text/csv"})
    for response in (by_param, by_accept):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(response.text)))
        assert table and table[0]
    assert by_param.text == by_accept.text


def test_queue_csv_is_the_whole_queue_and_matches_json(shared_system: ApiSystem) -> None:
    response = shared_system.get("/api/v1/queue?format=csv", "provider:RAA")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    pages = _walk_queue(shared_system, "provider:RAA", "", 7)
    assert [int(r["id"]) for r in rows] == [p["id"] for p in pages]
    for row in rows:
        if row["provider_code"] != "RAA":
            assert all(row[f] == "" for f in IDENTITY_FIELDS)
        else:
            assert row["nhs_number"]


# --- pagination --------------------------------------------------------------------------------


def _walk_queue(system: ApiSystem, key: str, query: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        url = f"/api/v1/queue?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        page = system.get(url, key).json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            assert len(items) == page["total"]
            return items
    raise AssertionError("the cursor never ended")


@pytest.mark.parametrize("query", ["", "&treatment_function=110", "&provider=RBB", "&priority=deferred",
                                   "&waiting_list_type=IRTT&site=RAA01"])
def test_walking_every_page_gives_the_whole_queue_once_in_order(shared_system: ApiSystem, query: str) -> None:
    whole = shared_system.get(f"/api/v1/queue?limit=500{query}", "icb").json()
    assert whole["next_cursor"] is None
    for limit in (1, 3, 10):
        walked = _walk_queue(shared_system, "icb", query, limit)
        ids = [i["id"] for i in walked]
        assert len(ids) == len(set(ids))
        assert ids == [i["id"] for i in whole["items"]]
        assert [i["position"] for i in walked] == list(range(1, len(walked) + 1))
    again = _walk_queue(shared_system, "icb", query, 3)
    assert [i["id"] for i in again] == [i["id"] for i in whole["items"]]


def test_queue_order_is_clinical_priority_then_longest_wait(shared_system: ApiSystem) -> None:
    items = shared_system.get("/api/v1/queue?limit=500", "analyst").json()["items"]
    keys = [(i["priority_rank"], -(i["days_waited"] if i["days_waited"] is not None else -1), i["id"]) for i in items]
    assert keys == sorted(keys)
    assert all(i["deferred"] == (i["clinical_priority"] in ("P5", "P6")) for i in items)


# --- upload --------------------------------------------------------------------------------------


def _upload(system: ApiSystem, key: str, path: Path, census_date: str | None = CENSUS.isoformat(),
            **fields: str) -> Any:
    data = {"profile": "canonical", **fields}
    if census_date:
        data["census_date"] = census_date
    with path.open("rb") as handle:
        return system.client.post("/api/v1/feeds", files={"file": (path.name, handle, "text/csv")}, data=data,
                                  headers={"Authorization": f"Bearer {system.keys[key]}"})


def test_provider_uploads_its_own_extract(api_system: ApiSystem, tmp_path: Path) -> None:
    rows = patient_rows("RAA", 25, first_person=200)
    extract = write_extract(tmp_path / "RAA-week2.csv", rows)
    before = api_system.get("/api/v1/queue?provider=RAA&limit=1", "icb").json()["data_version"]
    loaded = _upload(api_system, "provider:RAA", extract)
    assert loaded.status_code == 201, loaded.text
    body = loaded.json()
    assert (body["status"], body["provider_code"], body["rows_loaded"]) == ("loaded", "RAA", 25)
    with api_system.engine.connect() as connection:
        source = connection.execute(sa.text("SELECT source FROM feed WHERE id = :i"), {"i": body["feed_id"]}).scalar()
    assert source == "api"
    after = api_system.get("/api/v1/queue?provider=RAA&limit=1", "icb").json()
    assert after["data_version"] == body["feed_id"] != before
    again = _upload(api_system, "provider:RAA", extract)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    event = last_audit(api_system.engine)
    assert (event.action, event.organisation_code) == ("upload", "RAA")


def test_refused_upload_is_422_with_the_reasons(api_system: ApiSystem, tmp_path: Path) -> None:
    rows = patient_rows("RAA", 10, first_person=300)
    for row in rows[:6]:
        row["treatment_function_code"] = "ZZZ"
    refused = _upload(api_system, "provider:RAA", write_extract(tmp_path / "bad.csv", rows))
    body = assert_problem(refused, 422)
    assert body["feed"]["status"] == "refused"
    assert {r["row"] for r in body["feed"]["rejections"]} and body["feed"]["rejections"][0]["reason"]
    assert f"/api/v1/feeds/{body['feed']['feed_id']}" in body["detail"]


def test_upload_for_another_organisation_or_role_is_refused(api_system: ApiSystem, tmp_path: Path) -> None:
    extract = write_extract(tmp_path / "RBB.csv", patient_rows("RBB", 5, first_person=400))
    for key in ("icb", "analyst", "admin"):  # not a provider: no upload at all
        assert_problem(_upload(api_system, key, extract), 403)
    with api_system.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM feed WHERE source = 'api'")).scalar() == 0
    # A provider's upload that is refused is recorded as its own refused feed, and loads nothing.
    assert_problem(_upload(api_system, "provider:RAA", extract, provider="RBB"), 403)
    assert_problem(_upload(api_system, "provider:RAA", extract, profile="/etc/passwd.toml"), 400)
    with api_system.engine.connect() as connection:
        feeds = connection.execute(sa.text(
            "SELECT provider_code, status FROM feed WHERE source = 'api'")).all()
    assert [tuple(f) for f in feeds] == [("RAA", "refused"), ("RAA", "refused")]


# --- keys, revocation, rate limits -----------------------------------------------------------------


def test_admin_creates_and_revokes_keys(api_system: ApiSystem) -> None:
    admin = {"Authorization": f"Bearer {api_system.keys['admin']}"}
    created = api_system.client.post("/api/v1/keys", json={"organisation_code": "rcc", "role": "provider"},
                                     headers=admin)
    assert created.status_code == 201
    key = created.json()["key"]
    assert api_system.get("/api/v1/queue?limit=1", key).status_code == 200
    listing = api_system.get("/api/v1/keys", "admin").json()["items"]
    assert any(k["key_id"] == created.json()["key_id"] and k["organisation_code"] == "RCC" for k in listing)
    assert key not in str(listing)
    assert api_system.client.delete(f"/api/v1/keys/{created.json()['key_id']}", headers=admin).status_code == 204
    assert_problem(api_system.get("/api/v1/queue?limit=1", key), 401)
    assert_problem(api_system.client.delete(f"/api/v1/keys/{created.json()['key_id']}", headers=admin), 404)
    assert_problem(api_system.client.post("/api/v1/keys", json={"organisation_code": "x!", "role": "icb"},
                                          headers=admin), 400)
    with api_system.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT key_sha256 FROM api_client")).scalars().all()
    assert key not in stored and all(len(s) == 64 for s in stored)


def test_key_revoked_elsewhere_stops_working(api_system: ApiSystem) -> None:
    key_id, key = create_key(api_system.engine, "RAA", "provider")
    api_system.app.state["api"].keys.cache_seconds = 0  # what the CLI's revoke waits for
    assert api_system.get("/api/v1/sites/stats", key).status_code == 200
    assert revoke_key(api_system.engine, key_id)
    assert_problem(api_system.get("/api/v1/sites/stats", key), 401)


def test_rate_limit_per_key_answers_429_with_retry_after(api_system: ApiSystem) -> None:
    system = api_system
    settings = replace(system.settings, rate_limit_per_minute=3)
    with TestClient(app=create_app(settings, system.engine)) as client:
        def call(key: str) -> Any:
            return client.get("/api/v1/sites/stats", headers={"Authorization": f"Bearer {system.keys[key]}"})

        assert [call("icb").status_code for _ in range(3)] == [200, 200, 200]
        limited = call("icb")
        assert_problem(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
        assert call("analyst").status_code == 200  # per key, not per address
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize(("path", "key", "params"), [
    ("/api/v1/feeds", "icb", {"provider": "R\x00X"}),
    ("/api/v1/audit", "admin", {"organisation": "R\x00X"}),
    ("/api/v1/audit", "admin", {"action": "x\x00"}),
])
def test_a_nul_in_a_filter_is_a_400_not_a_500(api_system: ApiSystem, path: str, key: str,
                                              params: dict[str, str]) -> None:
    """A NUL byte once reached PostgreSQL as a text parameter (a 500, found by schemathesis)."""
    response = api_system.get(path, key, params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


def test_an_offset_past_any_list_is_a_400_not_a_500(api_system: ApiSystem) -> None:
    """Schemathesis found an offset beyond 64 bits overflowing the slice (a 500)."""
    response = api_system.get("/api/v1/validation", "icb",
                              params={"kind": "not_validated", "offset": str(6 * 10**25)})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
