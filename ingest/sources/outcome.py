"""What one poll of one source did: per file or message, and for the source as a whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class SourceUnavailable(Exception):
    """The source cannot be polled right now (folder missing, mailbox or store unreachable).

    Its message is shown to operators and logged, so it never carries file contents or
    patient values: only what is wrong and where.
    """


@dataclass
class FileOutcome:
    """One file (folder) or message (MESH) and what became of it."""

    name: str
    #: loaded | refused | duplicate | waiting | error
    status: str
    message: str
    feed_id: int | None = None
    message_id: str | None = None
    moved_to: str | None = None
    rows_loaded: int = 0
    rows_rejected: int = 0
    #: identity linking after a load: linked | failed (None: nothing loaded)
    linking: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message,
                "feed_id": self.feed_id, "message_id": self.message_id, "moved_to": self.moved_to,
                "rows_loaded": self.rows_loaded, "rows_rejected": self.rows_rejected,
                "linking": self.linking}


@dataclass
class PollReport:
    """One poll of one source. `failure` is set when the source itself is broken or unreachable
    (a refused feed is not a failure: the source did its job)."""

    source: str
    kind: str
    provider_code: str
    files: list[FileOutcome] = field(default_factory=list)
    waiting: int = 0
    failure: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def last_feed_id(self) -> int | None:
        loaded = [f.feed_id for f in self.files if f.status == "loaded" and f.feed_id is not None]
        return max(loaded) if loaded else None

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "provider_code": self.provider_code,
                "ok": self.ok, "failure": self.failure, "waiting": self.waiting,
                "seconds": round(self.seconds, 3), "files": [f.as_json() for f in self.files]}
