"""Settings: one object, read from `PTL_*` environment variables (documented in the README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _default_database_url() -> str:
    return f"sqlite:///{Path('var') / 'ptl.sqlite3'}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime configuration. Build with `Settings.from_env()`; tests construct it directly."""

    database_url: str = field(default_factory=_default_database_url)
    #: A feed is refused whole when more than this share of its rows is rejected.
    max_rejected_share: float = 0.20
    #: Directory for working files (SQLite database by default, caches, logs).
    var_dir: Path = Path("var")
    #: Log format: "json", "text" or "auto" (JSON when stderr is not a terminal).
    log_format: str = "auto"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        var_dir = Path(env.get("PTL_VAR_DIR", "var"))
        url = env.get("PTL_DATABASE_URL") or f"sqlite:///{var_dir / 'ptl.sqlite3'}"
        share = env.get("PTL_MAX_REJECTED_SHARE")
        return cls(
            database_url=url,
            max_rejected_share=float(share) if share else 0.20,
            var_dir=var_dir,
            log_format=env.get("PTL_LOG_FORMAT", "auto"),
            log_level=env.get("PTL_LOG_LEVEL", "INFO"),
        )
