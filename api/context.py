"""The state one API process shares across requests: store, settings, keys, caches."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl
from litestar import Request
from sqlalchemy import Engine

from api.audit_writer import AuditUnavailable, AuditWriter
from api.auth import KeyRing
from api.disclosure import Disclosed, Pseudonymiser, disclose_rows, sees_identifiable
from api.problems import ProblemError
from api.rate_limit import RateLimiter
from api.view_cache import ViewCache
from ptl.settings import Settings
from ptl.store.access import Client, audit_event_values
from ptl.views.feed_frames import FeedFrameCache

if TYPE_CHECKING:
    from ptl.views.snapshot import Snapshot

#: How long a request may use the data version the last request saw before asking the store
#: again. Asking costs a round trip per request; a feed loaded elsewhere (CLI, scheduler, another
#: replica) shows up within this time. Uploads through this process show up at once.
VERSION_CHECK_SECONDS = 1.0


@dataclass
class ApiContext:
    """Built once by `create_app`; handlers reach it as `request.app.state["api"]`."""

    settings: Settings
    engine: Engine
    keys: KeyRing
    rate_limiter: RateLimiter
    pseudonymiser: Pseudonymiser
    results: ViewCache = field(default_factory=ViewCache)
    version_check_seconds: float = VERSION_CHECK_SECONDS
    #: shared (group) commits of audit events
    audit_writer: AuditWriter = field(init=False)
    #: loaded feeds' pathway rows on local disk, so a rebuild reads only new feeds from the store
    feed_frames: FeedFrameCache = field(init=False)
    _snapshot: tuple[Snapshot, float] | None = None
    _snapshot_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings, engine: Engine) -> ApiContext:
        return cls(
            settings=settings, engine=engine, keys=KeyRing(engine),
            rate_limiter=RateLimiter(settings.rate_limit_per_minute),
            pseudonymiser=Pseudonymiser(settings.pseudonym_key),
        )

    def __post_init__(self) -> None:
        self.audit_writer = AuditWriter(self.engine)
        self.feed_frames = FeedFrameCache(self.settings.var_dir / "feed-frames")

    def held_snapshot(self) -> Snapshot | None:
        """The snapshot the last request saw, while it needs no version check (non-blocking:
        for the event loop's fast path); None when `snapshot()` must ask the store."""
        held = self._snapshot
        if held is not None and time.monotonic() - held[1] < self.version_check_seconds:
            return held[0]
        return None

    def snapshot(self) -> Snapshot:
        """The analytics snapshot of the current data version (blocking: from a worker thread)."""
        from ptl.views.snapshot import load_snapshot

        held_now = self.held_snapshot()
        if held_now is not None:
            return held_now
        with self._snapshot_lock:
            held = self._snapshot
            if held is not None and time.monotonic() - held[1] < self.version_check_seconds:
                return held[0]
            snapshot = load_snapshot(self.engine, frame_cache=self.feed_frames)
            self._snapshot = (snapshot, time.monotonic())
            return snapshot

    def data_changed(self) -> None:
        """A feed was loaded through this process: ask the store on the next request."""
        self._snapshot = None

    def disclose(self, request: Request[Client, Any, Any], rows: pl.DataFrame,
                 filters: Mapping[str, Any] | None = None, columns: Sequence[str] | None = None,
                 audit: bool = True) -> Disclosed:
        """Apply the caller's tier to pathway rows and audit what was identifiable (committed
        before this returns, so before the response goes). `audit=False` when the caller audits
        each answer itself (a cached page)."""
        client = request.user
        if not sees_identifiable(client):
            return disclose_rows(None, rows, client, self.pseudonymiser, columns=columns)
        with self.engine.connect() as connection:
            disclosed = disclose_rows(connection, rows, client, self.pseudonymiser, columns=columns)
        if disclosed.identifiable_rows and audit:
            self.audit_read(request, rows=disclosed.identifiable_rows, filters=filters)
        return disclosed

    def audit_read(self, request: Request[Client, Any, Any], *, rows: int,
                   filters: Mapping[str, Any] | None = None) -> None:
        """Audit an identifiable answer; returns once the event is committed (see `audit`)."""
        self.audit(request, rows=rows, filters=filters)

    def audit(self, request: Request[Client, Any, Any], *, rows: int, action: str = "read_identifiable",
              status_code: int = 200, filters: Mapping[str, Any] | None = None) -> None:
        """Record an event and wait for its commit, shared with concurrent requests' events
        (`api/audit_writer.py`; blocking: call from a worker thread). Filters default to the
        query. If the event cannot be written this raises a 503 problem: the caller's answer,
        not yet sent, is never sent."""
        try:
            self.audit_writer.write(_audit_event(request, rows, action, status_code, filters))
        except AuditUnavailable as exc:
            raise _audit_unavailable() from exc

    async def audit_async(self, request: Request[Client, Any, Any], *, rows: int,
                          action: str = "read_identifiable", status_code: int = 200,
                          filters: Mapping[str, Any] | None = None) -> None:
        """`audit` for handlers on the event loop: awaits the commit without a worker thread."""
        try:
            await self.audit_writer.write_async(_audit_event(request, rows, action, status_code, filters))
        except AuditUnavailable as exc:
            raise _audit_unavailable() from exc

    def close(self) -> None:
        """On shutdown: commit the audit events still queued."""
        self.audit_writer.close()


def _audit_event(request: Request[Client, Any, Any], rows: int, action: str, status_code: int,
                 filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The audit row of an answer. Filters default to the query."""
    query = dict(request.query_params) if filters is None else dict(filters)
    return audit_event_values(request.user, action=action, method=request.method, endpoint=request.url.path,
                              filters=query, row_count=rows, status_code=status_code)


def _audit_unavailable() -> ProblemError:
    return ProblemError(503, "the audit trail could not be written, so this answer was not sent "
                             "(no identifiable data leaves without its audit record); try again "
                             "shortly, and tell the service team if it persists")


def api_context(request: Request[Any, Any, Any]) -> ApiContext:
    context: ApiContext = request.app.state["api"]
    return context
