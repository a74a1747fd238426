"""`/api/v1/feeds`: what happened to each extract, and uploading one over HTTP.

The upload runs `ingest_file` exactly as `ptl ingest` does (source `api`), so the answer is the
same: 201 loaded, 200 already loaded (same file), 422 refused with the reasons. A provider key
uploads for its own organisation only.

Rejection reasons quote the value that was wrong, which for identity columns is patient data:
those reasons go only to the identifiable tier for that provider (`icb`, the provider itself),
and are audited; admins see the rest with identity values withheld.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.context import api_context
from api.formats import FormatParam, csv_response, wants_csv
from api.guards import allow
from api.pagination import MAX_ID, MAX_LIMIT
from api.problems import ProblemError
from ptl.fields import IDENTIFIABLE_FIELDS
from ptl.store.access import Client
from ptl.store.models import CurrentSnapshot, Feed, RowIssue

_WITHHELD = "value withheld: an identity field (the provider and the ICB see it in full)"
_SUFFIXES = {".csv", ".txt", ".xlsx", ".parquet"}


class FeedSummary(msgspec.Struct):
    feed_id: int
    provider_code: str
    census_date: dt.date | None
    status: str
    current: bool
    filename: str
    file_format: str
    profile: str
    source: str
    sha256: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rows_warned: int
    received_at: dt.datetime
    read_seconds: float | None
    validate_seconds: float | None
    load_seconds: float | None
    message: str | None


class FeedIssue(msgspec.Struct):
    row: int
    column: str
    source_column: str | None
    severity: str
    kind: str
    reason: str


class FeedDetail(FeedSummary):
    issues: list[FeedIssue] = []
    issues_total: int = 0
    rejection_reasons: dict[str, int] = {}


class FeedList(msgspec.Struct):
    items: list[FeedSummary]


class IngestAnswer(msgspec.Struct):
    """The same object `ptl ingest --json` prints."""

    feed_id: int | None
    status: str
    provider_code: str
    census_date: dt.date | None
    filename: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rows_warned: int
    became_current: bool
    seconds: float
    message: str
    rejections: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    #: identity linking after the load: status (linked | failed), message, report; null when
    #: nothing was loaded
    linking: dict[str, Any] | None = None


@dataclass
class FeedUpload:
    """Multipart form: the extract, its column profile and (if the file has none) its census."""

    file: UploadFile
    #: `wlmds`, `canonical`, or the text of a TOML profile
    profile: str = "wlmds"
    census_date: dt.date | None = None
    #: optional: the provider the file is from; must be the key's own organisation
    provider: str | None = None


def _summary(feed: Feed, current: bool) -> FeedSummary:
    return FeedSummary(
        feed_id=feed.id, provider_code=feed.provider_code, census_date=feed.census_date,
        status=feed.status, current=current, filename=feed.filename, file_format=feed.file_format,
        profile=feed.profile, source=feed.source, sha256=feed.sha256, rows_read=feed.rows_read,
        rows_loaded=feed.rows_loaded, rows_rejected=feed.rows_rejected, rows_warned=feed.rows_warned,
        received_at=feed.received_at, read_seconds=feed.read_seconds,
        validate_seconds=feed.validate_seconds, load_seconds=feed.load_seconds, message=feed.message,
    )


def _may_see_feed(client: Client, provider_code: str) -> bool:
    return client.role in ("icb", "admin") or (
        client.role == "provider" and client.organisation_code == provider_code)


def _identity_values_visible(client: Client, provider_code: str) -> bool:
    return client.role == "icb" or (client.role == "provider" and client.organisation_code == provider_code)


class FeedsController(Controller):
    path = "/feeds"
    tags = ["feeds"]

    @get("/", sync_to_thread=True, guards=[allow("icb", "admin", "provider")],
         summary="Received feeds, newest first (providers: their own)")
    def list_feeds(
        self,
        request: Request[Client, Any, Any],
        provider: Annotated[str | None, Parameter(
            description="only this provider's feeds (ODS code)", pattern=r"^\s*[A-Za-z0-9]{1,12}\s*$")] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50,
        output: FormatParam = None,
    ) -> Response[FeedList]:
        client = request.user
        wanted = provider.strip().upper() if provider else None
        if client.role == "provider":
            if wanted is not None and wanted != client.organisation_code:
                raise ProblemError(403, f"a provider key sees its own organisation's feeds only "
                                        f"({client.organisation_code}), not {wanted}'s")
            wanted = client.organisation_code
        query = (select(Feed, CurrentSnapshot.feed_id.is_not(None).label("current"))
                 .outerjoin(CurrentSnapshot, CurrentSnapshot.feed_id == Feed.id)
                 .order_by(Feed.id.desc()).limit(limit))
        if wanted is not None:
            query = query.where(Feed.provider_code == wanted)
        with Session(api_context(request).engine) as session:
            rows = session.execute(query).all()
            items = [_summary(row.Feed, bool(row.current)) for row in rows]
        if wants_csv(request, output):
            frame = pl.DataFrame([msgspec.structs.asdict(i) for i in items]) if items else pl.DataFrame(
                schema={f: pl.String for f in FeedSummary.__struct_fields__})
            return csv_response(frame, "feeds")  # type: ignore[return-value]
        return Response(FeedList(items=items))

    @get("/{feed_id:int}", sync_to_thread=True, guards=[allow("icb", "admin", "provider")],
         summary="One feed: counts, timings and its rejected rows and warnings with row numbers")
    def feed_detail(
        self,
        request: Request[Client, Any, Any],
        feed_id: Annotated[int, Parameter(ge=1, le=MAX_ID)],
        issue_limit: Annotated[int, Parameter(ge=0, le=100_000, description="issues to include")] = 1000,
        output: FormatParam = None,
    ) -> Response[FeedDetail]:
        client = request.user
        context = api_context(request)
        with Session(context.engine) as connection:
            row = connection.execute(
                select(Feed, CurrentSnapshot.feed_id.is_not(None).label("current"))
                .outerjoin(CurrentSnapshot, CurrentSnapshot.feed_id == Feed.id).where(Feed.id == feed_id)
            ).first()
            if row is None:
                raise ProblemError(404, f"there is no feed {feed_id}: see GET /api/v1/feeds")
            feed = row.Feed
            if not _may_see_feed(client, feed.provider_code):
                raise ProblemError(403, f"feed {feed_id} was sent by another organisation; a provider "
                                        "key sees its own organisation's feeds only")
            csv = wants_csv(request, output)
            issues_query = (select(RowIssue.row_number, RowIssue.column_name, RowIssue.source_column,
                                   RowIssue.severity, RowIssue.kind, RowIssue.reason)
                            .where(RowIssue.feed_id == feed_id).order_by(RowIssue.row_number, RowIssue.id))
            if not csv:
                issues_query = issues_query.limit(issue_limit)
            issues = connection.execute(issues_query).all()
            total = connection.execute(select(func.count()).select_from(RowIssue)
                                       .where(RowIssue.feed_id == feed_id)).scalar_one()
            summary = msgspec.structs.asdict(_summary(feed, bool(row.current)))
            reasons = connection.execute(
                select(RowIssue.column_name, RowIssue.kind, func.count())
                .where(RowIssue.feed_id == feed_id, RowIssue.severity == "rejected")
                .group_by(RowIssue.column_name, RowIssue.kind)
            ).all()
        visible = _identity_values_visible(client, feed.provider_code)
        items = [
            FeedIssue(row=i.row_number, column=i.column_name, source_column=i.source_column,
                      severity=i.severity, kind=i.kind,
                      reason=i.reason if visible or i.column_name not in IDENTIFIABLE_FIELDS else _WITHHELD)
            for i in issues
        ]
        identifiable = sum(1 for i in issues if i.column_name in IDENTIFIABLE_FIELDS) if visible else 0
        if identifiable:
            context.audit(request, rows=identifiable, filters={"feed_id": feed_id})
        if csv:
            frame = pl.DataFrame([msgspec.structs.asdict(i) for i in items]) if items else pl.DataFrame(
                schema={f: pl.String for f in FeedIssue.__struct_fields__})
            return csv_response(frame, f"feed-{feed_id}-issues")  # type: ignore[return-value]
        return Response(FeedDetail(**summary, issues=items, issues_total=int(total),
                                   rejection_reasons={f"{c}: {k}": int(n) for c, k, n in reasons}))

    @post("/", guards=[allow("provider")], status_code=HTTP_201_CREATED,
          summary="Upload one extract for your own organisation (multipart: file, profile, census_date)",
          responses=None)
    async def upload(
        self,
        request: Request[Client, Any, Any],
        data: Annotated[FeedUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[IngestAnswer]:
        import anyio

        client = request.user
        if data.provider and data.provider.strip().upper() != client.organisation_code:
            raise ProblemError(403, f"a provider key uploads for its own organisation only "
                                    f"({client.organisation_code}); {data.provider.strip().upper()} "
                                    "must send its own extract with its own key")
        upload = data.file
        if not isinstance(upload, UploadFile):
            raise ProblemError(400, "send the extract as the multipart field `file`")
        content = await upload.read()
        return await anyio.to_thread.run_sync(
            self._ingest, request, client, content, upload.filename or "upload.csv", data.profile, data.census_date)

    def _ingest(self, request: Request[Client, Any, Any], client: Client, content: bytes, filename: str,
                profile_text: str, census_date: dt.date | None) -> Response[IngestAnswer]:
        from ingest.errors import ProfileError
        from ingest.pipeline import ingest_file
        from ingest.profiles import BUILTIN_PROFILES, Profile, load_profile, parse_profile

        context = api_context(request)
        name = re.sub(r"[^A-Za-z0-9._ -]", "_", Path(filename.replace("\\", "/")).name)[:200] or "upload.csv"
        suffix = Path(name).suffix.lower()
        if suffix not in _SUFFIXES:
            raise ProblemError(400, f"'{name}' is not a CSV, XLSX or Parquet file: name it with one of "
                                    f"{', '.join(sorted(_SUFFIXES))}")
        if not content:
            raise ProblemError(400, "the uploaded file is empty")
        profile: Profile
        try:
            text = profile_text.strip()
            if text in BUILTIN_PROFILES:
                profile = load_profile(text)
            elif "=" in text or "\n" in text:
                # A TOML profile sent as text; never a path (that would read the server's files).
                profile = parse_profile(tomllib.loads(text), source="uploaded profile")
            else:
                raise ProblemError(400, f"profile '{text[:40]}' is not known: send `wlmds`, `canonical` "
                                        "or the text of a TOML profile")
        except tomllib.TOMLDecodeError as exc:
            raise ProblemError(400, f"the profile is not valid TOML: {exc}") from None
        except ProfileError as exc:
            raise ProblemError(400, str(exc)) from None
        with tempfile.TemporaryDirectory(prefix="ptl-upload-") as folder:
            path = Path(folder) / f"extract{suffix}"
            path.write_bytes(content)
            try:
                result = ingest_file(
                    context.engine, path, provider_code=client.organisation_code, profile=profile,
                    census_date=census_date, source="api", settings=context.settings, filename=name,
                )
            except ProfileError as exc:
                raise ProblemError(400, str(exc)) from None
        context.data_changed()
        answer = result.as_json()
        status = {"loaded": HTTP_201_CREATED, "duplicate": HTTP_200_OK}.get(result.status, 422)
        context.audit(request, rows=result.rows_loaded, action="upload", status_code=status,
                      filters={"feed_id": result.feed_id, "status": result.status,
                               "census_date": answer["census_date"]})
        if result.status == "refused":
            raise ProblemError(422, f"{result.message} (feed {result.feed_id}; every row: "
                                    f"GET /api/v1/feeds/{result.feed_id})", feed=answer)
        return Response(msgspec.convert(answer, IngestAnswer), status_code=status)
