"""`ptl scheduler`: APScheduler 3.x running source polls, post-load hooks and housekeeping.

Jobs (all in Europe/London, rebuilt from the sources file at every start and on SIGHUP with
`replace_existing=True`; each references a module-level function with primitive arguments):

- `poll:NAME` per source, every `poll_minutes`. `coalesce=True`: polls missed while the process
  was suspended or busy collapse into one (a poll takes whatever is waiting, so a burst adds
  nothing). `max_instances=1`: a slow load never overlaps the next poll of the same source,
  which would race for the same inbox file. `misfire_grace_time` = the poll interval: a poll
  delayed by a busy executor still runs until the next one is due (APScheduler's default of 1 s
  would silently drop it).
- `housekeeping`, nightly at `[scheduler] housekeeping_at` (default 02:30, outside the hour
  that the clock changes skip or repeat). `misfire_grace_time` = 6 h: a scheduler that becomes
  active at 05:00 still does last night's housekeeping; later than that it waits a day.
- Post-load hooks (identity linking) run after any poll that loaded a feed,
  through `PostLoadQueue`: at most one run at a time and no request lost.

The job store is in memory on purpose: everything a job needs comes from the sources file, and
the state worth keeping (last poll, feeds, failures) is in the store's own tables. A persistent
APScheduler job store would have to be shared by active and standby processes, which APScheduler
does not support.

Only one process runs jobs against a store (`ingest.sources.lease`). Every process starts its
scheduler paused; the one that takes the lock resumes it (and polls every source at once), the
others log that they are standing by and retry every `lease_seconds`. The active one checks its
lock as often; if it loses it (the store went away) it pauses and stands by until it can take
the lock again, so the process survives an outage and recovers by itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ingest.sources.config import SourcesConfig, load_sources
from ingest.sources.hooks import PostLoadQueue
from ingest.sources.housekeeping import run_housekeeping
from ingest.sources.lease import POSTGRES_CONNECT_ARGS, process_label, store_lock
from ingest.sources.poll import poll_source
from ingest.sources.state import beat, forget_heartbeat, utc_now
from ptl.settings import Settings
from ptl.store.engine import make_engine

log = logging.getLogger("ptl.scheduler")

TIMEZONE = "Europe/London"
HOUSEKEEPING_JOB = "housekeeping"
HOUSEKEEPING_GRACE_SECONDS = 6 * 3600
#: Heartbeat rows are for people reading `ptl sources status`; no need to write them often.
MIN_HEARTBEAT_SECONDS = 15.0


def poll_job_id(source_name: str) -> str:
    return f"poll:{source_name}"


@dataclass
class _Runtime:
    """What jobs in this process need; set by `SchedulerRunner.run` (one scheduler per process)."""

    config: SourcesConfig
    settings: Settings
    engine: Engine
    post_load: PostLoadQueue
    environ: Mapping[str, str] | None


_runtime: _Runtime | None = None


def _current() -> _Runtime:
    if _runtime is None:
        raise RuntimeError("scheduler jobs run only inside SchedulerRunner.run")
    return _runtime


def poll_job(source_name: str) -> None:
    """Poll one source; run the post-load hooks when it loaded a feed."""
    runtime = _current()
    source = runtime.config.source(source_name)
    report = poll_source(runtime.engine, source, runtime.settings, environ=runtime.environ)
    if report.count("loaded"):
        runtime.post_load.request()


def housekeeping_job() -> None:
    runtime = _current()
    run_housekeeping(runtime.engine, runtime.config, runtime.settings)


def build_scheduler(source_count: int) -> BackgroundScheduler:
    # One thread per source plus hooks and housekeeping: a source stuck on a slow mailbox
    # never delays another source's poll.
    return BackgroundScheduler(
        timezone=TIMEZONE,
        executors={"default": ThreadPoolExecutor(max_workers=source_count + 2)},
        job_defaults={"coalesce": True, "max_instances": 1},
    )


def schedule_jobs(scheduler: BackgroundScheduler, config: SourcesConfig) -> None:
    """Add or replace every job the configuration asks for; remove jobs it no longer has."""
    wanted = {HOUSEKEEPING_JOB}
    for source in config.sources:
        seconds = source.poll_minutes * 60
        job_id = poll_job_id(source.name)
        wanted.add(job_id)
        scheduler.add_job(
            poll_job, IntervalTrigger(seconds=seconds, timezone=TIMEZONE), args=[source.name],
            id=job_id, name=f"poll {source.kind} source {source.name}", replace_existing=True,
            coalesce=True, max_instances=1, misfire_grace_time=max(int(seconds), 1),
        )
    at = config.scheduler.housekeeping_at
    scheduler.add_job(
        housekeeping_job, CronTrigger(hour=at.hour, minute=at.minute, timezone=TIMEZONE),
        id=HOUSEKEEPING_JOB, name="nightly housekeeping", replace_existing=True,
        coalesce=True, max_instances=1, misfire_grace_time=HOUSEKEEPING_GRACE_SECONDS,
    )
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            job.remove()


class SchedulerRunner:
    """One scheduler process: takes the store's lock or stands by, and keeps trying."""

    def __init__(self, config: SourcesConfig, settings: Settings, *,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.settings = settings
        self.environ = environ
        self.holder = process_label()
        self.started_at = utc_now()
        self.active = False

    def run(self, stop: threading.Event, reload: threading.Event | None = None) -> None:
        """Run until `stop` is set. `reload` (SIGHUP) re-reads the sources file."""
        global _runtime
        engine = make_engine(self.settings.database_url, **_engine_options(self.settings.database_url))
        lock = store_lock(self.settings.database_url)
        _runtime = _Runtime(self.config, self.settings, engine, PostLoadQueue(engine, self.settings),
                            self.environ)
        scheduler = build_scheduler(len(self.config.sources))
        scheduler.start(paused=True)
        schedule_jobs(scheduler, self.config)
        lease = self.config.scheduler.lease_seconds
        log.info("scheduler started", extra={"holder": self.holder, "sources": len(self.config.sources),
                                             "timezone": TIMEZONE, "lease_seconds": lease})
        store_down = False
        standing_by = False
        last_beat = 0.0
        try:
            while not stop.is_set():
                if reload is not None and reload.is_set():
                    reload.clear()
                    self._reload(scheduler)
                if self.active and not lock.still_held():
                    scheduler.pause()
                    self.active = False
                    log.warning("scheduler lock lost (store unreachable?): jobs paused, standing by",
                                extra={"holder": self.holder})
                if not self.active:
                    try:
                        got = lock.try_acquire()
                    except SQLAlchemyError as exc:
                        got = False
                        if not store_down:
                            log.warning("store unreachable: will keep trying",
                                        extra={"holder": self.holder, "error": type(exc).__name__})
                        store_down = True
                    else:
                        if store_down:
                            log.info("store reachable again", extra={"holder": self.holder})
                        store_down = False
                    if got:
                        self._activate(scheduler)
                        standing_by = False
                    elif not store_down and not standing_by:
                        log.info("another scheduler is active against this store: standing by",
                                 extra={"holder": self.holder})
                        standing_by = True
                now = time.monotonic()
                if now - last_beat >= max(lease, MIN_HEARTBEAT_SECONDS) and not store_down:
                    last_beat = now
                    self._beat(engine)
                stop.wait(lease)
        finally:
            scheduler.shutdown(wait=True)  # let a load in progress finish and commit
            lock.release()
            with contextlib.suppress(SQLAlchemyError):
                forget_heartbeat(engine, self.holder)
            engine.dispose()
            _runtime = None
            self.active = False
            log.info("scheduler stopped", extra={"holder": self.holder})

    def _activate(self, scheduler: BackgroundScheduler) -> None:
        now = dt.datetime.now(dt.UTC)
        for source in self.config.sources:
            # Taking over means polling now, not one interval later.
            scheduler.modify_job(poll_job_id(source.name), next_run_time=now)
        scheduler.resume()
        self.active = True
        log.info("scheduler active: this process runs the jobs", extra={"holder": self.holder})

    def _beat(self, engine: Engine) -> None:
        try:
            beat(engine, self.holder, "active" if self.active else "standby", self.started_at)
        except SQLAlchemyError as exc:
            log.debug("heartbeat not recorded", extra={"error": type(exc).__name__})

    def _reload(self, scheduler: BackgroundScheduler) -> None:
        try:
            config = load_sources(self.config.path, environ=self.environ)
        except Exception as exc:  # noqa: BLE001 - a bad edit keeps the running configuration
            log.error("sources file not reloaded: still running the previous configuration",
                      extra={"reason": str(exc).splitlines()[0], "path": str(self.config.path)})
            return
        self.config = config
        if _runtime is not None:
            _runtime.config = config
        schedule_jobs(scheduler, config)
        log.info("sources file reloaded", extra={"sources": len(config.sources)})


def _engine_options(url: str) -> dict[str, object]:
    """A scheduler must notice a dead store quickly rather than hang on it."""
    if url.startswith(("postgresql", "postgres")):
        return {"connect_args": POSTGRES_CONNECT_ARGS}
    return {}
