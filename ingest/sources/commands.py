"""`ptl sources poll|status|check` and `ptl scheduler`: scheduled ingest from drop folders and
MESH mailboxes, run once for operators and cron, or continuously."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from ptl.settings import Settings

log = logging.getLogger("ptl.scheduler")

_HEAD = {"loaded": "LOADED", "refused": "REFUSED", "duplicate": "ALREADY LOADED", "waiting": "WAITING",
         "error": "ERROR", "skipped": "SKIPPED"}


def register(subparsers: Any) -> None:
    sources = subparsers.add_parser("sources", help="drop folders and MESH mailboxes that feed the store")
    sub = sources.add_subparsers(dest="sources_command", metavar="ACTION", required=True)

    poll = sub.add_parser("poll", help="poll every configured source (with --once: one time, then exit)")
    _config_option(poll)
    poll.add_argument("--once", action="store_true",
                      help="poll each source one time, synchronously, print what happened and exit")
    poll.add_argument("--source", action="append", metavar="NAME", help="only this source (repeatable)")
    poll.add_argument("--no-hooks", action="store_true",
                      help="do not run identity linking after loads")
    poll.add_argument("--json", action="store_true", help="print one JSON object")
    poll.set_defaults(handler=_poll)

    status = sub.add_parser("status", help="per source: last poll, last feed, last failure, files waiting")
    _config_option(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    check = sub.add_parser("check", help="validate the sources file (and that MESH secrets are set)")
    _config_option(check)
    check.set_defaults(handler=_check)

    scheduler = subparsers.add_parser(
        "scheduler", help="run scheduled polls, post-load hooks and housekeeping (one active per store)")
    _config_option(scheduler)
    scheduler.set_defaults(handler=_scheduler)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="sources file (TOML); default: PTL_SOURCES")


def _load(args: argparse.Namespace, settings: Settings, *, check_secrets: bool = True) -> Any:
    from ingest.sources.config import config_path, load_sources

    return load_sources(config_path(args.config, settings.sources_path), check_secrets=check_secrets)


def _poll(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.sources.hooks import run_post_load_hooks
    from ingest.sources.lease import store_lock
    from ingest.sources.poll import poll_sources
    from ptl.cli import CommandError
    from ptl.commands.store import open_store

    if not args.once:
        raise CommandError("`ptl sources poll` runs one pass: add --once (use `ptl scheduler` to poll on a schedule)")
    config = _load(args, settings)
    chosen = [config.source(name) for name in args.source] if args.source else list(config.sources)
    engine = open_store(settings)
    lock = store_lock(settings.database_url)
    if not lock.try_acquire():
        raise CommandError("a scheduler is active against this store and already polls its sources; "
                           "see `ptl sources status` (stop it to poll by hand)")
    try:
        reports = poll_sources(engine, chosen, settings)
        loaded = sum(r.count("loaded") for r in reports)
        hooks = run_post_load_hooks(engine, settings) if loaded and not args.no_hooks else {}
    finally:
        lock.release()
    if args.json:
        print(json.dumps({"sources": [r.as_json() for r in reports], "post_load_hooks": hooks}))
    else:
        for report in reports:
            print(_report_text(report))
        if hooks:
            print("after loading: " + ", ".join(f"{name} {outcome}" for name, outcome in hooks.items()))
    return 0 if all(r.ok for r in reports) else 1


def _report_text(report: Any) -> str:
    counts = ", ".join(f"{report.count(s)} {label}" for s, label in (
        ("loaded", "loaded"), ("refused", "refused"), ("duplicate", "already loaded")) if report.count(s))
    summary = counts or "nothing new"
    if report.waiting:
        summary += f", {report.waiting} waiting"
    head = f"{report.source} ({report.kind}, {report.provider_code}): {summary}  [{report.seconds:.2f}s]"
    lines = [head]
    if report.failure:
        lines.append(f"  FAILED  {report.failure}")
    for outcome in report.files:
        feed = f"  feed {outcome.feed_id}" if outcome.feed_id is not None else ""
        where = f"  -> {Path(outcome.moved_to).parent.name}/{Path(outcome.moved_to).name}" if outcome.moved_to else ""
        lines.append(f"  {_HEAD.get(outcome.status, outcome.status.upper()):<14} {outcome.name}{feed}{where}")
        lines.append(f"  {'':<14} {outcome.message}")
    return "\n".join(lines)


def _ago(moment: dt.datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = max((dt.datetime.now(dt.UTC) - moment).total_seconds(), 0)
    if seconds < 120:
        text = f"{seconds:.0f}s ago"
    elif seconds < 7200:
        text = f"{seconds / 60:.0f}m ago"
    elif seconds < 172800:
        text = f"{seconds / 3600:.0f}h ago"
    else:
        text = f"{seconds / 86400:.0f}d ago"
    return f"{moment.astimezone():%Y-%m-%d %H:%M} ({text})"


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.sources.config import SchedulerOptions, SourcesConfig
    from ingest.sources.status import schedulers_status, sources_status
    from ptl.commands.store import open_store

    if args.config or settings.sources_path:
        config = _load(args, settings, check_secrets=False)
    else:
        config = SourcesConfig(path=Path("-"), sources=(), scheduler=SchedulerOptions())
    engine = open_store(settings)
    rows = sources_status(engine, config)
    schedulers = schedulers_status(engine, config.scheduler.lease_seconds)
    if args.json:
        print(json.dumps({"sources": [r.as_json() for r in rows],
                          "schedulers": [s.as_json() for s in schedulers]}))
        return 0
    live = [s for s in schedulers if not s.stale]
    active = [s for s in live if s.role == "active"]
    if active:
        print(f"scheduler: active on {active[0].holder} (heartbeat {_ago(active[0].heartbeat_at)})")
    else:
        print("scheduler: none active (start one with `ptl scheduler`)")
    for s in live:
        if s.role != "active":
            print(f"  standing by: {s.holder} (heartbeat {_ago(s.heartbeat_at)})")
    if not rows:
        print("no sources configured: pass --config FILE or set PTL_SOURCES")
        return 0
    for row in rows:
        note = "" if row.configured else "  (no longer in the sources file)"
        every = f", every {row.poll_minutes:g} min" if row.poll_minutes else ""
        print(f"\n{row.name} ({row.kind}, provider {row.provider_code}{every}){note}")
        poll_state = "" if row.last_poll_ok is None else ("  ok" if row.last_poll_ok else "  FAILED")
        print(f"  last poll     {_ago(row.last_poll_at)}{poll_state}")
        feed = f"feed {row.last_feed_id}, {_ago(row.last_feed_at)}" if row.last_feed_id else "none yet"
        print(f"  last feed     {feed}")
        failure = (f"{_ago(row.last_failure_at)}: {row.last_failure_reason}"
                   if row.last_failure_at else "none")
        print(f"  last failure  {failure}")
        waiting = "-" if row.files_waiting is None else str(row.files_waiting)
        print(f"  waiting       {waiting}{'' if row.waiting_is_live else ' (at last poll)'}")
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    config = _load(args, settings)
    print(f"{config.path}: {len(config.sources)} source(s), housekeeping at "
          f"{config.scheduler.housekeeping_at:%H:%M} Europe/London, keep {config.scheduler.keep_days} days")
    for source in config.sources:
        where = source.path if source.kind == "folder" else f"{source.mailbox} at {source.url}"
        print(f"  {source.name:<20} {source.kind:<6} {source.provider_code:<6} every "
              f"{source.poll_minutes:g} min  profile {source.profile.name}  {where}")
    return 0


def _scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.exc import OperationalError

    from ingest.scheduler import SchedulerRunner
    from ptl.commands.store import open_store

    config = _load(args, settings)
    try:
        open_store(settings).dispose()
    except OperationalError as exc:
        # Starting while the store is down is fine: the runner keeps trying until it is back.
        log.warning("store unreachable at start: will keep trying", extra={"error": type(exc).__name__})
    stop, reload = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    SchedulerRunner(config, settings).run(stop, reload)
    return 0
