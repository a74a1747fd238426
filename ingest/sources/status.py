"""Per-source status for operators: last poll, last feed, last failure, files waiting; and who
holds the scheduler lock. Built from the store's tables plus a live look at drop folders."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from ingest.sources.config import FolderSource, SourcesConfig
from ingest.sources.folder import inbox_files
from ingest.sources.outcome import SourceUnavailable
from ingest.sources.state import as_utc, heartbeats, source_states

#: A heartbeat older than this many lease periods (and at least a minute) means the process is gone.
STALE_AFTER_SECONDS = 60.0


@dataclass
class SourceStatus:
    name: str
    kind: str
    provider_code: str
    poll_minutes: float | None
    last_poll_at: dt.datetime | None
    last_poll_ok: bool | None
    last_feed_id: int | None
    last_feed_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    last_failure_reason: str | None
    files_waiting: int | None
    waiting_is_live: bool
    configured: bool

    def as_json(self) -> dict[str, Any]:
        def iso(moment: dt.datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {"name": self.name, "kind": self.kind, "provider_code": self.provider_code,
                "poll_minutes": self.poll_minutes, "last_poll_at": iso(self.last_poll_at),
                "last_poll_ok": self.last_poll_ok, "last_feed_id": self.last_feed_id,
                "last_feed_at": iso(self.last_feed_at), "last_failure_at": iso(self.last_failure_at),
                "last_failure_reason": self.last_failure_reason, "files_waiting": self.files_waiting,
                "files_waiting_live": self.waiting_is_live, "configured": self.configured}


@dataclass
class SchedulerStatus:
    holder: str
    role: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    stale: bool

    def as_json(self) -> dict[str, Any]:
        return {"holder": self.holder, "role": self.role, "started_at": self.started_at.isoformat(),
                "heartbeat_at": self.heartbeat_at.isoformat(), "stale": self.stale}


def sources_status(engine: Engine, config: SourcesConfig) -> list[SourceStatus]:
    states = source_states(engine)
    rows: list[SourceStatus] = []
    for source in config.sources:
        state = states.pop(source.name, None)
        waiting: int | None = state.files_waiting if state else None
        live = False
        if isinstance(source, FolderSource):
            with contextlib.suppress(SourceUnavailable, OSError):
                waiting, live = len(inbox_files(source)), True
        rows.append(SourceStatus(
            name=source.name, kind=source.kind, provider_code=source.provider_code,
            poll_minutes=source.poll_minutes,
            last_poll_at=as_utc(state.last_poll_at) if state else None,
            last_poll_ok=state.last_poll_ok if state else None,
            last_feed_id=state.last_feed_id if state else None,
            last_feed_at=as_utc(state.last_feed_at) if state else None,
            last_failure_at=as_utc(state.last_failure_at) if state else None,
            last_failure_reason=state.last_failure_reason if state else None,
            files_waiting=waiting, waiting_is_live=live, configured=True))
    for state in states.values():  # polled once, since removed from the file
        rows.append(SourceStatus(
            name=state.name, kind=state.kind, provider_code=state.provider_code, poll_minutes=None,
            last_poll_at=as_utc(state.last_poll_at), last_poll_ok=state.last_poll_ok,
            last_feed_id=state.last_feed_id, last_feed_at=as_utc(state.last_feed_at),
            last_failure_at=as_utc(state.last_failure_at), last_failure_reason=state.last_failure_reason,
            files_waiting=state.files_waiting, waiting_is_live=False, configured=False))
    return rows


def schedulers_status(engine: Engine, lease_seconds: float) -> list[SchedulerStatus]:
    now = dt.datetime.now(dt.UTC)
    stale_after = max(STALE_AFTER_SECONDS, 4 * lease_seconds)
    out = []
    for row in heartbeats(engine):
        heartbeat_at = as_utc(row.heartbeat_at) or now
        out.append(SchedulerStatus(holder=row.holder, role=row.role,
                                   started_at=as_utc(row.started_at) or now, heartbeat_at=heartbeat_at,
                                   stale=(now - heartbeat_at).total_seconds() > stale_after))
    return out
