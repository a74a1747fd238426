"""`/api/v1/queue`: the shared queue, one row per need, in clinical order, paged by keyset cursor.

The sorted queue for a filter is built once per data version and kept; a page is a binary
search for the cursor and a slice, so no request scans the list. Rows are disclosed per role
(`api/disclosure.py`); a page holding identifiable rows writes an audit event.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from typing import Annotated, Any

import anyio
import msgspec
import polars as pl
from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from api.context import ApiContext, api_context
from api.disclosure import disclose_rows, identifiable_mask, sees_identifiable
from api.formats import CSV_CHUNK_ROWS, CSV_MEDIA_TYPE, FormatParam, csv_chunks, wants_csv
from api.guards import READERS, allow
from api.pagination import MAX_LIMIT, decode_cursor, encode_cursor, is_store_int
from api.problems import ProblemError
from api.view_params import FILTER_DEPENDENCIES, cached_view
from ptl.store.access import Client
from ptl.views.filters import ViewFilter
from ptl.views.queue import Cursor, cursor_of, position_after, shared_queue
from ptl.views.snapshot import Snapshot

#: Store columns carried alongside the queue for disclosure (never sent as they are).
_RECORD_COLUMNS = ("id", "source_identity_id", "pathway_id", "referral_id")


class QueueItem(msgspec.Struct):
    """One need on the shared queue. Identity fields, `person_id`, `pathway_id` and
    `referral_id` are null unless `identifiable` (your tier for this row)."""

    position: int
    id: int
    person_key: str
    identifiable: bool
    person_id: int | None
    provider_code: str
    site_code: str | None
    treatment_function_code: str
    procedure_code: str | None
    clinical_priority: str | None
    priority_rank: int
    deferred: bool
    waiting_list_type: str
    rtt_start_date: dt.date | None
    census_date: dt.date
    days_waited: int | None
    weeks_waited: int | None
    breach_18: bool | None
    breach_52: bool | None
    breach_65: bool | None
    breach_78: bool | None
    breach_104: bool | None
    tci_date: dt.date | None
    imd_quintile: int | None
    ethnic_group: str | None
    age_band: str | None
    last_validated_date: dt.date | None
    also_at: list[str]
    pathway_id: str | None
    referral_id: str | None
    local_patient_id: str | None
    nhs_number: str | None
    family_name: str | None
    given_name: str | None
    date_of_birth: dt.date | None
    postcode: str | None


class QueuePage(msgspec.Struct):
    items: list[QueueItem]
    #: pass back as `cursor` for the next page; null on the last page
    next_cursor: str | None
    total: int
    data_version: int
    filters: dict[str, str]


def sorted_queue(context: ApiContext, snapshot: Snapshot, filters: ViewFilter) -> pl.DataFrame:
    """The shared queue for a filter, with the record columns disclosure needs (cached)."""

    def build() -> pl.DataFrame:
        queue = shared_queue(snapshot.current, filters)
        records = snapshot.current.select(_RECORD_COLUMNS)
        return queue.join(records, on="id", how="left", maintain_order="left")

    return cached_view(context, snapshot, ("queue", filters), build)


def _tier(client: Client) -> str:
    """Who a rendered page is the same for."""
    if client.role == "icb":
        return client.role
    return f"provider:{client.organisation_code}" if client.role == "provider" else "pseudonymised"


def _rendered_page(context: ApiContext, client: Client, filters: ViewFilter, after: Cursor | None,
                   size: int) -> tuple[bytes, int] | None:
    """The page as already rendered for this data version and tier, or None (non-blocking)."""
    snapshot = context.held_snapshot()
    if snapshot is None:
        return None
    version = (snapshot.version, snapshot.link_version)
    found, queue = context.results.peek(version, ("queue", filters))
    if not found:
        return None
    start = position_after(queue, after)
    found, page = context.results.peek(version, ("queue-page", filters, start, size, _tier(client)))
    return page if found else None  # type: ignore[no-any-return]


def _render_page(request: Request[Client, Any, Any], context: ApiContext, filters: ViewFilter,
                 after: Cursor | None, size: int) -> tuple[bytes, int]:
    """The page's JSON body and how many of its rows are identifiable (blocking; a page is the
    same for every caller of a tier until the next load, so it is rendered once)."""
    snapshot = context.snapshot()
    queue = sorted_queue(context, snapshot, filters)
    start = position_after(queue, after)

    def render() -> tuple[bytes, int]:
        page = queue.slice(start, size)
        disclosed = context.disclose(request, page, columns=QueueItem.__struct_fields__, audit=False)
        more = start + page.height < queue.height
        next_cursor = encode_cursor(list(cursor_of(page.row(-1, named=True)))) if more and page.height else None
        # Polars writes the rows' JSON five times faster than building dicts for msgspec.
        envelope = msgspec.json.encode({"next_cursor": next_cursor, "total": queue.height,
                                        "data_version": snapshot.version, "filters": filters.as_dict()})
        body = b'{"items":' + disclosed.frame.write_json().encode("utf-8") + b"," + envelope[1:]
        return body, disclosed.identifiable_rows

    return cached_view(context, snapshot, ("queue-page", filters, start, size, _tier(request.user)), render)


def _cursor(value: str | None) -> Cursor | None:
    if value is None:
        return None
    raw = decode_cursor(value)
    if (not isinstance(raw, list) or len(raw) != 3 or not is_store_int(raw[0])
            or not (raw[1] is None or is_store_int(raw[1])) or not is_store_int(raw[2])
            or not -32768 <= raw[0] <= 32767 or not (raw[1] is None or -2**31 <= raw[1] < 2**31)):
        raise ProblemError(400, "`cursor` is not a queue cursor: pass back `next_cursor` unchanged")
    return (raw[0], raw[1], raw[2])


class QueueController(Controller):
    path = "/queue"
    tags = ["views"]
    guards = [allow(*READERS)]
    dependencies = FILTER_DEPENDENCIES

    @get("/", summary="The shared queue: clinical priority, then longest wait")
    async def queue(
        self,
        request: Request[Client, Any, Any],
        filters: ViewFilter,
        limit: Annotated[int | None, Parameter(
            ge=1, le=MAX_LIMIT, description="rows per page (default 100; CSV without it: every row)")] = None,
        cursor: Annotated[str | None, Parameter(description="`next_cursor` of the previous page")] = None,
        output: FormatParam = None,
    ) -> Response[QueuePage]:
        # On the event loop: a page already rendered for this data version is answered without
        # a worker thread, and its audit commit is awaited, not waited for in a thread. Anything
        # that may block (a version check, building the queue, reading identity values for a
        # new page, CSV) runs in a worker thread.
        context = api_context(request)
        after = _cursor(cursor)
        if wants_csv(request, output):
            return await anyio.to_thread.run_sync(
                functools.partial(self._csv_answer, request, context, filters, after, limit))
        size = limit or 100
        page = _rendered_page(context, request.user, filters, after, size)
        if page is None:
            page = await anyio.to_thread.run_sync(
                functools.partial(_render_page, request, context, filters, after, size))
        body, identifiable = page
        if identifiable:
            # Every identifiable answer is audited, cached page or not, before it is sent.
            await context.audit_async(request, rows=identifiable)
        return Response(body, media_type="application/json")  # type: ignore[arg-type]

    def _csv_answer(self, request: Request[Client, Any, Any], context: ApiContext, filters: ViewFilter,
                    after: Cursor | None, limit: int | None) -> Response[QueuePage]:
        snapshot = context.snapshot()
        queue = sorted_queue(context, snapshot, filters)
        start = position_after(queue, after)
        rows = queue.slice(start, limit) if limit is not None else queue.slice(start)
        return self._csv(request, context, request.user, rows)

    def _csv(self, request: Request[Client, Any, Any], context: ApiContext, client: Client,
             rows: pl.DataFrame) -> Response[QueuePage]:
        from litestar.response import Stream

        identifiable = int(identifiable_mask(rows, client).sum() or 0)
        if identifiable:
            # Audited before the first byte: the count is known from the rows about to stream.
            context.audit(request, rows=identifiable)

        def chunks() -> Iterator[bytes]:
            for offset in range(0, max(rows.height, 1), CSV_CHUNK_ROWS):
                with context.engine.connect() as connection:
                    part = disclose_rows(connection if sees_identifiable(client) else None,
                                         rows.slice(offset, CSV_CHUNK_ROWS), client, context.pseudonymiser,
                                         columns=QueueItem.__struct_fields__).frame
                chunk = b"".join(csv_chunks(part, CSV_CHUNK_ROWS))
                if offset:
                    chunk = chunk.split(b"\n", 1)[1]
                yield chunk

        return Stream(chunks(), media_type=CSV_MEDIA_TYPE,  # type: ignore[return-value]
                      headers={"Content-Disposition": 'attachment; filename="queue.csv"'})
