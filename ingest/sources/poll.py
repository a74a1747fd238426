"""Polling a source once: take what arrived, ingest it, record the source's state.

`poll_source` never raises for a broken source or an unreachable store: the failure is in the
report, logged with the source and reason, and retried on the next poll, so one source can never
stop the others. Only interrupts (`BaseException`) pass through.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ingest.sources.config import FolderSource, MeshSource, Source
from ingest.sources.folder import inbox_files, poll_folder
from ingest.sources.mesh import poll_mesh
from ingest.sources.outcome import FileOutcome, PollReport, SourceUnavailable
from ingest.sources.state import PollRecord, record_poll, utc_now
from ptl.settings import Settings

log = logging.getLogger("ptl.sources")


def poll_source(engine: Engine, source: Source, settings: Settings, *,
                environ: Mapping[str, str] | None = None, **mesh_options: Any) -> PollReport:
    """Poll one source once and record its state (best effort when the store is down)."""
    started = time.perf_counter()
    polled_at = utc_now()
    report = PollReport(source=source.name, kind=source.kind, provider_code=source.provider_code)
    files: list[FileOutcome] = []
    try:
        if isinstance(source, FolderSource):
            report.waiting = poll_folder(engine, source, settings, files)
        elif isinstance(source, MeshSource):
            report.waiting = poll_mesh(engine, source, settings, files, environ=environ, **mesh_options)
    except SourceUnavailable as exc:
        report.failure = str(exc)
        if isinstance(source, FolderSource):
            with contextlib.suppress(SourceUnavailable, OSError):
                report.waiting = len(inbox_files(source))
    except Exception as exc:  # noqa: BLE001 - an unforeseen failure is this source's, not the scheduler's
        log.exception("source poll crashed", extra={"source": source.name, "error": type(exc).__name__})
        report.failure = f"unexpected {type(exc).__name__} while polling; see the scheduler log"
    report.files = files
    errors = [f for f in files if f.status == "error"]
    if report.failure is None and errors:
        report.failure = f"{errors[0].name}: {errors[0].message}"
    report.seconds = time.perf_counter() - started
    _record(engine, report, polled_at)
    _log(report)
    return report


def _record(engine: Engine, report: PollReport, polled_at: Any) -> None:
    try:
        record_poll(engine, PollRecord(
            name=report.source, kind=report.kind, provider_code=report.provider_code,
            polled_at=polled_at, seconds=report.seconds, ok=report.ok, files_waiting=report.waiting,
            last_feed_id=report.last_feed_id, failure=report.failure))
    except SQLAlchemyError as exc:
        log.warning("source state not recorded: store unreachable",
                    extra={"source": report.source, "error": type(exc).__name__})


def _log(report: PollReport) -> None:
    fields = {"source": report.source, "kind": report.kind, "provider": report.provider_code,
              "loaded": report.count("loaded"), "refused": report.count("refused"),
              "duplicate": report.count("duplicate"), "waiting": report.waiting,
              "seconds": round(report.seconds, 3)}
    if report.failure is not None:
        log.warning("source poll failed", extra={**fields, "reason": report.failure})
    elif report.files:
        log.info("source polled", extra=fields)
    else:
        log.debug("source polled", extra=fields)


def poll_sources(engine: Engine, sources: tuple[Source, ...] | list[Source], settings: Settings, *,
                 environ: Mapping[str, str] | None = None) -> list[PollReport]:
    """Poll each source once, one after another."""
    return [poll_source(engine, source, settings, environ=environ) for source in sources]
