"""The state one API process shares across requests: store, settings, keys, caches."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl
from litestar import Request
from sqlalchemy import Connection, Engine

from api.auth import KeyRing
from api.disclosure import Disclosed, Pseudonymiser, disclose_rows, sees_identifiable
from api.rate_limit import RateLimiter
from api.view_cache import ViewCache
from ptl.settings import Settings
from ptl.store.access import Client, record_audit
from ptl.store.engine import write_connection

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
    #: PostgreSQL: connections for audit writes that do not wait for the WAL flush (see `disclose`)
    audit_engine: Engine | None = None
    _snapshot: tuple[Snapshot, float] | None = None
    _snapshot_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings, engine: Engine) -> ApiContext:
        audit_engine = None
        if engine.dialect.name == "postgresql":
            from ptl.store.engine import make_engine

            audit_engine = make_engine(engine.url.render_as_string(hide_password=False),
                                       connect_args={"options": "-c synchronous_commit=off"})
        return cls(
            settings=settings, engine=engine, keys=KeyRing(engine),
            rate_limiter=RateLimiter(settings.rate_limit_per_minute),
            pseudonymiser=Pseudonymiser(settings.pseudonym_key), audit_engine=audit_engine,
        )

    def snapshot(self) -> Snapshot:
        """The analytics snapshot of the current data version (blocking: from a worker thread)."""
        from ptl.views.snapshot import load_snapshot

        held = self._snapshot
        if held is not None and time.monotonic() - held[1] < self.version_check_seconds:
            return held[0]
        with self._snapshot_lock:
            held = self._snapshot
            if held is not None and time.monotonic() - held[1] < self.version_check_seconds:
                return held[0]
            snapshot = load_snapshot(self.engine)
            self._snapshot = (snapshot, time.monotonic())
            return snapshot

    def data_changed(self) -> None:
        """A feed was loaded through this process: ask the store on the next request."""
        self._snapshot = None

    def disclose(self, request: Request[Client, Any, Any], rows: pl.DataFrame,
                 filters: Mapping[str, Any] | None = None, columns: Sequence[str] | None = None,
                 audit: bool = True) -> Disclosed:
        """Apply the caller's tier to pathway rows and audit what was identifiable, in one
        store transaction on PostgreSQL (committed before the response goes). `audit=False`
        when the caller audits each answer itself (a cached page)."""
        client = request.user
        if not sees_identifiable(client):
            return disclose_rows(None, rows, client, self.pseudonymiser, columns=columns)
        if self.engine.dialect.name != "postgresql":
            # SQLite: read, then write the audit with the write lock taken up front.
            with self.engine.connect() as connection:
                disclosed = disclose_rows(connection, rows, client, self.pseudonymiser, columns=columns)
            if disclosed.identifiable_rows and audit:
                self.audit_read(request, rows=disclosed.identifiable_rows, filters=filters)
            return disclosed
        with self.engine.begin() as connection:
            disclosed = disclose_rows(connection, rows, client, self.pseudonymiser, columns=columns)
            if disclosed.identifiable_rows and audit:
                # The audit row is committed before the answer is sent; not waiting for the WAL
                # flush keeps an identifiable page at ~1 ms (a database crash could lose the
                # last fraction of a second of events, an application crash none).
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
                self._record(connection, request, disclosed.identifiable_rows, filters)
        return disclosed

    def audit_read(self, request: Request[Client, Any, Any], *, rows: int,
                   filters: Mapping[str, Any] | None = None) -> None:
        """Audit an identifiable answer in its own transaction (see `disclose` on durability)."""
        if self.audit_engine is None:
            with write_connection(self.engine) as connection, connection.begin():
                self._record(connection, request, rows, filters)
            return
        with self.audit_engine.begin() as connection:
            self._record(connection, request, rows, filters)

    def _record(self, connection: Connection, request: Request[Client, Any, Any], rows: int,
                filters: Mapping[str, Any] | None) -> None:
        query = dict(request.query_params) if filters is None else dict(filters)
        record_audit(connection, request.user, action="read_identifiable", method=request.method,
                     endpoint=request.url.path, filters=query, row_count=rows, status_code=200)

    def audit(self, request: Request[Client, Any, Any], *, rows: int, action: str = "read_identifiable",
              status_code: int = 200, filters: Mapping[str, Any] | None = None) -> None:
        """Record an event in its own transaction (blocking). Filters default to the query."""
        query = dict(request.query_params) if filters is None else dict(filters)
        record_audit(self.engine, request.user, action=action, method=request.method,
                     endpoint=request.url.path, filters=query, row_count=rows, status_code=status_code)


def api_context(request: Request[Any, Any, Any]) -> ApiContext:
    context: ApiContext = request.app.state["api"]
    return context
