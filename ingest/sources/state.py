"""What sources and schedulers record in the store: poll state, receipts and heartbeats.

Each write is its own short transaction so a poll's bookkeeping never holds a lock while a
feed loads. No patient-identifiable value is written here (names of files, ids, counts, reasons).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from ptl.store.engine import write_connection
from ptl.store.sources import SchedulerHeartbeat, SourceReceipt, SourceState


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything this module writes is UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class PollRecord:
    """The state one poll leaves behind (a source's row in `source_state`)."""

    name: str
    kind: str
    provider_code: str
    polled_at: dt.datetime
    seconds: float
    ok: bool
    files_waiting: int
    last_feed_id: int | None = None
    failure: str | None = None


def record_poll(engine: Engine, poll: PollRecord) -> None:
    """Upsert the source's state; failure and last-feed fields only move forward."""
    values: dict[str, object] = {
        "kind": poll.kind, "provider_code": poll.provider_code, "last_poll_at": poll.polled_at,
        "last_poll_seconds": poll.seconds, "last_poll_ok": poll.ok,
        "files_waiting": poll.files_waiting, "updated_at": utc_now(),
    }
    if poll.last_feed_id is not None:
        values.update(last_feed_id=poll.last_feed_id, last_feed_at=poll.polled_at)
    if poll.failure is not None:
        values.update(last_failure_at=poll.polled_at, last_failure_reason=poll.failure[:4000])
    with write_connection(engine) as connection, connection.begin():
        changed = connection.execute(
            update(SourceState).where(SourceState.name == poll.name).values(**values)
        ).rowcount
        if not changed:
            connection.execute(insert(SourceState).values(name=poll.name, **values))


def record_receipt(engine: Engine, *, source_name: str, received_name: str, outcome: str,
                   feed_id: int | None, sha256: str | None, message: str,
                   message_id: str | None = None) -> None:
    with write_connection(engine) as connection, connection.begin():
        connection.execute(insert(SourceReceipt).values(
            source_name=source_name, received_name=received_name[:500], message_id=message_id,
            sha256=sha256, feed_id=feed_id, outcome=outcome, message=message,
            received_at=utc_now(),
        ))


def receipt_for_message(engine: Engine, source_name: str, message_id: str) -> SourceReceipt | None:
    """The receipt of a MESH message this source already handed to ingest, if any."""
    with Session(engine) as session:
        return session.scalars(
            select(SourceReceipt).where(SourceReceipt.source_name == source_name,
                                        SourceReceipt.message_id == message_id)
            .order_by(SourceReceipt.id.desc()).limit(1)
        ).first()


def source_states(engine: Engine) -> dict[str, SourceState]:
    with Session(engine) as session:
        return {state.name: state for state in session.scalars(select(SourceState))}


def beat(engine: Engine, holder: str, role: str, started_at: dt.datetime) -> None:
    """Refresh this scheduler process's heartbeat row."""
    now = utc_now()
    with write_connection(engine) as connection, connection.begin():
        changed = connection.execute(
            update(SchedulerHeartbeat).where(SchedulerHeartbeat.holder == holder)
            .values(role=role, heartbeat_at=now)
        ).rowcount
        if not changed:
            connection.execute(insert(SchedulerHeartbeat).values(
                holder=holder, role=role, started_at=started_at, heartbeat_at=now))


def forget_heartbeat(engine: Engine, holder: str) -> None:
    with write_connection(engine) as connection, connection.begin():
        connection.execute(delete(SchedulerHeartbeat).where(SchedulerHeartbeat.holder == holder))


def heartbeats(engine: Engine) -> list[SchedulerHeartbeat]:
    with Session(engine) as session:
        return list(session.scalars(
            select(SchedulerHeartbeat).order_by(SchedulerHeartbeat.heartbeat_at.desc())))


def prune_heartbeats(engine: Engine, older_than: dt.datetime) -> int:
    """Forget processes that stopped beating (killed without a clean shutdown)."""
    with write_connection(engine) as connection, connection.begin():
        return int(connection.execute(
            delete(SchedulerHeartbeat).where(SchedulerHeartbeat.heartbeat_at < older_than)
        ).rowcount)
