"""Group commit of the audit trail: no identifiable answer leaves before its audit row is committed.

Every response carrying identifiable rows needs its `audit_event` row committed first. One
commit per request made the commit the bottleneck of identifiable pages (each pays a round trip,
a transaction and, on PostgreSQL, a WAL flush). The `AuditWriter` keeps the guarantee and shares
the cost: requests hand their event to one writer thread and wait; the writer takes every event
waiting at that moment, inserts them with one `executemany` in one transaction, commits, and only
then releases each request. While one batch commits, the next one gathers, so batches grow with
concurrency and a lone request waits for just its own commit (no timer, no added latency).

- Durable: PostgreSQL commits with the server's `synchronous_commit` (on by default: the WAL is
  flushed before the commit returns); SQLite in WAL mode with `synchronous=NORMAL`, the store's
  setting for every write.
- Failure is the request's failure: if the batch cannot be written, each event is retried in a
  transaction of its own (one bad event does not fail its neighbours), and a request whose own
  event still fails gets `AuditUnavailable` instead of its data.
- Handlers run in worker threads (`sync_to_thread`), so a request waits on a
  `concurrent.futures.Future`; async code awaits the same future through `write_async`. The
  writer is a thread, not a task on one event loop, so it serves every loop (uvicorn's and each
  Litestar test client's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any, Final

from sqlalchemy import Connection, Engine, insert

from ptl.store.access import AuditEvent
from ptl.store.engine import write_connection

log = logging.getLogger("ptl.api")

#: Most events in one transaction (a bound on the statement size, far above real concurrency).
MAX_BATCH: Final[int] = 500
#: How long a request waits for its audit commit before it is refused.
COMMIT_TIMEOUT_SECONDS: Final[float] = 30.0

_STOP: Final = object()


class AuditUnavailable(RuntimeError):
    """The audit event could not be committed: the answer it was for must not be sent."""


class AuditWriter:
    """Writes `audit_event` rows for concurrent requests in shared transactions."""

    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._statement = insert(AuditEvent)
        self._connection: Connection | None = None
        #: commits made and events written (for tests and logs: batches show as events > commits)
        self.commits = 0
        self.events = 0

    def submit(self, event: Mapping[str, Any]) -> Future[None]:
        """Queue one event (the column values of an `audit_event` row); the future completes
        when it is committed, or fails with `AuditUnavailable`."""
        done: Future[None] = Future()
        self._ensure_running()
        self._queue.put((dict(event), done))
        return done

    def write(self, event: Mapping[str, Any], timeout: float = COMMIT_TIMEOUT_SECONDS) -> None:
        """Queue one event and block until it is committed (raises `AuditUnavailable`)."""
        try:
            self.submit(event).result(timeout)
        except TimeoutError as exc:
            raise AuditUnavailable("the audit event was not committed in time") from exc

    async def write_async(self, event: Mapping[str, Any], timeout: float = COMMIT_TIMEOUT_SECONDS) -> None:
        """`write` for coroutines: awaits the commit without holding a thread."""
        try:
            await asyncio.wait_for(asyncio.wrap_future(self.submit(event)), timeout)
        except TimeoutError as exc:
            raise AuditUnavailable("the audit event was not committed in time") from exc

    def close(self, timeout: float = COMMIT_TIMEOUT_SECONDS) -> None:
        """Write what is queued, then stop the thread (a later `submit` starts it again)."""
        with self._start_lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                return
            self._queue.put(_STOP)
        thread.join(timeout)

    # --- the writer thread ---------------------------------------------------------------------

    def _ensure_running(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._release()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[dict[str, Any], Future[None]]]) -> None:
        try:
            self._insert([event for event, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every failure must reach the waiting requests
            if len(batch) == 1:
                self._fail(batch[0][1], exc)
                return
            # One event may be at fault (say, a value the column refuses): the others should not
            # lose their answers to it. Each on its own, once.
            for event, done in batch:
                try:
                    self._insert([event])
                except Exception as single:  # noqa: BLE001 - as above
                    self._fail(done, single)
                else:
                    done.set_result(None)
            return
        for _, done in batch:
            done.set_result(None)

    def _insert(self, events: list[dict[str, Any]]) -> None:
        # The writer keeps one connection between batches (no pool checkout and liveness ping
        # per commit); after any failure it is dropped and the next batch opens a new one.
        if self._connection is None:
            self._connection = write_connection(self.engine)
        connection = self._connection
        try:
            with connection.begin():
                connection.execute(self._statement, events)
        except BaseException:
            self._connection = None
            with contextlib.suppress(Exception):
                connection.invalidate()
                connection.close()
            raise
        self.commits += 1
        self.events += len(events)

    def _release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    @staticmethod
    def _fail(done: Future[None], exc: BaseException) -> None:
        # The exception's message may quote values; the log names its type only.
        log.error("audit event not written (%s): the answer it was for is refused", type(exc).__name__)
        failure = AuditUnavailable("the audit event could not be written")
        failure.__cause__ = exc
        done.set_exception(failure)
