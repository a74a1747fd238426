"""`/api/v1/audit`: the trail of identifiable reads, uploads and key changes, for admins."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get
from litestar.params import Parameter
from sqlalchemy import select

from api.context import api_context
from api.formats import FormatParam, csv_response, stored_time, wants_csv
from api.guards import allow
from api.pagination import MAX_LIMIT, decode_cursor, encode_cursor, is_store_int
from api.problems import ProblemError
from ptl.store.access import AuditEvent, Client


class AuditItem(msgspec.Struct):
    id: int
    occurred_at: dt.datetime
    key_id: str
    organisation_code: str
    role: str
    action: str
    method: str
    endpoint: str
    filters: dict[str, Any] | None
    row_count: int
    status_code: int


class AuditPage(msgspec.Struct):
    items: list[AuditItem]
    next_cursor: str | None


class AuditController(Controller):
    path = "/audit"
    tags = ["access"]
    guards = [allow("admin")]

    @get("/", sync_to_thread=True, summary="Audit events, newest first")
    def audit_events(
        self,
        request: Request[Client, Any, Any],
        key_id: str | None = None,
        organisation: Annotated[str | None, Parameter(description="organisation code of the key")] = None,
        action: str | None = None,
        since: Annotated[dt.datetime | None, Parameter(description="only events at or after this time")] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 100,
        cursor: str | None = None,
        output: FormatParam = None,
    ) -> Response[AuditPage]:
        query = select(AuditEvent).order_by(AuditEvent.id.desc())
        if key_id:
            query = query.where(AuditEvent.key_id == key_id)
        if organisation:
            query = query.where(AuditEvent.organisation_code == organisation.upper())
        if action:
            query = query.where(AuditEvent.action == action)
        if since is not None:
            if since.tzinfo is None:
                raise ProblemError(400, "`since` needs a time zone, e.g. 2025-01-31T09:00:00Z")
            query = query.where(AuditEvent.occurred_at >= since)
        if cursor:
            before = decode_cursor(cursor)
            if not is_store_int(before):
                raise ProblemError(400, "`cursor` is not one this endpoint issued: pass back `next_cursor` unchanged")
            query = query.where(AuditEvent.id < before)
        csv = wants_csv(request, output)
        if not csv:
            query = query.limit(limit + 1)
        with api_context(request).engine.connect() as connection:
            events = connection.execute(query).all()
        items = [
            AuditItem(id=e.id, occurred_at=stored_time(e.occurred_at), key_id=e.key_id,
                      organisation_code=e.organisation_code, role=e.role, action=e.action, method=e.method,
                      endpoint=e.endpoint, filters=msgspec.json.decode(e.filters) if e.filters else None,
                      row_count=e.row_count, status_code=e.status_code)
            for e in events
        ]
        if csv:
            frame = pl.DataFrame([msgspec.structs.asdict(i) | {"filters": msgspec.json.encode(i.filters).decode()}
                                  for i in items]) if items else pl.DataFrame(
                schema={f: pl.String for f in AuditItem.__struct_fields__})
            return csv_response(frame, "audit")  # type: ignore[return-value]
        more = len(items) > limit
        items = items[:limit]
        return Response(AuditPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None))
