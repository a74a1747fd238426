"""The store's scheduler lock: at most one process runs source jobs against a store at a time.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) held on a dedicated
  connection for as long as the process is active. If the process dies, or its connection to
  the store is cut, PostgreSQL releases the lock and a standing-by scheduler takes it. TCP
  keepalives on that connection make a silently vanished peer count as dead within ~30 s.
- SQLite: an exclusive `flock` on `DATABASE.scheduler.lock` next to the database file (the
  operating system releases it when the process dies). SQLite stores are single-machine, so a
  file lock is exactly as wide as the store.

`ptl sources poll --once` takes the same lock, so a cron job never polls alongside a scheduler.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from ptl.store.engine import make_engine, normalise_url

#: A fixed 64-bit key ("PTLsched"): outside the 32-bit `hashtext` range used for per-provider
#: load locks, so the two can never collide.
SCHEDULER_LOCK_KEY = int.from_bytes(b"PTLsched", "big")

#: libpq options for connections that must notice a dead peer (lock holder, scheduler engine).
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
    "keepalives_count": 3,
}


def process_label() -> str:
    """host:pid of this process (what status shows as the lock holder)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class StoreLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if free; False if another process holds it. May raise when the store
        is unreachable."""

    def still_held(self) -> bool:
        """Whether this process still holds the lock (False once its connection is lost)."""

    def release(self) -> None: ...


class PostgresLock:
    """Session advisory lock on its own AUTOCOMMIT connection (never idle in a transaction)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url, poolclass=NullPool, connect_args=POSTGRES_CONNECT_ARGS)
        self.connection: Connection | None = None
        self.held = False

    def try_acquire(self) -> bool:
        if self.connection is None:
            self.connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(self.connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": SCHEDULER_LOCK_KEY}).scalar())
        except SQLAlchemyError:
            self._drop_connection()
            raise
        self.held = got
        return got

    def still_held(self) -> bool:
        if self.connection is None or not self.held:
            return False
        try:
            self.connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            # The session is gone, and with it the lock: another scheduler may already hold it.
            self._drop_connection()
            return False

    def release(self) -> None:
        if self.connection is not None and self.held:
            with contextlib.suppress(SQLAlchemyError):
                self.connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEDULER_LOCK_KEY})
        self._drop_connection()
        self.engine.dispose()

    def _drop_connection(self) -> None:
        self.held = False
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.invalidate()
                self.connection.close()
        self.connection = None


class FileLock:
    """An exclusive, non-blocking `flock` on a file next to the SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: Any = None

    def try_acquire(self) -> bool:
        import fcntl

        if self.handle is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(process_label() + "\n")
        handle.flush()
        self.handle = handle
        return True

    def still_held(self) -> bool:
        return self.handle is not None

    def release(self) -> None:
        import fcntl

        if self.handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def store_lock(database_url: str) -> StoreLock:
    """The scheduler lock for the store at `database_url`."""
    url = make_url(normalise_url(database_url))
    if url.get_backend_name() == "postgresql":
        return PostgresLock(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("an in-memory SQLite store cannot be shared by a scheduler")
        return FileLock(Path(url.database + ".scheduler.lock"))
    raise ValueError(f"no scheduler lock for {url.get_backend_name()} stores")
