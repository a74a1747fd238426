"""Store models for scheduled sources state and the scheduler lease (imported by `ptl.store` so Alembic sees them).

- `source_state`: one row per configured source: when it was last polled, the last feed it
  loaded, the last failure and why, and how many files were waiting. `ptl sources status` reads it.
- `source_receipt`: one row per file or MESH message a source handed to ingest, with the feed it
  became. A MESH message id seen before is acknowledged without a second ingest.
- `scheduler_heartbeat`: one row per running `ptl scheduler` process (active or standing by),
  refreshed while it runs. The lock itself is a PostgreSQL advisory lock or a file lock; this
  table only makes the lock's holder visible.

No patient-identifiable values are stored here: file names, message ids, counts and reasons.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ptl.store.models import Base, BigId


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SourceState(Base):
    """What the last poll of one configured source found."""

    __tablename__ = "source_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: folder | mesh
    kind: Mapped[str] = mapped_column(String(10))
    provider_code: Mapped[str] = mapped_column(String(12))
    last_poll_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_poll_seconds: Mapped[float | None] = mapped_column(Float)
    last_poll_ok: Mapped[bool | None] = mapped_column(Boolean)
    #: files (folder) or messages (MESH) left waiting after the last poll
    files_waiting: Mapped[int] = mapped_column(Integer, default=0)
    last_feed_id: Mapped[int | None] = mapped_column(BigInteger)
    last_feed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_failure_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SourceReceipt(Base):
    """One file or MESH message received by a source, and what ingest made of it."""

    __tablename__ = "source_receipt"
    __table_args__ = (
        Index("ix_source_receipt_source_message", "source_name", "message_id"),
        Index("ix_source_receipt_source_received", "source_name", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_name: Mapped[str] = mapped_column(String(100))
    received_name: Mapped[str] = mapped_column(String(500))
    #: MESH message id (null for drop folders)
    message_id: Mapped[str | None] = mapped_column(String(100))
    sha256: Mapped[str | None] = mapped_column(String(64))
    feed_id: Mapped[int | None] = mapped_column(BigInteger)
    #: loaded | refused | duplicate
    outcome: Mapped[str] = mapped_column(String(12))
    message: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SchedulerHeartbeat(Base):
    """A running scheduler process and whether it holds the store's scheduler lock."""

    __tablename__ = "scheduler_heartbeat"

    #: host:pid of the process
    holder: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: active | standby
    role: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
