"""End to end: `ptl synth` writes a system in five dialects (one sparse: required fields and the NHS number only); ingesting every feed finds
exactly what the generator planted (counts, and every rejected or warned row and column)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from ptl.cli import main

CENSUS = dt.date(2025, 3, 2)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("system")
    assert main(["synth", "--out", str(out), "--trusts", "3", "--independents", "2", "--patients", "3000",
                 "--weeks", "2", "--census-date", CENSUS.isoformat(), "--seed", "11"]) == 0
    return out


def test_every_dialect_loads_exactly_as_planted(
    synth_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PTL_DATABASE_URL", store_url)
    assert main(["db", "upgrade"]) == 0
    manifest = json.loads((synth_dir / "truth" / "manifest.json").read_text())
    truth_rejected = pl.read_csv(synth_dir / "truth" / "rejections.csv", infer_schema=False)
    truth_warned = pl.read_csv(synth_dir / "truth" / "warnings.csv", infer_schema=False)
    formats_seen = set()
    capsys.readouterr()
    for feed in manifest["feeds"]:
        profile = feed["profile"] if feed["profile"] in ("wlmds", "canonical") else str(synth_dir / feed["profile"])
        args = ["ingest", str(synth_dir / feed["path"]), "--provider", feed["provider_code"], "--profile",
                profile, "--census-date", feed["census_date"], "--json"]
        assert main(args) == 0
        result = json.loads(capsys.readouterr().out)
        formats_seen.add(feed["file_format"])
        label = f"{feed['path']}"
        assert result["status"] == "loaded", (label, result["message"])
        assert (result["rows_read"], result["rows_loaded"], result["rows_rejected"]) == (
            feed["rows"], feed["expected_loaded"], feed["expected_rejected"]), label
        expected = truth_rejected.filter(pl.col("file") == feed["path"])
        assert {(r["row"], r["column"]) for r in result["rejections"]} == {
            (int(r), c) for r, c in expected.select("row", "column").iter_rows()}, label
        expected_w = truth_warned.filter(pl.col("file") == feed["path"])
        assert {(w["row"], w["column"]) for w in result["warnings"]} == {
            (int(r), c) for r, c in expected_w.select("row", "column").iter_rows()}, label
    assert formats_seen == {"csv", "xlsx", "parquet"}

    from ptl.store.engine import make_engine

    engine = make_engine(store_url)
    with engine.connect() as connection:
        current = connection.execute(sa.text(
            "SELECT COUNT(*), MIN(c.census_date), MAX(c.census_date) FROM current_snapshot c")).one()
        loaded = connection.execute(sa.text("SELECT COUNT(*) FROM pathway")).scalar_one()
    assert current[0] == len(manifest["providers"])
    assert str(current[1])[:10] == str(current[2])[:10] == CENSUS.isoformat()
    assert loaded == sum(f["expected_loaded"] for f in manifest["feeds"])
    engine.dispose()


def test_a_demo_sized_system_validates_exactly_as_planted(tmp_path: Path) -> None:
    """The demo's size (20,000 patients): large enough for Polars to use its multi-buffer
    string layouts, which small test files never reach (a Polars panic once hid there)."""
    from ingest.profiles import load_profile
    from ingest.read import read_extract
    from ingest.validate import map_columns, validate
    from ptl.synth import generate_system

    system = generate_system(tmp_path / "demo", patients=20_000, weeks=1, census_date=CENSUS, seed=42)
    for feed in system.feeds:
        profile = load_profile(feed.profile)
        extract = read_extract(feed.path, profile)
        mapped = map_columns(extract.frame, profile, filename=feed.path.name,
                             provider_code=feed.provider_code, census_date=feed.census_date)
        checked = validate(mapped, profile, extract.row_offset, extract.frame)
        assert (checked.rows_read, checked.rows_rejected) == (feed.rows, feed.expected_rejected), feed.path.name
        assert checked.clean.height == feed.expected_loaded


def test_loading_in_small_batches_stores_exactly_what_one_batch_stores(
    synth_dir: Path, store_url: str, tmp_path: Path
) -> None:
    """The pipeline stores a file batch by batch while checking the next one. Cut every feed
    of the synthetic system (two censuses, patients at several providers, planted duplicates
    and bad rows) into batches of 97 rows: pathways, identities (first row of a patient wins,
    later censuses update changed values) and row issues must equal a one-batch load. On
    SQLite the batched load goes through the ADBC writer process and the one-batch load
    through Python's sqlite3, so the two write paths are held to the same result."""
    from ingest.pipeline import ingest_file
    from ptl.settings import Settings
    from ptl.store import migrate
    from ptl.store.engine import make_engine

    manifest = json.loads((synth_dir / "truth" / "manifest.json").read_text())
    stores = {"batched": (store_url, 97, 0),
              "whole": (f"sqlite:///{tmp_path / 'whole.sqlite3'}", 1_000_000, 10_000_000)}
    contents: dict[str, dict[str, pl.DataFrame]] = {}
    for label, (url, batch_rows, process_rows) in stores.items():
        settings = Settings(database_url=url, sqlite_writer_process_rows=process_rows)
        engine = make_engine(url)
        migrate.upgrade(engine)
        for feed in manifest["feeds"]:
            profile = feed["profile"] if feed["profile"] in ("wlmds", "canonical") else synth_dir / feed["profile"]
            result = ingest_file(engine, synth_dir / feed["path"], provider_code=feed["provider_code"],
                                 profile=profile, census_date=dt.date.fromisoformat(feed["census_date"]),
                                 batch_rows=batch_rows, settings=settings)
            assert result.status == "loaded", result.message
        with engine.connect() as connection:
            def frame(sql: str) -> pl.DataFrame:
                rows = connection.execute(sa.text(sql)).all()
                names = list(connection.execute(sa.text(sql)).keys())
                return pl.DataFrame([[None if v is None else str(v)[:10] if "date" in n else str(v)
                                      for v, n in zip(row, names, strict=True)] for row in rows],
                                    schema=names, orient="row").sort(names)
            contents[label] = {
                "pathways": frame(
                    "SELECT p.provider_code, p.census_date, p.pathway_id, p.rtt_start_date, p.days_waited, "
                    "p.imd_decile, p.clinical_priority, s.local_patient_id FROM pathway p "
                    "JOIN source_identity s ON s.id = p.source_identity_id"),
                "identities": frame(
                    "SELECT provider_code, local_patient_id, nhs_number, family_name, given_name, "
                    "date_of_birth, postcode, values_census_date FROM source_identity"),
                "issues": frame(
                    "SELECT f.provider_code, f.census_date, i.row_number, i.column_name, i.severity, "
                    "i.kind, i.reason FROM row_issue i JOIN feed f ON f.id = i.feed_id"),
            }
        engine.dispose()
    for table in ("pathways", "identities", "issues"):
        batched, whole = contents["batched"][table], contents["whole"][table]
        assert batched.height > 0, table
        assert batched.equals(whole), table
