"""Recording which reference file was loaded, and errors for unusable reference files."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from sqlalchemy import Connection, insert

from ptl.store.models import RefdataLoad


class RefdataError(Exception):
    """A reference data file is not in the expected layout (message says what to fix)."""


def record_load(connection: Connection, kind: str, path: Path, rows: int) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    connection.execute(
        insert(RefdataLoad).values(
            kind=kind, filename=path.name, sha256=digest, rows=rows, loaded_at=dt.datetime.now(dt.UTC)
        )
    )


def find_column(columns: list[str], candidates: tuple[str, ...], what: str, path: Path) -> str:
    """The first header matching a candidate (case-insensitive), or a clear error."""
    folded = {c.strip().lower(): c for c in columns}
    for candidate in candidates:
        if candidate.lower() in folded:
            return folded[candidate.lower()]
    raise RefdataError(
        f"{path.name}: no {what} column (looked for {', '.join(candidates)}); "
        f"the file has {', '.join(columns[:20])}"
    )
