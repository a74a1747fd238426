"""`/api/v1/feeds`: what happened to each extract, and uploading one over HTTP.

The upload runs `ingest_file` exactly as `ptl ingest` does (source `api`), so the answer is the
same: 201 loaded, 200 already loaded (same file), 422 refused with the reasons. A provider key
uploads for its own organisation only. An upload refused before its rows are read (a file type
we do not read, an empty file, an unusable profile, another provider's name) is a 400 (403)
problem, and one the service fails on is a 500 problem with a reference; either way a feed is
recorded (status `refused` or `failed`, with the reason, file name and sha256) and the upload is
audited, and no message quotes the file's contents.

Rejection reasons quote the value that was wrong, which for identity columns is patient data:
those reasons go only to the identifiable tier for that provider (`icb`, the provider itself),
and are audited; admins see the rest with identity values withheld.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.context import ApiContext, api_context
from api.formats import FormatParam, csv_response, stored_time, wants_csv
from api.guards import allow
from api.pagination import MAX_ID, MAX_LIMIT
from api.problems import ProblemError, log_failure
from ingest.errors import ProfileError
from ptl.fields import IDENTIFIABLE_FIELDS
from ptl.store.access import Client
from ptl.store.models import CurrentSnapshot, Feed, RowIssue

if TYPE_CHECKING:
    from ingest.pipeline import IngestResult
    from ingest.profiles import Profile

_WITHHELD = "value withheld: an identity field (the provider and the ICB see it in full)"


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
        received_at=stored_time(feed.received_at), read_seconds=feed.read_seconds,
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

        upload = data.file
        if not isinstance(upload, UploadFile):
            raise ProblemError(400, "send the extract as the multipart field `file`")
        content = await upload.read()
        received = _Received(filename=_safe_filename(upload.filename or "upload.csv"), content=content,
                             profile_text=data.profile, census_date=data.census_date,
                             provider=data.provider)
        return await anyio.to_thread.run_sync(self._ingest, request, received)

    def _ingest(self, request: Request[Client, Any, Any], received: _Received) -> Response[IngestAnswer]:
        """Refuse what cannot be ingested, ingest the rest; every outcome leaves a feed record
        and an audit event (blocking: runs in a worker thread)."""
        context = api_context(request)
        try:
            profile = _check_upload(request.user, received)
            result = self._run_ingest(context, request.user, received, profile)
        except UploadRefused as refusal:
            feed_id = _record_feed(context, request.user, received, "refused", refusal.reason)
            _audit_upload(request, feed_id, "refused", refusal.status, reason=refusal.kind)
            raise ProblemError(refusal.status, f"{refusal.reason} (recorded as feed {feed_id})",
                               feed=_unloaded_answer(request.user, received, feed_id, "refused",
                                                     refusal.reason)) from None
        except Exception as exc:  # noqa: BLE001 - any other failure is the service's, recorded
            reference = log_failure(request, exc)
            message = (f"the upload could not be processed: the service failed (reference {reference}); "
                       "nothing was loaded and the previous snapshot stays current. Quote the reference "
                       "to the service team")
            failed_id = _record_failure(context, request.user, received, message)
            if failed_id is not None:
                _audit_upload(request, failed_id, "failed", 500, reason=type(exc).__name__)
            recorded = f"recorded as feed {failed_id}" if failed_id is not None else "not recorded: the store failed"
            raise ProblemError(500, f"{message} ({recorded})", reference=reference,
                               feed=_unloaded_answer(request.user, received, failed_id, "failed", message)
                               ) from None
        return self._answer(request, result)

    @staticmethod
    def _run_ingest(context: ApiContext, client: Client, received: _Received, profile: Profile) -> IngestResult:
        from ingest.pipeline import ingest_file

        with tempfile.TemporaryDirectory(prefix="ptl-upload-") as folder:
            path = Path(folder) / f"extract{received.suffix}"
            path.write_bytes(received.content)
            try:
                return ingest_file(
                    context.engine, path, provider_code=client.organisation_code, profile=profile,
                    census_date=received.census_date, source="api", settings=context.settings,
                    filename=received.filename,
                )
            except ProfileError as exc:
                raise UploadRefused(str(exc), kind="profile") from None
            finally:
                context.data_changed()

    @staticmethod
    def _answer(request: Request[Client, Any, Any], result: IngestResult) -> Response[IngestAnswer]:
        """The pipeline's answer, audited: 201 loaded, 200 duplicate, 422 refused."""
        answer = result.as_json()
        status = {"loaded": HTTP_201_CREATED, "duplicate": HTTP_200_OK}.get(result.status, 422)
        api_context(request).audit(request, rows=result.rows_loaded, action="upload", status_code=status,
                                   filters={"feed_id": result.feed_id, "status": result.status,
                                            "census_date": answer["census_date"]})
        if result.status == "refused":
            raise ProblemError(422, f"{result.message} (feed {result.feed_id}; every row: "
                                    f"GET /api/v1/feeds/{result.feed_id})", feed=answer)
        return Response(msgspec.convert(answer, IngestAnswer), status_code=status)


@dataclass
class _Received:
    """An upload as it arrived (the file's bytes and the form's other fields)."""

    filename: str
    content: bytes
    profile_text: str
    census_date: dt.date | None
    provider: str | None

    @property
    def suffix(self) -> str:
        return Path(self.filename).suffix.lower()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class UploadRefused(Exception):
    """An upload refused before its rows are read: the request's own fault, said to the client
    and recorded as a refused feed. `reason` names what to fix and never quotes the file."""

    def __init__(self, reason: str, *, kind: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.status = status


def _safe_filename(filename: str) -> str:
    """The sent name without folders or characters that could confuse a path or a log."""
    return re.sub(r"[^A-Za-z0-9._ -]", "_", Path(filename.replace("\\", "/")).name)[:200] or "upload.csv"


def _check_upload(client: Client, received: _Received) -> Profile:
    """The profile to read the upload with, once the upload is one that can be ingested."""
    from ingest.read import FORMATS

    if received.provider and received.provider.strip().upper() != client.organisation_code:
        raise UploadRefused(
            f"a provider key uploads for its own organisation only ({client.organisation_code}); "
            f"{received.provider.strip().upper()[:12]} must send its own extract with its own key",
            kind="other_provider", status=403)
    if received.suffix not in FORMATS:
        raise UploadRefused(f"'{received.filename}' is not a CSV, XLSX or Parquet file: name it with one of "
                            f"{', '.join(sorted(FORMATS))}", kind="file_type")
    if not received.content:
        raise UploadRefused("the uploaded file is empty", kind="empty")
    return _upload_profile(received.profile_text)


def _upload_profile(profile_text: str) -> Profile:
    """`wlmds`, `canonical` or the text of a TOML profile; never a path (that would read the
    server's files)."""
    from ingest.profiles import BUILTIN_PROFILES, load_profile, parse_profile_text

    text = profile_text.strip()
    try:
        if text in BUILTIN_PROFILES:
            return load_profile(text)
        if any(mark in text for mark in ("=", "\n", "[")):
            return parse_profile_text(text, source="uploaded profile")
    except ProfileError as exc:
        raise UploadRefused(str(exc), kind="profile") from None
    raise UploadRefused("the profile is not known: send `wlmds`, `canonical` or the text of a TOML profile",
                        kind="profile")


def _feed_record(client: Client, received: _Received, status: str, message: str) -> dict[str, Any]:
    from ingest.read import FORMATS

    return {
        "provider_code": client.organisation_code, "census_date": received.census_date,
        "filename": received.filename, "sha256": received.sha256,
        "file_format": FORMATS.get(received.suffix, "unknown"), "profile": _profile_name(received.profile_text),
        "source": "api", "status": status, "received_at": dt.datetime.now(dt.UTC),
        # A reason may quote what the client sent (a profile's keys, a provider code), and
        # PostgreSQL holds no NUL in text: the feed would go unrecorded.
        "message": message.replace("\x00", "\\x00"),
    }


def _profile_name(profile_text: str) -> str:
    from ingest.profiles import BUILTIN_PROFILES

    text = profile_text.strip()
    return text if text in BUILTIN_PROFILES else "uploaded profile"


def _record_feed(context: ApiContext, client: Client, received: _Received, status: str, message: str) -> int:
    """Record an upload that loaded nothing (refused or failed) as a feed of the key's provider."""
    from ingest.feed_writes import ensure_organisation, insert_feed

    with context.engine.begin() as connection:
        ensure_organisation(connection, client.organisation_code)
        return insert_feed(connection, _feed_record(client, received, status, message))


def _record_failure(context: ApiContext, client: Client, received: _Received, message: str) -> int | None:
    """`_record_feed` for a failed upload; None when even that fails (the store is down): the
    client still gets the problem with its reference, and the log has both."""
    try:
        return _record_feed(context, client, received, "failed", message)
    except Exception as exc:  # noqa: BLE001 - reported by reference, never raised over the answer
        log_failure(None, exc)
        return None


def _audit_upload(request: Request[Client, Any, Any], feed_id: int, status: str, status_code: int,
                  reason: str) -> None:
    api_context(request).audit(request, rows=0, action="upload", status_code=status_code,
                               filters={"feed_id": feed_id, "status": status, "reason": reason})


def _unloaded_answer(client: Client, received: _Received, feed_id: int | None, status: str,
                     message: str) -> dict[str, Any]:
    """The `ptl ingest --json` shape for an upload that loaded nothing."""
    return {"feed_id": feed_id, "status": status, "provider_code": client.organisation_code,
            "census_date": received.census_date.isoformat() if received.census_date else None,
            "filename": received.filename, "rows_read": 0, "rows_loaded": 0, "rows_rejected": 0,
            "rows_warned": 0, "became_current": False, "seconds": 0.0, "message": message,
            "rejections": [], "warnings": []}
