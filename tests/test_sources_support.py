"""Shared pieces for the sources, MESH and scheduler tests (no tests of its own): writing a
sources file, laying out drop folders for a synthetic system, running the `ptl` command
in-process, and the identifiable values of a synthetic system's ground truth."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine

#: A Sunday in the past, so generated censuses are never in the future.
CENSUS = dt.date(2025, 11, 23)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_sources_file(path: Path, sources: list[dict[str, Any]],
                       scheduler: dict[str, Any] | None = None) -> Path:
    lines: list[str] = []
    if scheduler:
        lines.append("[scheduler]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in scheduler.items())
        lines.append("")
    for source in sources:
        lines.append("[[source]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in source.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def age(path: Path, seconds: float) -> None:
    """Make a file look as if it was last written `seconds` ago."""
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def drop_folder(root: Path, provider_code: str) -> Path:
    folder = root / provider_code
    (folder / "inbox").mkdir(parents=True, exist_ok=True)
    return folder


def folder_source(name: str, provider_code: str, profile: str, folder: Path, **options: Any) -> dict[str, Any]:
    return {"name": name, "provider": provider_code, "profile": profile, "kind": "folder",
            "path": str(folder), "poll_minutes": 5, "census_date_from_filename": True,
            "settle_seconds": 30, **options}


def deliver(src: Path, folder: Path, name: str | None = None, settled: bool = True) -> Path:
    """Copy an extract into a drop folder's inbox, as a provider would."""
    target = folder / "inbox" / (name or src.name)
    shutil.copyfile(src, target)
    if settled:
        age(target, 3600)
    return target


def store_url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def identifying_values(truth_dir: Path) -> set[str]:
    """NHS numbers, names, postcodes (both spacings) and local patient ids from the truth."""
    persons = pl.read_csv(truth_dir / "persons.csv", infer_schema=False)
    values: set[str] = set()
    for column in ("nhs_number", "given_name", "family_name", "postcode"):
        values.update(v for v in persons.get_column(column).drop_nulls().to_list() if len(v) >= 3)
    values.update(v.replace(" ", "") for v in persons.get_column("postcode").drop_nulls().to_list())
    identities = pl.read_csv(truth_dir / "identities.csv", infer_schema=False)
    values.update(identities.get_column("local_patient_id").drop_nulls().to_list())
    return values


def run_ptl(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            env: dict[str, str]) -> tuple[int, str, str]:
    """Run `ptl ARGS` in this process with `env` set; returns (exit code, stdout, stderr).
    `ptl.cli.main` replaces the root log handlers; pytest's are put back afterwards."""
    from ptl.cli import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    capsys.readouterr()
    try:
        code = main(args)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    out, err = capsys.readouterr()
    return code, out, err
