"""Drop-folder sources: a provider writes extracts into `inbox/`; each is ingested and moved.

Layout under the source's `path`::

    inbox/       the provider writes here
    processed/   loaded files, and files already loaded before (same sha256)
    failed/      refused files
    each moved file gets two sidecars next to it: NAME.txt (for people) and NAME.json (for scripts)

When is a file ready? A writer may still be copying it, so a file is taken only when either
- a marker `NAME.done` sits next to it (the writer's promise that it is complete; recommended
  for tools that keep the source file's old mtime while copying), or
- its mtime is at least `settle_seconds` old (default 60) and its size and mtime did not
  change while it was being read (otherwise it is left for the next poll).
With `require_done_marker = true` only marked files are taken. Hidden files (`.name`),
temporary names (`*.part`, `*.tmp`, `*.partial`, `~$*`) and the markers themselves are ignored.

A crash after a feed is recorded but before the file is moved is harmless: the next poll finds
the same sha256 already loaded and files it under `processed/` as "already loaded as feed N".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ingest.errors import DeclarationError, ProfileError
from ingest.pipeline import IngestResult, ingest_file
from ingest.read import sha256_of
from ingest.sources.config import FolderSource, declared_census_date
from ingest.sources.outcome import FileOutcome, SourceUnavailable
from ingest.sources.state import record_receipt, utc_now
from ptl.settings import Settings

log = logging.getLogger("ptl.sources")

DONE_SUFFIX = ".done"
_TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".filepart", DONE_SUFFIX)
_SIDECAR_SUFFIXES = (".txt", ".json")


def ensure_layout(source: FolderSource) -> None:
    """Create inbox/, processed/ and failed/ if the folder exists but they do not."""
    if not source.path.is_dir():
        raise SourceUnavailable(f"folder {source.path} is not there (unmounted or moved?)")
    for directory in (source.inbox, source.processed, source.failed):
        try:
            directory.mkdir(exist_ok=True)
        except OSError as exc:
            raise SourceUnavailable(f"cannot create {directory} ({exc.strerror})") from None


def is_candidate(path: Path) -> bool:
    """A file in the inbox that may be an extract (not hidden, temporary or a marker)."""
    name = path.name
    return (path.is_file() and not name.startswith((".", "~$"))
            and not name.lower().endswith(_TEMPORARY_SUFFIXES) and not name.endswith("~"))


def inbox_files(source: FolderSource) -> list[Path]:
    """Candidate files, oldest first (so weekly files arrive in census order)."""
    try:
        entries = [p for p in source.inbox.iterdir() if is_candidate(p)]
    except OSError as exc:
        raise SourceUnavailable(f"cannot list {source.inbox} ({exc.strerror})") from None
    dated: list[tuple[float, str, Path]] = []
    for path in entries:
        try:
            dated.append((path.stat().st_mtime, path.name, path))
        except FileNotFoundError:
            continue  # taken away by the writer since the listing
    return [path for _mtime, _name, path in sorted(dated)]


def done_marker(path: Path) -> Path:
    return path.with_name(path.name + DONE_SUFFIX)


def waiting_reason(path: Path, source: FolderSource, now: float) -> str | None:
    """None when the file may be taken; otherwise why it is left for a later poll."""
    if done_marker(path).exists():
        return None
    if source.require_done_marker:
        return f"waiting for its marker {path.name}{DONE_SUFFIX}"
    age = now - path.stat().st_mtime
    if age < source.settle_seconds:
        return (f"still being written (changed {max(age, 0):.0f}s ago; taken once unchanged "
                f"for {source.settle_seconds:.0f}s, or at once with a {DONE_SUFFIX} marker)")
    return None


def poll_folder(engine: Engine, source: FolderSource, settings: Settings,
                outcomes: list[FileOutcome]) -> int:
    """Ingest every ready file in the inbox, appending what became of each to `outcomes` (so
    they are reported even when a later file fails). Returns how many files are still waiting.
    Raises `SourceUnavailable` when the folder or the store cannot be reached."""
    ensure_layout(source)
    for path in inbox_files(source):
        try:
            reason = waiting_reason(path, source, time.time())
        except FileNotFoundError:
            continue  # taken away by the writer between listing and looking
        if reason is not None:
            outcomes.append(FileOutcome(name=path.name, status="waiting", message=reason))
            continue
        outcomes.append(ingest_dropped_file(engine, source, path, settings))
    return sum(1 for o in outcomes if o.status in ("waiting", "error"))


def _fingerprint(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def ingest_dropped_file(engine: Engine, source: FolderSource, path: Path, settings: Settings) -> FileOutcome:
    """Ingest one ready file and file it under processed/ or failed/ with its sidecars."""
    started = time.perf_counter()
    try:
        before = _fingerprint(path)
        sha256 = sha256_of(path)
    except OSError as exc:
        return FileOutcome(name=path.name, status="error", message=f"cannot be read ({exc.strerror}); left in inbox")
    try:
        result = ingest_file(engine, path, provider_code=source.provider_code, profile=source.profile,
                             census_date=declared_census_date(source, path.name), source="folder",
                             settings=settings, filename=path.name)
    except SQLAlchemyError as exc:
        raise SourceUnavailable(f"the store is unreachable ({type(exc).__name__}); "
                                f"{path.name} stays in inbox for the next poll") from None
    except ProfileError as exc:
        raise SourceUnavailable(f"profile {source.profile_ref} is not usable: {exc}") from None
    except DeclarationError as exc:
        raise SourceUnavailable(f"source {source.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any other failure must not stop the source's other files
        # The exception's text may quote file contents, so only its type is reported.
        log.error("file could not be ingested", extra={
            "source": source.name, "provider": source.provider_code, "file": path.name,
            "error": type(exc).__name__})
        return FileOutcome(name=path.name, status="error",
                           message=f"ingest failed unexpectedly ({type(exc).__name__}); left in inbox, "
                                   "retried on the next poll")
    try:
        changed = _fingerprint(path) != before
    except FileNotFoundError:
        changed = True
    if changed and result.status != "duplicate":
        log.warning("file changed while it was read", extra={
            "source": source.name, "provider": source.provider_code, "file": path.name,
            "feed_id": result.feed_id})
        return FileOutcome(name=path.name, status="waiting", feed_id=result.feed_id,
                           message="changed while it was being read; read again once it settles")

    destination = source.failed if result.status == "refused" else source.processed
    target = _free_name(destination, path.name)
    _write_sidecars(target, result, source, sha256)
    os.replace(path, target)
    marker = done_marker(path)
    if marker.exists():
        marker.unlink(missing_ok=True)
    try:
        record_receipt(engine, source_name=source.name, received_name=path.name, outcome=result.status,
                       feed_id=result.feed_id, sha256=sha256, message=result.message)
    except SQLAlchemyError:
        # The feed itself is recorded; the receipt is bookkeeping and may be lost with the store.
        log.warning("receipt not recorded: store unreachable", extra={"source": source.name, "file": path.name})
    log.info("file filed", extra={
        "source": source.name, "provider": source.provider_code, "file": path.name,
        "status": result.status, "feed_id": result.feed_id, "moved_to": str(target.parent.name),
        "rows_loaded": result.rows_loaded, "rows_rejected": result.rows_rejected,
        "seconds": round(time.perf_counter() - started, 3)})
    return FileOutcome(name=path.name, status=result.status, message=result.message,
                       feed_id=result.feed_id, moved_to=str(target),
                       rows_loaded=result.rows_loaded, rows_rejected=result.rows_rejected,
                       linking=result.linking.status if result.linking is not None else None)


def _free_name(directory: Path, name: str) -> Path:
    """`name` in `directory`, or `stem-2.ext`, `stem-3.ext` … when a file is re-sent."""
    candidate = directory / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 2
    while candidate.exists() or any(candidate.with_name(candidate.name + s).exists() for s in _SIDECAR_SUFFIXES):
        candidate = directory / f"{stem}-{number}{suffix}"
        number += 1
    return candidate


def sidecar_json(result: IngestResult, source_name: str, sha256: str) -> dict[str, Any]:
    """What the provider sees: outcome, counts and commonest reasons, never row values (row-level
    detail, which quotes values, stays in the store: `ptl feeds show N`)."""
    body = result.as_json()
    body.pop("rejections", None)
    body.pop("warnings", None)
    body["refusal_kind"] = result.refusal_kind
    body["top_rejections"] = [{"column": c, "kind": k, "rows": n} for c, k, n in result.top_reasons()]
    body["source"] = source_name
    body["sha256"] = sha256
    body["filed_at"] = utc_now().isoformat()
    return body


def sidecar_text(result: IngestResult, source_name: str, sha256: str) -> str:
    head = {"loaded": "LOADED", "refused": "REFUSED", "duplicate": "ALREADY LOADED"}[result.status]
    lines = [f"{head}: {result.filename}",
             f"  {result.message}",
             f"  provider {result.provider_code}, census {result.census_date or '-'}, "
             f"feed {result.feed_id if result.feed_id is not None else '-'}"]
    if result.status != "duplicate":
        lines.append(f"  rows read {result.rows_read:,}, loaded {result.rows_loaded:,}, "
                     f"rejected {result.rows_rejected:,}, with warnings {result.rows_warned:,}")
    if result.linking is not None:
        lines.append(f"  identity linking: {result.linking.message}")
    top = result.top_reasons()
    if top:
        lines.append("  commonest rejections:")
        lines.extend(f"    {n:>6,}  {column}: {kind}" for column, kind, n in top)
    if result.feed_id is not None and (result.rows_rejected or result.rows_warned):
        lines.append(f"  every rejected row with its reason: ptl feeds show {result.feed_id}")
    lines.append(f"  source {source_name}, sha256 {sha256}, filed {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%SZ}")
    return "\n".join(lines) + "\n"


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _write_sidecars(target: Path, result: IngestResult, source: FolderSource, sha256: str) -> None:
    _write_atomically(target.with_name(target.name + ".json"),
                      json.dumps(sidecar_json(result, source.name, sha256), indent=2, default=str) + "\n")
    _write_atomically(target.with_name(target.name + ".txt"), sidecar_text(result, source.name, sha256))
