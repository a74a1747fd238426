"""Nightly housekeeping for sources: retention of filed extracts and leftovers of crashes.

- Drop folders: files in `processed/` and `failed/` (with their sidecars) filed more than
  `keep_days` ago are deleted (`keep_days = 0` keeps them forever). The filing time is the
  sidecar's mtime: a moved file keeps the mtime the provider gave it, which can be far older.
  The store keeps every feed; these files are raw, identifiable extracts, so they should not
  linger in shared folders.
- MESH: downloads left in VAR_DIR/mesh/SOURCE/ by a crash more than a day ago (their messages
  were not acknowledged, so MESH has delivered or will deliver them again).
- Heartbeats of scheduler processes silent for a day (killed without a clean shutdown).
- Identity linking, once: every load links its own identities, so this changes nothing unless
  a load's linking failed; then it is the retry that needs no new file.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ingest.pipeline import link_identities
from ingest.sources.config import FolderSource, MeshSource, SourcesConfig
from ingest.sources.state import prune_heartbeats, utc_now
from ptl.settings import Settings

log = logging.getLogger("ptl.sources")

_SIDECARS = (".json", ".txt")
STAGING_KEEP_SECONDS = 24 * 3600


@dataclass
class HousekeepingReport:
    extracts_deleted: int = 0
    downloads_deleted: int = 0
    heartbeats_pruned: int = 0
    linking: str = "not run"  # linked | failed


def _filed_at(path: Path) -> float:
    sidecar = path.with_name(path.name + ".json")
    try:
        return sidecar.stat().st_mtime
    except FileNotFoundError:
        return path.stat().st_mtime


def prune_filed_extracts(source: FolderSource, keep_days: int, now: float) -> int:
    if keep_days <= 0:
        return 0
    cutoff = now - keep_days * 86400
    deleted = 0
    for directory in (source.processed, source.failed):
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if not path.is_file() or path.name.endswith(_SIDECARS) or path.name.startswith("."):
                continue
            try:
                if _filed_at(path) >= cutoff:
                    continue
                path.unlink()
                for suffix in _SIDECARS:
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
            except OSError:
                continue  # taken by someone else or not ours to delete: try again tomorrow
            deleted += 1
    return deleted


def prune_downloads(staging: Path, now: float) -> int:
    if not staging.is_dir():
        return 0
    deleted = 0
    for path in staging.iterdir():
        try:
            if path.is_file() and now - path.stat().st_mtime > STAGING_KEEP_SECONDS:
                path.unlink()
                deleted += 1
        except OSError:
            continue
    return deleted


def run_housekeeping(engine: Engine, config: SourcesConfig, settings: Settings) -> HousekeepingReport:
    report = HousekeepingReport()
    now = time.time()
    for source in config.sources:
        if isinstance(source, FolderSource):
            report.extracts_deleted += prune_filed_extracts(source, config.scheduler.keep_days, now)
        elif isinstance(source, MeshSource):
            report.downloads_deleted += prune_downloads(settings.var_dir / "mesh" / source.name, now)
    try:
        report.heartbeats_pruned = prune_heartbeats(engine, utc_now() - dt.timedelta(days=1))
    except SQLAlchemyError as exc:
        log.warning("housekeeping could not reach the store", extra={"error": type(exc).__name__})
    report.linking = link_identities(engine, settings).status
    log.info("housekeeping done", extra={
        "extracts_deleted": report.extracts_deleted, "downloads_deleted": report.downloads_deleted,
        "heartbeats_pruned": report.heartbeats_pruned, "linking": report.linking})
    return report
