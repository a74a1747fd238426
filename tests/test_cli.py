"""The `ptl` command as operators and scripts use it: summaries, JSON, exit codes, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from ptl.cli import main
from ptl.store.engine import make_engine
from tests.extract_rows import good_row, good_rows, write_csv


@pytest.fixture
def cli_store(store_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PTL_DATABASE_URL", store_url)
    monkeypatch.setenv("PTL_LOG_FORMAT", "json")
    assert main(["db", "upgrade"]) == 0
    return store_url


def test_ingest_json_summary_and_exit_codes(cli_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = good_rows(10)
    rows[3] = good_row(4, rtt_status="33")
    path = write_csv(tmp_path / "ptl.csv", rows)
    capsys.readouterr()
    assert main(["ingest", str(path), "--provider", "rxx", "--profile", "canonical", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {k: summary[k] for k in ("status", "rows_read", "rows_loaded", "rows_rejected")} == {
        "status": "loaded", "rows_read": 10, "rows_loaded": 9, "rows_rejected": 1}
    assert summary["rejections"] == [{"row": 5, "column": "rtt_status", "kind": "clock_stop_on_open_pathway",
                                      "reason": summary["rejections"][0]["reason"]}]
    assert main(["ingest", str(path), "--provider", "RXX", "--profile", "canonical", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["status"] == "duplicate" and again["message"] == f"already loaded as feed {summary['feed_id']}"

    bad = write_csv(tmp_path / "bad.csv", [good_row(1, provider_code="RYY")])
    assert main(["ingest", str(bad), "--provider", "RXX", "--profile", "canonical"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("REFUSED") and "holds provider code(s) RYY" in out

    assert main(["feeds", "list", "--json"]) == 0
    feeds = json.loads(capsys.readouterr().out)
    assert [(f["status"], f["current"]) for f in feeds] == [("refused", False), ("loaded", True)]
    assert main(["feeds", "show", str(summary["feed_id"]), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(i["row"], i["kind"]) for i in shown["issues"]] == [(5, "clock_stop_on_open_pathway")]


def test_user_errors_are_one_line_not_a_traceback(cli_store: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text("[columns]\npathway_ident = 'x'\n")
    path = write_csv(tmp_path / "ptl.csv", good_rows(1))
    capsys.readouterr()
    assert main(["ingest", str(path), "--provider", "RXX", "--profile", str(profile)]) == 2
    err = capsys.readouterr().err
    assert "unknown canonical field 'pathway_ident'" in err and "Traceback" not in err
    assert main(["ingest", str(tmp_path / "missing.csv"), "--provider", "RXX"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["feeds", "show", "999"]) == 2
    assert "there is no feed 999" in capsys.readouterr().err


def test_commands_refuse_an_unmigrated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PTL_DATABASE_URL", f"sqlite:///{tmp_path / 'new.sqlite3'}")
    assert main(["feeds", "list"]) == 2
    assert "run `ptl db upgrade` first" in capsys.readouterr().err


def test_kill_9_during_a_load_leaves_the_previous_snapshot_exactly(cli_store: str, tmp_path: Path) -> None:
    first = write_csv(tmp_path / "w1.csv", good_rows(50))
    assert main(["ingest", str(first), "--provider", "RXX", "--profile", "canonical"]) == 0
    engine = make_engine(cli_store)

    def state() -> tuple[object, ...]:
        with engine.connect() as connection:
            return tuple(connection.execute(sa.text(q)).scalar_one() for q in (
                "SELECT COUNT(*) FROM pathway", "SELECT COUNT(*) FROM source_identity",
                "SELECT COUNT(*) FROM feed", "SELECT feed_id FROM current_snapshot",
                "SELECT COALESCE(SUM(days_waited), 0) FROM pathway"))

    before = state()
    big = tmp_path / "w2.csv"
    base = pl.DataFrame([good_row(0, census_date="2024-07-07")])
    n = 600_000
    pl.concat([base] * n).with_columns(
        (pl.lit("PPI") + pl.int_range(n).cast(pl.String)).alias("pathway_id"),
        (pl.lit("L") + pl.int_range(n).cast(pl.String)).alias("local_patient_id"),
    ).write_csv(big)
    env = dict(os.environ, PTL_DATABASE_URL=cli_store, PTL_LOG_FORMAT="json", PTL_LOG_LEVEL="DEBUG")
    process = subprocess.Popen(
        [sys.executable, "-m", "ptl.cli", "ingest", str(big), "--provider", "RXX", "--profile", "canonical"],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    for line in process.stderr:
        if '"pathways stored"' in line or time.monotonic() > deadline:
            break  # the first batch is written, five more to come: well inside the load
    assert process.poll() is None, "the load finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    engine.dispose()
    assert state() == before
    # The store is usable afterwards: the same file loads cleanly.
    small = write_csv(tmp_path / "w3.csv", [good_row(n, census_date="2024-07-07") for n in range(1, 4)])
    assert main(["ingest", str(small), "--provider", "RXX", "--profile", "canonical"]) == 0


def test_an_unreachable_store_is_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PTL_DATABASE_URL", f"postgresql+psycopg://ptl:s3cret@127.0.0.1:{port}/ptl")
    assert main(["feeds", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ptl feeds: cannot use the store postgresql+psycopg://ptl:***@127.0.0.1:{port}/ptl")
    assert "s3cret" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ingest_links_as_part_of_the_load_so_a_person_at_two_providers_is_one_need(
        cli_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No `ptl link` between or after the loads: the loads link their own identities."""
    from ptl.views.queue import shared_queue
    from ptl.views.sites import site_stats
    from ptl.views.snapshot import invalidate_snapshot, load_snapshot

    # The same two people (same NHS numbers) waiting for 110 at both providers, one more at RYY.
    numbers = ("9434765919", "9434765870", "4010232137")
    for provider, count in (("RXX", 2), ("RYY", 3)):
        rows = [good_row(n, provider_code=provider, pathway_id=f"{provider}{n}", nhs_number=numbers[n - 1],
                         local_patient_id=f"{provider}-{n}") for n in range(1, count + 1)]
        path = write_csv(tmp_path / f"{provider}.csv", rows)
        capsys.readouterr()
        assert main(["ingest", str(path), "--provider", provider, "--profile", "canonical", "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["linking"]["status"] == "linked", summary["linking"]
        assert summary["linking"]["report"]["identities"] == 2 + (count if provider == "RYY" else 0)
    engine = make_engine(cli_store)
    invalidate_snapshot(engine)
    snapshot = load_snapshot(engine)
    assert shared_queue(snapshot.current).height == 3
    assert site_stats(snapshot, by=())["open_pathways"].to_list() == [3]
    engine.dispose()
    # The text summary says what linking did.
    path = write_csv(tmp_path / "RZZ.csv", [good_row(9, provider_code="RZZ", nhs_number=numbers[0])])
    assert main(["ingest", str(path), "--provider", "RZZ", "--profile", "canonical"]) == 0
    assert "identity linking: linked" in capsys.readouterr().out


def test_a_provider_code_that_is_not_one_is_refused_before_anything_is_read(
        cli_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL refused the feed row for a code over 12 characters: a traceback, nothing said."""
    path = write_csv(tmp_path / "ptl.csv", good_rows(2))
    capsys.readouterr()
    assert main(["ingest", str(path), "--provider", "R" * 40, "--profile", "canonical"]) == 2
    assert "provider code must be an ODS code" in capsys.readouterr().err
    assert main(["feeds", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
