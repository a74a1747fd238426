"""`ptl demo` as a new user runs it: generate, load, link; and run again, nothing new."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptl.cli import main


def test_demo_run_twice_loads_nothing_new_the_second_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PTL_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PTL_DATABASE_URL", f"sqlite:///{tmp_path / 'ptl.sqlite3'}")
    monkeypatch.setenv("PTL_LOG_FORMAT", "json")
    arguments = ["demo", "--no-serve", "--patients", "1500", "--weeks", "2", "--census-date", "2025-03-02"]
    assert main(arguments) == 0
    first = capsys.readouterr().out
    assert "loaded " in first and "linked " in first
    assert main(["feeds", "list", "--json", "--limit", "500"]) == 0
    feeds = json.loads(capsys.readouterr().out)
    assert feeds and {f["status"] for f in feeds} <= {"loaded", "refused"}
    # Every dialect the generator writes is loaded, XLSX censuses included.
    assert {"xlsx", "csv"} <= {f["file_format"] for f in feeds}

    assert main(arguments) == 0
    second = capsys.readouterr().out
    assert "nothing new" in second
    assert main(["feeds", "list", "--json", "--limit", "500"]) == 0
    assert [f["feed_id"] for f in json.loads(capsys.readouterr().out)] == [f["feed_id"] for f in feeds]
