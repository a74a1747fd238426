"""Settings: one object, read from `PTL_*` environment variables (documented in the README).

Each field names its environment variable in its metadata; `Settings.from_env()` reads them
all. To add a setting, add one field here with `env=` and document it in the README table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _setting(default: Any, env: str, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime configuration. Build with `Settings.from_env()`; tests construct it directly."""

    database_url: str = _setting(
        "", "PTL_DATABASE_URL",
        "SQLAlchemy URL of the store. Default: SQLite file VAR_DIR/ptl.sqlite3. Production: "
        "postgresql+psycopg://user:password@host:5432/ptl",
    )
    var_dir: Path = _setting(Path("var"), "PTL_VAR_DIR", "working directory for the SQLite store, demo files and caches")
    max_rejected_share: float = _setting(
        0.20, "PTL_MAX_REJECTED_SHARE", "a feed is refused whole when more than this share of its rows is rejected"
    )
    sqlite_writer_process_rows: int = _setting(
        50_000, "PTL_SQLITE_WRITER_PROCESS_ROWS", "SQLite store: files with at least this many rows are written by a short-lived writer process through ADBC (several times faster than Python's sqlite3); smaller ones directly"
    )
    # Reading files from outside (ingest/untrusted.py, ingest/read.py)
    read_in_child: str = _setting(
        "untrusted", "PTL_READ_IN_CHILD", "untrusted: parse files from uploads, drop folders and MESH (and every XLSX) in a child process with the memory and time limits below; always: every file, `ptl ingest` CSV and Parquet too"
    )
    read_memory_mb: int = _setting(
        6144, "PTL_READ_MEMORY_MB", "memory (data segment) the child process reading a file may use; a file that needs more is refused (a 1 M-row, 34-column XLSX peaks at 3.2 GiB)"
    )
    read_seconds: int = _setting(300, "PTL_READ_SECONDS", "time the child process reading a file may take; a file that takes longer is refused")
    read_max_cells: int = _setting(
        40_000_000, "PTL_READ_MAX_CELLS", "most cells (rows × columns) an XLSX sheet may declare, and shared strings it may hold (a full 1,048,576-row sheet of 38 columns fits)"
    )
    read_max_unpacked_mb: int = _setting(
        3072, "PTL_READ_MAX_UNPACKED_MB", "most an XLSX may unpack to, all its parts together (a 1 M-row, 34-column sheet is about 1.6 GB)"
    )
    log_format: str = _setting("auto", "PTL_LOG_FORMAT", "json, text or auto (JSON when not on a terminal)")
    log_level: str = _setting("INFO", "PTL_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR")
    # Identity linking (issue: patient identity across providers)
    link_match_threshold: float = _setting(
        0.80, "PTL_LINK_MATCH_THRESHOLD", "Splink match probability at or above which two records are one person (0.80: precision 0.9956, recall 0.986 on the synthetic benchmark)"
    )
    link_pair_budget: int = _setting(
        50_000_000, "PTL_LINK_PAIR_BUDGET", "refuse probabilistic linking when blocking would compare more pairs than this"
    )
    link_model_path: str = _setting("", "PTL_LINK_MODEL", "trained Splink model JSON (default: the one shipped in ptl/identity)")
    # Scheduled sources
    sources_path: str = _setting("", "PTL_SOURCES", "sources configuration file (TOML) for drop folders and MESH mailboxes")
    # API
    host: str = _setting("127.0.0.1", "PTL_HOST", "address `ptl serve` listens on")
    port: int = _setting(8000, "PTL_PORT", "port `ptl serve` listens on")
    rate_limit_per_minute: int = _setting(600, "PTL_RATE_LIMIT_PER_MINUTE", "requests per minute allowed per API key")
    suppress_below: int = _setting(5, "PTL_SUPPRESS_BELOW", "aggregate counts below this are suppressed outside the identifiable tier")
    pseudonym_key: str = _setting("", "PTL_PSEUDONYM_KEY", "secret for the pseudonymous person keys shown outside the identifiable tier (unset: random per process, so keys change on restart)")
    # Capacity matching
    equity_margin_points: float = _setting(
        5.0, "PTL_EQUITY_MARGIN_POINTS", "flag moves that under-represent a group by more than this many percentage points"
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            default = f.default
            if isinstance(default, Path):
                values[f.name] = Path(raw)
            elif isinstance(default, bool):
                values[f.name] = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int | float | str):
                values[f.name] = type(default)(raw)
        return cls(**values)

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.var_dir / 'ptl.sqlite3'}")

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, meaning) for the README table."""
        return [(f.metadata["env"], str(f.default), f.metadata["doc"]) for f in fields(cls)]
