"""Every upload leaves a trace: refused before reading (file type, empty file, profile, another
provider), refused by the pipeline, or failed inside the service, each is a feed record with its
reason and an audit event, and no answer, feed message or log line quotes the file's patients."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests import test_api_fixtures as fixtures
from tests.test_api_fixtures import CENSUS, ApiSystem, patient_rows, write_extract

api_system = fixtures.api_system

IDENTITY_FIELDS = ("nhs_number", "family_name", "given_name", "date_of_birth", "postcode", "local_patient_id")


def post(system: ApiSystem, name: str, content: bytes, key: str = "provider:RAA", **fields: str) -> Any:
    data = {"profile": "canonical", "census_date": CENSUS.isoformat(), **fields}
    return system.client.post("/api/v1/feeds", files={"file": (name, content, "text/csv")}, data=data,
                              headers={"Authorization": f"Bearer {system.keys[key]}"})


def patient_values(rows: list[dict[str, str]]) -> list[str]:
    return [row[f] for row in rows for f in IDENTITY_FIELDS if row[f]]


def newest_feed(system: ApiSystem) -> Any:
    with system.engine.connect() as connection:
        return connection.execute(sa.text(
            "SELECT id, provider_code, status, message, filename, sha256, source, profile, file_format "
            "FROM feed ORDER BY id DESC LIMIT 1")).one()


def newest_audit(system: ApiSystem) -> Any:
    with system.engine.connect() as connection:
        return connection.execute(sa.text(
            "SELECT action, organisation_code, status_code, filters, row_count FROM audit_event "
            "ORDER BY id DESC LIMIT 1")).one()


def assert_nothing_quoted(values: list[str], *texts: str) -> None:
    for text in texts:
        leaked = [value for value in values if value in text]
        assert not leaked, f"patient values in {text[:200]!r}"


_DEEP_TOML = "name = 'x'\nnested = " + "[" * 50_000 + "]" * 50_000
_DOTTED_TOML = "[" + ".".join(["columns"] * 20_000) + "]\n"


@pytest.mark.parametrize(("name", "kind", "fields", "status", "says"), [
    ("ptl.exe", "file_type", {}, 400, "not a CSV, XLSX or Parquet file"),
    ("ptl.csv", "empty", {}, 400, "empty"),
    ("ptl.csv", "profile", {"profile": "/etc/passwd.toml"}, 400, "not known"),
    ("ptl.csv", "profile", {"profile": "[columns]\npathway_id = "}, 400, "not valid TOML"),
    ("ptl.csv", "profile", {"profile": "[columns]\nshoe_size = 'Shoe'"}, 400, "shoe_size"),
    ("ptl.csv", "profile", {"profile": _DEEP_TOML}, 400, "levels deep"),
    ("ptl.csv", "profile", {"profile": _DOTTED_TOML}, 400, "levels deep"),
    ("ptl.csv", "profile", {"profile": "x = '" + "a" * 300_000 + "'"}, 400, "larger than"),
    ("ptl.csv", "other_provider", {"provider": "RBB"}, 403, "its own organisation"),
    # A NUL quoted in the reason once left the refusal unrecorded on PostgreSQL (a 500).
    ("ptl.csv", "other_provider", {"provider": "R\x00B"}, 403, "its own organisation"),
    ("ptl.csv", "profile", {"profile": '"\\u0000" = 1\n[columns]\n'}, 400, "unknown setting"),
])
def test_an_upload_refused_before_reading_is_recorded_and_audited(
        api_system: ApiSystem, tmp_path: Path, name: str, kind: str, fields: dict[str, str], status: int,
        says: str) -> None:
    rows = patient_rows("RAA", 8, first_person=500)
    content = b"" if kind == "empty" else write_extract(tmp_path / "x.csv", rows).read_bytes()
    response = post(api_system, name, content, **fields)
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert says in body["detail"] and "Traceback" not in response.text
    feed = newest_feed(api_system)
    assert (feed.provider_code, feed.status, feed.source, feed.filename) == ("RAA", "refused", "api", name)
    assert feed.sha256 == hashlib.sha256(content).hexdigest()
    assert says in feed.message and f"feed {feed.id}" in body["detail"]
    assert body["feed"]["feed_id"] == feed.id and body["feed"]["status"] == "refused"
    audit = newest_audit(api_system)
    assert (audit.action, audit.organisation_code, audit.status_code, audit.row_count) == ("upload", "RAA", status, 0)
    assert f'"feed_id": {feed.id}' in audit.filters and kind in audit.filters
    assert_nothing_quoted(patient_values(rows), response.text, feed.message, feed.profile)
    # Nothing was loaded: RAA's current snapshot is the feed it had.
    with api_system.engine.connect() as connection:
        current = connection.execute(sa.text(
            "SELECT feed_id FROM current_snapshot WHERE provider_code = 'RAA'")).scalar_one()
    assert current != feed.id


def test_a_failure_inside_ingest_is_a_recorded_failed_feed_and_a_problem_with_a_reference(
        api_system: ApiSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A fault in the pipeline (here one raised on purpose, whose message quotes a patient as
    a database error would) answers a problem with a reference, never its message or a
    traceback, and leaves a failed feed and an audit event."""
    import ingest.pipeline

    rows = patient_rows("RAA", 8, first_person=600)
    content = write_extract(tmp_path / "x.csv", rows).read_bytes()

    def failing_ingest(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"value too long for {rows[0]['local_patient_id']} {rows[0]['family_name']}")

    monkeypatch.setattr(ingest.pipeline, "ingest_file", failing_ingest)
    with caplog.at_level(logging.ERROR):
        response = post(api_system, "week2.csv", content)
    assert response.status_code == 500
    body = response.json()
    assert body["reference"] and body["reference"] in body["detail"]
    feed = newest_feed(api_system)
    assert (feed.status, feed.filename, feed.provider_code) == ("failed", "week2.csv", "RAA")
    assert feed.sha256 == hashlib.sha256(content).hexdigest()
    assert body["reference"] in feed.message and body["feed"]["feed_id"] == feed.id
    audit = newest_audit(api_system)
    assert (audit.action, audit.status_code) == ("upload", 500) and '"status": "failed"' in audit.filters
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert body["reference"] in logged
    assert_nothing_quoted(patient_values(rows), response.text, feed.message, logged)
    assert "Traceback" not in response.text and "RuntimeError" not in response.text
    # The failed feed is listed like any other, with its reason.
    listed = api_system.get(f"/api/v1/feeds/{feed.id}", "provider:RAA").json()
    assert listed["status"] == "failed" and body["reference"] in listed["message"]


def _over_long_local_id(rows: list[dict[str, str]]) -> bytes:
    rows[2]["local_patient_id"] = "L" * 41  # the column holds 40 characters
    return b""


def _nul_in_a_pathway_id(rows: list[dict[str, str]]) -> bytes:
    rows[2]["pathway_id"] = "PW\x00LONG-L" + "L" * 30
    return b""


def _nul_in_a_name(rows: list[dict[str, str]]) -> bytes:
    rows[2]["family_name"] = "FAM\x00LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL"
    return b""


def _nul_in_a_header(rows: list[dict[str, str]]) -> bytes:
    return b"pathway_id\x00ref"  # a header, which a refusal may quote


@pytest.mark.parametrize("spoil", [_over_long_local_id, _nul_in_a_pathway_id, _nul_in_a_name, _nul_in_a_header])
def test_a_value_the_store_cannot_hold_never_fails_unrecorded(api_system: ApiSystem, tmp_path: Path,
                                                               spoil: Any) -> None:
    """Values PostgreSQL refuses (longer than the column, a NUL in text) were a 500 with a
    traceback and no feed. Whatever the pipeline makes of them, the upload is answered without
    a stack trace, recorded and audited, and the answer never quotes the value (marked by a
    run of L's). A 500 here is a failed feed with a reference: the rows' checks should refuse
    such values first (see the report of this change)."""
    rows = patient_rows("RAA", 8, first_person=700)
    header = spoil(rows)
    content = write_extract(tmp_path / "x.csv", rows).read_bytes()
    if header:
        content = content.replace(b"pathway_id", header, 1)
    before = newest_feed(api_system).id
    response = post(api_system, "spoilt.csv", content)
    assert response.status_code in (201, 422, 500), response.text[:300]
    feed = newest_feed(api_system)
    assert feed.id > before and feed.filename == "spoilt.csv"
    if response.status_code == 500:
        assert feed.status == "failed" and response.json()["reference"] in feed.message
    audit = newest_audit(api_system)
    assert audit.action == "upload" and f'"feed_id": {feed.id}' in audit.filters
    assert "L" * 30 not in response.text and "Traceback" not in response.text
