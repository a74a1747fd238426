"""Drop folders end to end: several providers in their own dialects, polled with
`ptl sources poll --once`, on SQLite and PostgreSQL; plus readiness rules, housekeeping, and the
rule that no identifiable value reaches a log line."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from ingest.sources.config import load_sources
from ingest.sources.housekeeping import run_housekeeping
from ingest.sources.poll import poll_source
from ptl.settings import Settings
from ptl.store.engine import make_engine
from ptl.store.models import Feed
from ptl.synth import SynthSystem, generate_system
from tests.test_sources_support import (
    CENSUS,
    age,
    deliver,
    drop_folder,
    folder_source,
    identifying_values,
    run_ptl,
    store_url_of,
    write_sources_file,
)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> SynthSystem:
    """Two trusts and two independents, two weekly censuses, in four dialects (WLMDS CSV, local
    Windows-1252 CSV, XLSX, Parquet), with planted bad rows."""
    return generate_system(tmp_path_factory.mktemp("synth"), trusts=2, independents=2, patients=600,
                           weeks=2, census_date=CENSUS, seed=7)


def _layout(system: SynthSystem, root: Path, **options: object) -> tuple[Path, dict[str, Path]]:
    folders: dict[str, Path] = {}
    sources = []
    for feed in system.feeds:
        if feed.provider_code in folders:
            continue
        folders[feed.provider_code] = drop_folder(root, feed.provider_code)
        sources.append(folder_source(f"{feed.provider_code.lower()}-drop", feed.provider_code,
                                     feed.profile, folders[feed.provider_code], **options))
    return write_sources_file(root / "sources.toml", sources), folders


def _feeds(engine: Engine) -> list[Feed]:
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        return list(session.scalars(select(Feed).order_by(Feed.id)))


def test_drop_folders_end_to_end(store_engine: Engine, system: SynthSystem, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config, folders = _layout(system, tmp_path / "drop")
    env = {"PTL_DATABASE_URL": store_url_of(store_engine), "PTL_LOG_FORMAT": "json",
           "PTL_VAR_DIR": str(tmp_path / "var")}
    week1, week2 = sorted({f.census_date for f in system.feeds})
    first = [f for f in system.feeds if f.census_date == week1]
    second = {f.provider_code: f for f in system.feeds if f.census_date == week2}
    assert len({f.file_format for f in first}) >= 3  # really several dialects

    for feed in first:
        deliver(feed.path, folders[feed.provider_code])
    # A file still being copied: half of RZA's second week, written just now.
    rza_next = second["RZA"]
    half = folders["RZA"] / "inbox" / rza_next.path.name
    data = rza_next.path.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    # A file that is not an extract at all, and a copier's temporary file (ignored).
    nzb_inbox = folders["NZB"] / "inbox"
    (nzb_inbox / f"notes_{week1}.csv").write_text("colour,size\nred,3\n", encoding="utf-8")
    age(nzb_inbox / f"notes_{week1}.csv", 3600)
    (nzb_inbox / "incoming.csv.part").write_bytes(b"partial")

    code, out, _err = run_ptl(["sources", "poll", "--once", "--no-hooks", "--config", str(config)], monkeypatch, capsys, env)
    assert code == 0, out
    feeds = {(f.provider_code, f.filename): f for f in _feeds(store_engine)}
    for feed in first:
        loaded = feeds[(feed.provider_code, feed.path.name)]
        assert (loaded.status, loaded.source, loaded.census_date) == ("loaded", "folder", week1)
        assert (loaded.rows_loaded, loaded.rows_rejected) == (feed.expected_loaded, feed.expected_rejected)
        filed = folders[feed.provider_code] / "processed" / feed.path.name
        assert filed.read_bytes() == feed.path.read_bytes()
        sidecar = json.loads(filed.with_name(filed.name + ".json").read_text())
        assert sidecar["status"] == "loaded" and sidecar["feed_id"] == loaded.id
        # Each file's load linked its identities: no `ptl link`, no hook (--no-hooks).
        assert sidecar["linking"]["status"] == "linked", sidecar["linking"]
        note = filed.with_name(filed.name + ".txt").read_text()
        assert f"LOADED: {feed.path.name}" in note and "identity linking: linked" in note
    with store_engine.connect() as connection:
        from sqlalchemy import text

        unlinked = connection.execute(text(
            "SELECT COUNT(*) FROM source_identity s LEFT JOIN identity_link l "
            "ON l.source_identity_id = s.id WHERE l.source_identity_id IS NULL")).scalar_one()
    assert unlinked == 0
    # Refused: filed under failed/ with the reason beside it.
    refused = feeds[("NZB", f"notes_{week1}.csv")]
    assert refused.status == "refused"
    why = (folders["NZB"] / "failed" / f"notes_{week1}.csv.txt").read_text()
    assert why.startswith(f"REFUSED: notes_{week1}.csv") and "missing required column" in why
    assert json.loads((folders["NZB"] / "failed" / f"notes_{week1}.csv.json").read_text())["refusal_kind"] == "missing_columns"
    # Half-written and temporary files stay put; nothing was recorded for them.
    assert half.exists() and (nzb_inbox / "incoming.csv.part").exists()
    assert ("RZA", rza_next.path.name) not in feeds
    assert f"WAITING        {rza_next.path.name}" in out and "still being written" in out
    assert "REFUSED        notes_" in out

    # Next poll: the copy has finished, the other providers' second week arrived, and RZA sent
    # its first week again under another name.
    half.write_bytes(data)
    age(half, 120)
    for provider, feed in second.items():
        if provider != "RZA":
            deliver(feed.path, folders[provider])
    rza_first = next(f for f in first if f.provider_code == "RZA")
    resent = deliver(rza_first.path, folders["RZA"], name=f"RZA_{week1}_resent.csv")
    code, out, _err = run_ptl(["sources", "poll", "--once", "--no-hooks", "--config", str(config)],
                              monkeypatch, capsys, env)
    assert code == 0, out
    feeds = {(f.provider_code, f.filename): f for f in _feeds(store_engine)}
    for provider, feed in second.items():
        loaded = feeds[(provider, feed.path.name)]
        assert (loaded.status, loaded.census_date) == ("loaded", week2)
        assert (loaded.rows_loaded, loaded.rows_rejected) == (feed.expected_loaded, feed.expected_rejected)
    original = feeds[("RZA", rza_first.path.name)]
    assert ("RZA", resent.name) not in feeds  # a duplicate records no new feed
    duplicate_note = (folders["RZA"] / "processed" / f"{resent.name}.txt").read_text()
    assert duplicate_note.startswith("ALREADY LOADED") and f"already loaded as feed {original.id}" in duplicate_note
    assert not any(any((f / "inbox").glob("*_20*")) for f in folders.values())
    assert (nzb_inbox / "incoming.csv.part").exists()

    code, out, _err = run_ptl(["sources", "status", "--json", "--config", str(config)], monkeypatch, capsys, env)
    status = {row["name"]: row for row in json.loads(out)["sources"]}
    assert status["rza-drop"]["last_feed_id"] == feeds[("RZA", rza_next.path.name)].id
    assert status["rza-drop"]["files_waiting"] == 0 and status["rza-drop"]["last_poll_ok"] is True
    assert status["nzb-drop"]["last_failure_reason"] is None  # a refused feed is not a source failure
    code, out, _err = run_ptl(["feeds", "list", "--json"], monkeypatch, capsys, env)
    assert len(json.loads(out)) == len(system.feeds) + 1


def test_done_markers_and_settling(store_engine: Engine, system: SynthSystem, tmp_path: Path) -> None:
    feed = next(f for f in system.feeds if f.provider_code == "RZA")
    folder = drop_folder(tmp_path, "RZA")
    settings = Settings(database_url=store_url_of(store_engine), var_dir=tmp_path / "var")
    config_file = write_sources_file(tmp_path / "sources.toml", [
        folder_source("marked", "RZA", feed.profile, folder, require_done_marker=True)])
    source = load_sources(config_file).sources[0]

    fresh = deliver(feed.path, folder, settled=False)
    report = poll_source(store_engine, source, settings)
    assert [f.status for f in report.files] == ["waiting"] and "marker" in report.files[0].message
    assert report.waiting == 1 and report.ok

    # The marker is the writer's promise: taken at once even though the file is brand new.
    Path(f"{fresh}.done").touch()
    report = poll_source(store_engine, source, settings)
    assert [f.status for f in report.files] == ["loaded"]
    assert not fresh.exists() and not Path(f"{fresh}.done").exists()
    assert (folder / "processed" / fresh.name).exists()


def test_store_down_leaves_files_in_the_inbox(system: SynthSystem, tmp_path: Path) -> None:
    feed = next(f for f in system.feeds if f.provider_code == "RZA")
    folder = drop_folder(tmp_path, "RZA")
    dropped = deliver(feed.path, folder)
    config_file = write_sources_file(tmp_path / "sources.toml", [
        folder_source("rza", "RZA", feed.profile, folder)])
    source = load_sources(config_file).sources[0]
    # Nothing listens on port 9: the connection is refused at once.
    unreachable = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/none",
                              connect_args={"connect_timeout": 2})
    report = poll_source(unreachable, source, Settings(var_dir=tmp_path / "var"))
    assert not report.ok and "store is unreachable" in (report.failure or "")
    assert dropped.exists() and not any((folder / "processed").iterdir())


def test_housekeeping_prunes_old_filed_extracts_and_downloads(store_engine: Engine, tmp_path: Path) -> None:
    folder = drop_folder(tmp_path, "RZA")
    config_file = write_sources_file(tmp_path / "sources.toml", [
        folder_source("rza", "RZA", "wlmds", folder),
        {"name": "rzb-mesh", "provider": "RZB", "profile": "wlmds", "kind": "mesh",
         "url": "http://127.0.0.1:9", "mailbox": "X26ABC2", "password_env": "P", "shared_key_env": "K"},
    ], scheduler={"keep_days": 30})
    config = load_sources(config_file, check_secrets=False)
    processed = folder / "processed"
    processed.mkdir()
    old, recent = processed / "old.csv", processed / "recent.csv"
    for path in (old, recent):
        path.write_text("x")
        Path(f"{path}.json").write_text("{}")
        Path(f"{path}.txt").write_text("")
        age(path, 90 * 86400)  # the provider's own old mtime does not count…
    for suffix in ("", ".json", ".txt"):
        age(Path(f"{old}{suffix}"), 40 * 86400)  # …the filing time (sidecar) does
    staging = tmp_path / "var" / "mesh" / "rzb-mesh"
    staging.mkdir(parents=True)
    (staging / ".stale.part").write_text("x")
    age(staging / ".stale.part", 2 * 86400)
    (staging / "current.csv").write_text("x")

    report = run_housekeeping(store_engine, config, Settings(var_dir=tmp_path / "var"))
    assert (report.extracts_deleted, report.downloads_deleted) == (1, 1)
    assert sorted(p.name for p in processed.iterdir()) == ["recent.csv", "recent.csv.json", "recent.csv.txt"]
    assert [p.name for p in staging.iterdir()] == ["current.csv"]


@pytest.mark.sqlite
def test_logs_of_a_full_synthetic_run_hold_no_identifiable_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    system = generate_system(tmp_path / "synth", trusts=3, independents=2, patients=1500, weeks=2,
                             census_date=CENSUS, seed=11)
    config, folders = _layout(system, tmp_path / "drop")
    for feed in system.feeds:
        deliver(feed.path, folders[feed.provider_code])
    # One more of each outcome: a refused file and a duplicate.
    (folders["RZA"] / "inbox" / f"bad_{CENSUS}.csv").write_text("a,b\n1,2\n")
    age(folders["RZA"] / "inbox" / f"bad_{CENSUS}.csv", 3600)
    deliver(system.feeds[0].path, folders[system.feeds[0].provider_code],
            name=f"again_{system.feeds[0].census_date}{system.feeds[0].path.suffix}")
    env = {"PTL_DATABASE_URL": f"sqlite:///{tmp_path / 'ptl.sqlite3'}", "PTL_LOG_FORMAT": "json",
           "PTL_LOG_LEVEL": "DEBUG", "PTL_VAR_DIR": str(tmp_path / "var")}
    code, _out, _err = run_ptl(["db", "upgrade"], monkeypatch, capsys, env)
    assert code == 0
    started = time.time()
    code, out, err = run_ptl(["sources", "poll", "--once", "--config", str(config)], monkeypatch, capsys, env)
    assert code == 0 and time.time() - started < 30
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert sum(r["message"] == "feed loaded" for r in records) == len(system.feeds)
    assert any(r["message"] == "feed refused" for r in records)
    assert any(r["message"] == "feed already loaded" for r in records)
    sidecars = "".join(p.read_text() for p in (tmp_path / "drop").rglob("*.json")) + "".join(
        p.read_text() for p in (tmp_path / "drop").rglob("*.txt"))

    # Scan the decoded records: JSON escapes non-ASCII names ("Mu\\u00f1oz"), which would hide them.
    log_text = "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n".join(
        line for line in err.splitlines() if not line.startswith("{"))
    values = identifying_values(system.truth_dir)
    assert len(values) > 1000
    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(re.escape(v) for v in values) + r")(?![A-Za-z0-9])")
    for name, text in (("log", log_text), ("command output", out), ("sidecars", sidecars)):
        found = sorted(set(pattern.findall(text)))
        assert not found, f"identifiable values in the {name}: {len(found)} found"
