"""Each loaded feed's pathway rows kept as an Arrow IPC file, so a snapshot reads from the store
only the feeds it has not seen.

A loaded feed's `pathway` rows never change: feed ids are never reused and rows are written once,
in the transaction that loads the feed. After one provider's weekly load, the snapshot needs one
new feed (~100k rows) from the store; every other current feed and every history census is the
same as before. Reading a million rows through ADBC takes seconds on a two-core machine; reading
them from a local LZ4-compressed Arrow file takes a few hundred milliseconds.

What is cached, and what is not:
- only the columns the snapshot already reads from `pathway` (`snapshot._PATHWAY_COLUMNS` for
  current feeds, `snapshot.HISTORY_SCHEMA` for history censuses): no identity value is ever
  written (no NHS number, name, date of birth, postcode or local patient id: those live in
  `source_identity` and stay in the store). The files do hold what the in-memory snapshot
  holds -- pathway and referral ids, site, codes, LSOA, age band, sex, ethnicity -- so they are
  written owner-only (directory 0700, files 0600) under the deployment's `PTL_VAR_DIR`;
- never cached, read from the store on every rebuild: `person_id` (from the newest
  identity-linking run), the NHS number / postcode presence flags (`source_identity` values can
  be refreshed by a later feed), completed mutual-aid moves, feeds and their rejections.

A file is named by the store it came from and the feed's fingerprint (id, file sha256 and
received-at time), so a recreated database that reuses feed ids never matches an old file. It is
used only when its row count equals the feed's row count in the store (checked once per process)
and its columns and types are the ones asked for; anything else (missing, unreadable, stale) is
read from the store and rewritten. Writes go to a temporary file in the same directory and are
renamed into place, so a reader never sees half a file.

The process also keeps in memory the frames of the feeds its last snapshot used (about 200 MB
for a million current pathways and their history): the next rebuild takes them from there and
touches neither the disk nor the store for them. The disk files serve a restarted process.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import polars as pl
from sqlalchemy import Engine

log = logging.getLogger(__name__)

_SUFFIX: Final[str] = ".arrow"


@dataclass(frozen=True)
class FeedKey:
    """One loaded feed as the cache knows it."""

    feed_id: int
    sha256: str
    received_at: str
    provider_code: str = ""

    @property
    def file_name(self) -> str:
        digest = hashlib.sha256(f"{self.feed_id}|{self.sha256}|{self.received_at}".encode()).hexdigest()
        return f"feed-{self.feed_id}-{digest[:16]}{_SUFFIX}"


class FeedFrameCache:
    """Arrow IPC files of feeds' pathway rows, one directory per store."""

    def __init__(self, directory: Path) -> None:
        self.root = Path(directory)
        #: files whose row count was checked against the store by this process
        self._verified: set[Path] = set()
        #: the frames of the feeds the last snapshot used, kept in memory by this process (the
        #: next rebuild then reads neither the store nor the disk for them)
        self._held: dict[Path, pl.DataFrame] = {}
        self._lock = threading.Lock()

    def folder(self, engine: Engine) -> Path:
        store = engine.url.render_as_string(hide_password=True)
        return self.root / hashlib.sha256(store.encode()).hexdigest()[:16]

    def read(self, folder: Path, feed: FeedKey, schema: dict[str, Any]) -> pl.DataFrame | None:
        """The feed's rows with exactly `schema`'s columns, or None when there is no usable file
        (a file lacking a column, or of another type, is not used)."""
        path = folder / feed.file_name
        held = self._held.get(path)
        if held is not None and set(schema) <= set(held.columns):
            frame = held.select(list(schema))
            return frame if dict(frame.schema) == schema else None
        if not path.exists():
            return None
        try:
            frame = pl.read_ipc(path, columns=list(schema)).select(list(schema))
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is a miss, not an error
            log.warning("feed frame cache: %s unreadable (%s); reading the feed from the store",
                        path.name, type(exc).__name__)
            return None
        if dict(frame.schema) != schema:
            return None
        return frame

    def needs_count(self, folder: Path, feed: FeedKey) -> bool:
        """Whether the file's row count has not yet been checked against the store."""
        return (folder / feed.file_name) not in self._verified

    def accept(self, folder: Path, feed: FeedKey, frame: pl.DataFrame, store_rows: int | None) -> bool:
        """Whether a read file matches the store (`store_rows`: the feed's row count there, or
        None when this process already checked it); a mismatch removes the file."""
        path = folder / feed.file_name
        if store_rows is not None and frame.height != store_rows:
            log.warning("feed frame cache: feed %d has %d rows in the store, %d in %s; discarded",
                        feed.feed_id, store_rows, frame.height, path.name)
            with contextlib.suppress(OSError):
                path.unlink()
            return False
        with self._lock:
            self._verified.add(path)
            self._held[path] = frame
        return True

    def write(self, folder: Path, feed: FeedKey, frame: pl.DataFrame) -> None:
        """Keep the feed's rows (as read from the store, so already checked): temporary file,
        then an atomic rename. Failing to write only costs a store read next time."""
        path = folder / feed.file_name
        with self._lock:
            self._held[path] = frame
        temporary = folder / f".{feed.file_name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
                frame.write_ipc(handle, compression="lz4")
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("feed frame cache: could not write %s (%s)", path.name, type(exc).__name__)
            with contextlib.suppress(OSError):
                temporary.unlink()
            return
        with self._lock:
            self._verified.add(path)

    def prune(self, folder: Path, keep: set[FeedKey]) -> None:
        """Remove files of feeds the snapshot no longer uses (superseded censuses, refused or
        older history) and temporary files left by an interrupted write."""
        wanted = {feed.file_name for feed in keep}
        with self._lock:
            for path in [p for p in self._held if p.parent == folder and p.name not in wanted]:
                del self._held[path]
        if not folder.is_dir():
            return
        for path in folder.iterdir():
            if path.name not in wanted and (path.suffix in (_SUFFIX, ".tmp")):
                with contextlib.suppress(OSError):
                    path.unlink()
                with self._lock:
                    self._verified.discard(path)
