"""Scheduled sources: provider extracts arriving in drop folders or MESH mailboxes.

Public surface: `load_sources` (the TOML configuration), `poll_source` / `poll_sources` (one
synchronous poll, as `ptl sources poll --once` and the scheduler's jobs run it) and the post-load
hook registry. The scheduler itself is `ingest.scheduler`. Names are imported on first use, so
`ptl --help` (which imports `ingest.sources.commands`) does not load Polars and friends.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FolderSource": "ingest.sources.config",
    "MeshSource": "ingest.sources.config",
    "Source": "ingest.sources.config",
    "SourcesConfig": "ingest.sources.config",
    "SourcesConfigError": "ingest.sources.config",
    "load_sources": "ingest.sources.config",
    "register_post_load_hook": "ingest.sources.hooks",
    "run_post_load_hooks": "ingest.sources.hooks",
    "FileOutcome": "ingest.sources.outcome",
    "PollReport": "ingest.sources.outcome",
    "poll_source": "ingest.sources.poll",
    "poll_sources": "ingest.sources.poll",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ingest.sources' has no attribute {name!r}")
