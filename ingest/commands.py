"""`ptl ingest`, `ptl feeds list|show` and `ptl fields`: loading extracts and reading back
what happened to them."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from ptl.settings import Settings


def register(subparsers: Any) -> None:
    ingest = subparsers.add_parser("ingest", help="validate and load one provider's PTL extract")
    ingest.add_argument("path", type=Path, help="CSV, XLSX or Parquet extract")
    ingest.add_argument("--provider", required=True, help="ODS code of the provider the file is from")
    ingest.add_argument("--profile", default="wlmds",
                        help="column profile: wlmds (default), canonical or a .toml file")
    ingest.add_argument("--census-date", type=_date, help="census date (YYYY-MM-DD) if the file has none")
    ingest.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    ingest.set_defaults(handler=_ingest)

    feeds = subparsers.add_parser("feeds", help="list received feeds or show one")
    sub = feeds.add_subparsers(dest="feeds_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="every feed, newest first")
    listing.add_argument("--provider", help="only this provider")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_feeds_list)
    show = sub.add_parser("show", help="one feed with its rejected rows and warnings")
    show.add_argument("feed_id", type=int)
    show.add_argument("--json", action="store_true")
    show.add_argument("--limit", type=int, default=100, help="issues to print (text output)")
    show.set_defaults(handler=_feeds_show)

    fields = subparsers.add_parser("fields", help="the canonical extract fields")
    fields.add_argument("--markdown", action="store_true")
    fields.set_defaults(handler=_fields)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD)") from None


class _Progress:
    """One self-overwriting status line on a terminal; silent otherwise."""

    def __init__(self) -> None:
        self.active = sys.stderr.isatty()

    def __call__(self, message: str) -> None:
        if self.active:
            sys.stderr.write(f"\r\033[K{message}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.active:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import ingest_file
    from ptl.commands.store import open_store

    if not args.path.exists():
        raise FileNotFoundError(f"{args.path} does not exist")
    engine = open_store(settings)
    progress = _Progress()
    result = ingest_file(
        engine, args.path, provider_code=args.provider, profile=args.profile,
        census_date=args.census_date, settings=settings, progress=None if args.json else progress,
    )
    progress.done()
    if args.json:
        print(json.dumps(result.as_json(), default=str))
    else:
        print(_summary(result))
    if result.status == "refused":
        return 2
    # Loaded, but the figures may count a person twice until linking succeeds: say so in the
    # exit status too, so a script that loads and then reports can tell.
    return 3 if result.linking is not None and result.linking.status == "failed" else 0


def _summary(result: Any) -> str:
    head = {"loaded": "LOADED", "refused": "REFUSED", "duplicate": "ALREADY LOADED"}[result.status]
    lines = [f"{head}  feed {result.feed_id}  provider {result.provider_code}  "
             f"census {result.census_date or '-'}  ({result.filename})"]
    if result.status != "duplicate":
        lines.append(f"  rows read {result.rows_read:,}  loaded {result.rows_loaded:,}  "
                     f"rejected {result.rows_rejected:,}  with warnings {result.rows_warned:,}  "
                     f"in {result.seconds:.2f}s")
    lines.append(f"  {result.message}")
    if result.linking is not None:
        lines.append(f"  identity linking: {result.linking.message}")
    top = result.top_reasons()
    if top:
        lines.append("  commonest rejections:")
        lines.extend(f"    {n:>6,}  {column}: {kind}" for column, kind, n in top)
        first = result.rejections[0]
        lines.append(f"  e.g. row {first['row']}, {first['column']}: {first['reason']}")
    if result.feed_id is not None and (result.rows_rejected or result.rows_warned):
        lines.append(f"  every row: ptl feeds show {result.feed_id}")
    return "\n".join(lines)


def _feeds_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from ptl.commands.store import open_store
    from ptl.store.models import CurrentSnapshot, Feed

    engine = open_store(settings)
    query = select(Feed, CurrentSnapshot.feed_id.is_not(None).label("current")).outerjoin(
        CurrentSnapshot, CurrentSnapshot.feed_id == Feed.id
    ).order_by(Feed.id.desc()).limit(args.limit)
    if args.provider:
        query = query.where(Feed.provider_code == args.provider.upper())
    with Session(engine) as session:
        rows = session.execute(query).all()
    feeds = [_feed_json(row.Feed, row.current) for row in rows]
    if args.json:
        print(json.dumps(feeds))
        return 0
    if not feeds:
        print("no feeds yet: load one with `ptl ingest FILE --provider CODE`")
        return 0
    print(f"{'id':>5}  {'provider':<8} {'census':<10} {'status':<8} {'read':>9} {'loaded':>9} "
          f"{'rejected':>8}  received             file")
    for f in feeds:
        mark = "*" if f["current"] else " "
        print(f"{f['feed_id']:>5}{mark} {f['provider_code']:<8} {f['census_date'] or '-':<10} "
              f"{f['status']:<8} {f['rows_read']:>9,} {f['rows_loaded']:>9,} {f['rows_rejected']:>8,}  "
              f"{f['received_at'][:19]:<20} {f['filename']}")
    print("* = the provider's current snapshot")
    return 0


def _feed_json(feed: Any, current: bool) -> dict[str, Any]:
    return {
        "feed_id": feed.id,
        "provider_code": feed.provider_code,
        "census_date": feed.census_date.isoformat() if feed.census_date else None,
        "status": feed.status,
        "current": bool(current),
        "filename": feed.filename,
        "file_format": feed.file_format,
        "profile": feed.profile,
        "source": feed.source,
        "sha256": feed.sha256,
        "rows_read": feed.rows_read,
        "rows_loaded": feed.rows_loaded,
        "rows_rejected": feed.rows_rejected,
        "rows_warned": feed.rows_warned,
        "received_at": feed.received_at.isoformat(),
        "read_seconds": feed.read_seconds,
        "validate_seconds": feed.validate_seconds,
        "load_seconds": feed.load_seconds,
        "message": feed.message,
    }


def _feeds_show(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from ptl.cli import CommandError
    from ptl.commands.store import open_store
    from ptl.store.models import CurrentSnapshot, Feed, RowIssue

    engine = open_store(settings)
    with Session(engine) as connection:
        feed = connection.execute(select(Feed).where(Feed.id == args.feed_id)).scalar_one_or_none()
        if feed is None:
            raise CommandError(f"there is no feed {args.feed_id}: see `ptl feeds list`")
        current = connection.execute(
            select(CurrentSnapshot.feed_id).where(CurrentSnapshot.feed_id == feed.id)
        ).scalar() is not None
        issues = connection.execute(
            select(RowIssue.row_number, RowIssue.column_name, RowIssue.source_column,
                   RowIssue.severity, RowIssue.kind, RowIssue.reason)
            .where(RowIssue.feed_id == feed.id)
            .order_by(RowIssue.row_number, RowIssue.id)
        ).all()
    body = _feed_json(feed, current)
    body["issues"] = [
        {"row": i.row_number, "column": i.column_name, "source_column": i.source_column,
         "severity": i.severity, "kind": i.kind, "reason": i.reason}
        for i in issues
    ]
    if args.json:
        print(json.dumps(body))
        return 0
    print(f"feed {feed.id}: {feed.status.upper()}{' (current)' if current else ''}  provider "
          f"{feed.provider_code}  census {body['census_date'] or '-'}  file {feed.filename}")
    print(f"  rows read {feed.rows_read:,}  loaded {feed.rows_loaded:,}  rejected "
          f"{feed.rows_rejected:,}  with warnings {feed.rows_warned:,}")
    if feed.message:
        print(f"  {feed.message}")
    shown = body["issues"][: args.limit]
    for issue in shown:
        print(f"  row {issue['row']:>7}  {issue['severity']:<8} {issue['source_column'] or issue['column']}: "
              f"{issue['reason']}")
    if len(body["issues"]) > len(shown):
        print(f"  … {len(body['issues']) - len(shown):,} more (use --limit or --json)")
    return 0


def _fields(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.fields import FIELDS, fields_markdown

    if args.markdown:
        print(fields_markdown(), end="")
        return 0
    for f in FIELDS:
        required = {"no": "", "column": " [column required]", "value": " [required]"}[f.required]
        invalid = {"reject": "row rejected", "blank": "value blanked", "refuse": "file refused"}[f.invalid]
        print(f"{f.name:<24} {f.kind:<10}{required}  {f.meaning} (at most {f.max_length} "
              f"characters; if invalid: {invalid})")
    return 0
