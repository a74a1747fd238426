"""Reading a file from outside in a child process, with memory and time limits.

A spreadsheet reader asked for a cell at XFD1048576 allocates 512 GiB and aborts the process it
runs in; one long shared string used by a few hundred cells is copied into each of them. The
checks in `ingest.read` refuse the shapes we know before parsing, but the parsers are large and
the next shape is unknown: so a file that arrives by upload, drop folder or MESH (and every XLSX)
is parsed by a fresh interpreter (`python -m ingest.untrusted`) whose data segment is capped
(RLIMIT_DATA) and which is killed when it overruns its time. It hands the all-text frame back as
Arrow IPC in an anonymous memory file that this process maps without copying; a crash, an
allocation refused or a timeout becomes a `FeedRefused` saying so, never a dead caller. The
child writes no core file, and what it prints on failure is dropped unread (it could quote the
file).

`read_extract_from` chooses: in the child for files from outside (and every XLSX), in this
process for a CSV or Parquet file an operator runs `ptl ingest` on (faster: no child to start,
no frame to hand over; `PTL_READ_IN_CHILD=always` isolates those too).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from ingest.errors import FeedRefused
from ingest.profiles import Profile
from ingest.read import Extract, ReadLimits, file_format_of, read_extract
from ptl.settings import Settings

log = logging.getLogger("ptl.ingest")

#: Sources whose files an operator chose to load (every other source is from outside).
OPERATOR_SOURCES = frozenset({"cli"})
#: The Profile fields the reader uses (the rest concern mapping, after the read).
_READER_PROFILE_FIELDS = ("name", "date_format", "delimiter", "encoding", "sheet")


def limits_of(settings: Settings) -> ReadLimits:
    return ReadLimits(max_cells=settings.read_max_cells,
                      max_unpacked_bytes=settings.read_max_unpacked_mb << 20)


def reads_in_child(source: str, file_format: str, settings: Settings) -> bool:
    """Whether a file from `source` is parsed in a child process."""
    return (settings.read_in_child == "always" or source not in OPERATOR_SOURCES
            or file_format == "xlsx")


def read_extract_from(source: str, path: Path, profile: Profile, settings: Settings,
                      data: bytes | None = None) -> Extract:
    """Read an extract the way its source calls for (see the module docstring)."""
    limits = limits_of(settings)
    if reads_in_child(source, file_format_of(path), settings):
        return read_in_child(path, profile, limits, memory_mb=settings.read_memory_mb,
                             seconds=settings.read_seconds)
    return read_extract(path, profile, data, limits)


def read_in_child(path: Path, profile: Profile, limits: ReadLimits, *, memory_mb: int,
                  seconds: float) -> Extract:
    """`read_extract` in a child process limited to `memory_mb` of data and `seconds`."""
    file_format_of(path)  # an unsupported type is refused without starting anything
    request = {
        "path": str(path),
        "profile": {name: getattr(profile, name) for name in _READER_PROFILE_FIELDS},
        "limits": asdict(limits),
        "memory_mb": memory_mb,
        "columns": {},  # the reader does not map columns; Profile needs the field
    }
    frame_file = _frame_file()
    try:
        # A fresh interpreter, never fork: the caller runs Polars' threads (and, in the API,
        # an event loop) that a forked child would inherit half-held.
        child = subprocess.Popen(
            [sys.executable, "-m", "ingest.untrusted", str(frame_file)],
            pass_fds=[frame_file], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env={**os.environ, "RUST_BACKTRACE": "0"},
        )
        try:
            answer, _ = child.communicate(json.dumps(request).encode(), timeout=seconds)
        except subprocess.TimeoutExpired:
            raise FeedRefused(
                f"{path.name}: the file could not be read within the time limit of {seconds:g} s "
                "(setting PTL_READ_SECONDS); it is too large or malformed", kind="too_large") from None
        finally:
            if child.poll() is None:  # overran, or this thread was interrupted: no reader left behind
                child.kill()
                child.communicate()
        outcome = _outcome(answer)
        if outcome is None:
            # What the child printed is not kept (it may quote the file): its exit status is all.
            log.warning("file reader process failed", extra={"exit_status": child.returncode})
            raise _crash_refusal(path.name, child.returncode, memory_mb)
        if outcome["status"] == "refused":
            raise FeedRefused(str(outcome["message"]), kind=str(outcome["kind"]))
        frame = _mapped_frame(frame_file)
    finally:
        os.close(frame_file)
    return Extract(frame=frame, file_format=str(outcome["file_format"]), row_offset=int(outcome["row_offset"]))


def _outcome(answer: bytes) -> dict[str, Any] | None:
    try:
        outcome = json.loads(answer.decode("utf-8").strip().splitlines()[-1])
    except (UnicodeDecodeError, IndexError, ValueError):
        return None
    return outcome if isinstance(outcome, dict) and outcome.get("status") in ("read", "refused") else None


def _crash_refusal(name: str, returncode: int, memory_mb: int) -> FeedRefused:
    """What a child that ended without an answer means: a refused allocation aborts it (Rust
    aborts, Python exits 134 here), the kernel's out-of-memory killer kills it."""
    if returncode in (-signal.SIGABRT, -signal.SIGKILL, -signal.SIGSEGV, -signal.SIGBUS, 134, 137):
        return FeedRefused(f"{name}: the file could not be read within the memory limit of {memory_mb:,} MB "
                           "(setting PTL_READ_MEMORY_MB); it is too large or malformed", kind="too_large")
    return FeedRefused(f"{name}: the file could not be read: the reader stopped unexpectedly "
                       f"(exit status {returncode})", kind="unreadable")


def _frame_file() -> int:
    """An anonymous file for the child's frame: memory on Linux (nothing on disk, nothing left
    if either process dies); elsewhere an unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("ptl-untrusted-frame", os.MFD_CLOEXEC)
    return os.dup(tempfile.TemporaryFile().fileno())


def _mapped_frame(frame_file: int) -> pl.DataFrame:
    """The child's frame, mapped from the memory file rather than copied out of it (Arrow
    keeps the mapping alive while the frame uses it)."""
    import pyarrow as pa

    where = f"/proc/self/fd/{frame_file}" if os.path.exists("/proc/self/fd") else f"/dev/fd/{frame_file}"
    with pa.memory_map(where) as source:
        table = pa.ipc.open_file(source).read_all()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _confine(memory_mb: int) -> None:
    """Limit this (child) process: its data segment, and no core file of patient data."""
    limit = memory_mb << 20
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ValueError, OSError):  # a system without a data limit (not Linux): the address space
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _serve(frame_file: int) -> dict[str, Any]:
    request = json.loads(sys.stdin.buffer.read())
    _confine(int(request["memory_mb"]))
    profile = Profile(**{**request["profile"], "columns": request["columns"]})
    try:
        extract = read_extract(Path(request["path"]), profile, limits=ReadLimits(**request["limits"]))
    except FeedRefused as refusal:
        return {"status": "refused", "message": str(refusal), "kind": refusal.kind}
    with os.fdopen(frame_file, "wb") as handle:
        # One chunk per column, in the newest Arrow layout Polars has (string views), so the
        # caller maps it without converting.
        extract.frame.write_ipc(handle, compression="uncompressed",
                                          compat_level=pl.CompatLevel.newest())
    return {"status": "read", "file_format": extract.file_format, "row_offset": extract.row_offset}


if __name__ == "__main__":
    try:
        outcome = _serve(int(sys.argv[1]))
    except MemoryError:
        os._exit(134)  # as a refused allocation in Rust ends: the caller reports the memory limit
    sys.stdout.write(json.dumps(outcome) + "\n")
