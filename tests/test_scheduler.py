"""`ptl scheduler`: jobs built from the sources file, one active scheduler per store with a
standby that takes over, post-load hooks after loads, and recovery when the store goes away."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from ingest.scheduler import SchedulerRunner, build_scheduler, schedule_jobs
from ingest.sources import hooks
from ingest.sources.config import load_sources
from ingest.sources.lease import FileLock
from ptl.settings import Settings
from ptl.store import migrate
from ptl.store.engine import make_engine
from ptl.store.models import Feed
from ptl.synth import SynthSystem, generate_system
from tests.test_sources_support import (
    CENSUS,
    deliver,
    drop_folder,
    folder_source,
    run_ptl,
    write_sources_file,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> SynthSystem:
    return generate_system(tmp_path_factory.mktemp("synth"), trusts=1, independents=0, patients=300,
                           weeks=3, census_date=CENSUS, seed=3)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def loaded_files(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(select(Feed.filename).where(Feed.status == "loaded")).scalars())


def test_jobs_are_built_from_the_sources_file(tmp_path: Path) -> None:
    folder = drop_folder(tmp_path, "RZA")
    both = load_sources(write_sources_file(tmp_path / "both.toml", [
        folder_source("a", "RZA", "wlmds", folder, poll_minutes=2),
        folder_source("b", "RZB", "wlmds", folder),
    ], scheduler={"housekeeping_at": "03:10"}))
    scheduler = build_scheduler(len(both.sources))
    scheduler.start(paused=True)
    try:
        schedule_jobs(scheduler, both)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"poll:a", "poll:b", "housekeeping"}
        poll = jobs["poll:a"]
        # A textual reference and primitive arguments: what a persistent job store can restore.
        assert poll.func_ref == "ingest.scheduler:poll_job" and poll.args == ("a",)
        assert isinstance(poll.trigger, IntervalTrigger) and poll.trigger.interval.total_seconds() == 120
        assert (poll.coalesce, poll.max_instances, poll.misfire_grace_time) == (True, 1, 120)
        assert str(poll.trigger.timezone) == "Europe/London"
        assert jobs["poll:b"].trigger.interval.total_seconds() == 300  # the default 5 minutes
        nightly = jobs["housekeeping"]
        assert isinstance(nightly.trigger, CronTrigger) and str(nightly.trigger.timezone) == "Europe/London"
        assert str(nightly.trigger) == "cron[hour='3', minute='10']"
        assert nightly.misfire_grace_time == 6 * 3600 and nightly.coalesce

        # Rebuilding from an edited file replaces jobs and drops those of removed sources.
        only_a = load_sources(write_sources_file(tmp_path / "a.toml", [
            folder_source("a", "RZA", "wlmds", folder, poll_minutes=1)]))
        schedule_jobs(scheduler, only_a)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"poll:a", "housekeeping"}
        assert jobs["poll:a"].trigger.interval.total_seconds() == 60
    finally:
        scheduler.shutdown(wait=False)


hook_calls: list[str] = []


def record_hook_call(engine: Engine, settings: Settings) -> None:
    """A post-load hook for the test below (referenced as 'tests.test_scheduler:record_hook_call')."""
    with engine.connect() as connection:
        hook_calls.append(f"{connection.execute(select(func.count()).select_from(Feed)).scalar_one()} feeds")


@pytest.fixture
def only_test_hook() -> Iterator[None]:
    saved = hooks.post_load_hooks()
    hooks._hooks[:] = [hooks.PostLoadHook("test hook", "tests.test_scheduler:record_hook_call"),
                       hooks.PostLoadHook("not installed", "ptl.nonexistent_module:refresh")]
    hook_calls.clear()
    yield
    hooks._hooks[:] = list(saved)


@pytest.mark.sqlite
def test_sqlite_scheduler_polls_runs_hooks_and_holds_the_file_lock(
        system: SynthSystem, tmp_path: Path, only_test_hook: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    database = tmp_path / "ptl.sqlite3"
    url = f"sqlite:///{database}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    folder = drop_folder(tmp_path / "drop", "RZA")
    feed = system.feeds[0]
    config_file = write_sources_file(tmp_path / "sources.toml", [
        folder_source("rza", "RZA", feed.profile, folder, poll_minutes=0.02)],
        scheduler={"lease_seconds": 0.2})
    runner = SchedulerRunner(load_sources(config_file), Settings(database_url=url, var_dir=tmp_path / "var"))
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    caplog.set_level(logging.INFO)
    thread.start()
    try:
        wait_for(lambda: runner.active, 10, "the scheduler to become active")
        deliver(feed.path, folder)
        wait_for(lambda: feed.path.name in loaded_files(engine), 10, "the dropped file to load")
        wait_for(lambda: hook_calls, 5, "the post-load hook")
        # Hooks run in order on the scheduler's thread: the missing one is reported just after.
        wait_for(lambda: any(r.getMessage() == "post-load hook skipped: not available" for r in caplog.records),
                 5, "the missing hook to be reported")
        assert hook_calls == ["1 feeds"]

        # The store's lock is taken: neither a second scheduler nor a cron poll may run now.
        assert not FileLock(Path(f"{database}.scheduler.lock")).try_acquire()
        code, _out, err = run_ptl(["sources", "poll", "--once", "--config", str(config_file)], monkeypatch,
                                  capsys, {"PTL_DATABASE_URL": url, "PTL_LOG_FORMAT": "json"})
        assert code == 2 and "a scheduler is active against this store" in err
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    lock = FileLock(Path(f"{database}.scheduler.lock"))
    assert lock.try_acquire()  # released on a clean stop
    lock.release()


def _log_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
    return records


def _said(path: Path, message: str) -> bool:
    return any(r.get("message", "").startswith(message) for r in _log_records(path))


def _start_scheduler(config: Path, url: str, log_path: Path, var: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PTL_DATABASE_URL": url, "PTL_LOG_FORMAT": "json", "PTL_LOG_LEVEL": "DEBUG",
           "PTL_VAR_DIR": str(var)}
    with log_path.open("wb") as log_file:
        return subprocess.Popen([sys.executable, "-m", "ptl.cli", "scheduler", "--config", str(config)],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log_file)


@pytest.mark.postgres
def test_two_schedulers_one_runs_jobs_and_the_other_takes_over(
        postgres_url: str, system: SynthSystem, tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    poll_seconds = 3.0
    folder = drop_folder(tmp_path / "drop", "RZA")
    config = write_sources_file(tmp_path / "sources.toml", [
        folder_source("rza", "RZA", system.feeds[0].profile, folder, poll_minutes=poll_seconds / 60)],
        scheduler={"lease_seconds": 0.5})
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    processes = {name: _start_scheduler(config, postgres_url, logs[name], tmp_path / "var")
                 for name in ("a", "b")}
    try:
        wait_for(lambda: sum(_said(p, "scheduler active") for p in logs.values()) == 1
                 and sum(_said(p, "another scheduler is active") for p in logs.values()) == 1,
                 30, "one active and one standing-by scheduler")
        active = next(name for name, path in logs.items() if _said(path, "scheduler active"))
        standby = "b" if active == "a" else "a"

        first, second, third = system.feeds[:3]
        deliver(first.path, folder)
        wait_for(lambda: first.path.name in loaded_files(engine), 15, "the first file to load")
        time.sleep(poll_seconds)  # let a few more polls happen
        polls = {name: sum(r.get("message") == "source polled" for r in _log_records(path))
                 for name, path in logs.items()}
        assert polls[active] >= 2 and polls[standby] == 0  # exactly one scheduler runs jobs

        processes[active].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        processes[active].wait(10)
        deliver(second.path, folder)
        wait_for(lambda: _said(logs[standby], "scheduler active"), poll_seconds + 5, "the standby to take over")
        took_over = time.monotonic() - killed_at
        assert took_over < poll_seconds, f"took over after {took_over:.1f}s"
        wait_for(lambda: second.path.name in loaded_files(engine), poll_seconds + 5, "the second file to load")

        # Stopping cleanly lets the running job finish and releases the lock.
        deliver(third.path, folder)
        wait_for(lambda: third.path.name in loaded_files(engine), poll_seconds + 5, "the third file to load")
        processes[standby].send_signal(signal.SIGTERM)
        assert processes[standby].wait(20) == 0
        assert _said(logs[standby], "scheduler stopped")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
        engine.dispose()


class TcpProxy:
    """A loopback TCP relay in front of PostgreSQL that the test can cut and restore: while
    stopped it refuses new connections and has dropped every existing one."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        self._running.set()
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        self._running.clear()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while block := source.recv(65536):
                sink.sendall(block)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.postgres
def test_scheduler_keeps_running_while_the_store_is_unreachable_and_recovers(
        postgres_url: str, system: SynthSystem, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    direct = make_url(postgres_url)
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    proxy = TcpProxy((direct.host or "127.0.0.1", direct.port or 5432))
    proxy.start()
    through_proxy = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    folder = drop_folder(tmp_path / "drop", "RZA")
    config = load_sources(write_sources_file(tmp_path / "sources.toml", [
        folder_source("rza", "RZA", system.feeds[0].profile, folder, poll_minutes=0.02)],
        scheduler={"lease_seconds": 0.3}))
    runner = SchedulerRunner(config, Settings(database_url=through_proxy, var_dir=tmp_path / "var"))
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    caplog.set_level(logging.INFO)
    thread.start()
    try:
        wait_for(lambda: runner.active, 10, "the scheduler to become active")
        first, second = system.feeds[:2]
        deliver(first.path, folder)
        wait_for(lambda: first.path.name in loaded_files(engine), 10, "the first file to load")

        proxy.stop()  # the store is now unreachable for the scheduler
        dropped = deliver(second.path, folder)
        wait_for(lambda: not runner.active, 5, "the scheduler to notice")
        time.sleep(1.5)  # several lease checks and poll ticks while the store is away
        assert thread.is_alive() and dropped.exists()
        assert second.path.name not in loaded_files(engine)
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("scheduler lock lost") for m in messages)
        assert "store unreachable: will keep trying" in messages

        proxy.start()
        wait_for(lambda: second.path.name in loaded_files(engine), 15, "the file to load after recovery")
        # The file is filed away once its load is committed and the loader has let go: a moment
        # after the feed is visible, not at the same instant.
        wait_for(lambda: not dropped.exists(), 5, "the loaded file to leave the inbox")
        assert runner.active
        assert "store reachable again" in [r.getMessage() for r in caplog.records]
    finally:
        stop.set()
        thread.join(15)
        proxy.stop()
        engine.dispose()
    assert not thread.is_alive()
