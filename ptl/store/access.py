"""API clients (hashed keys) and the audit trail: the models and the few operations on them.

A key is shown once, when it is created, as ``ptl_<key_id>_<secret>``. The store keeps only
``key_id`` (to find the row) and the SHA-256 of the whole key: the secret is 256 random bits,
so a plain digest is enough (no slow password hash is needed for a key nobody chose).

Roles (what each may see is enforced by the API, `api/disclosure.py`):
- ``icb``: the whole system, identifiable;
- ``provider``: identifiable rows of its own organisation only, other providers' de-identified;
- ``analyst``: aggregates and pseudonymised rows only;
- ``admin``: keys, feeds (sources) and the audit trail; no patient rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from ptl.store.models import Base, BigId

ROLES: Final[tuple[str, ...]] = ("icb", "provider", "analyst", "admin")
KEY_PREFIX: Final[str] = "ptl_"
_KEY_SHAPE: Final[re.Pattern[str]] = re.compile(r"^ptl_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
_ORG_SHAPE: Final[re.Pattern[str]] = re.compile(r"^[A-Z0-9]{3,12}$")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ApiClient(Base):
    """One API key: who holds it (organisation, role) and whether it still works."""

    __tablename__ = "api_client"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    organisation_code: Mapped[str] = mapped_column(String(12), index=True)
    role: Mapped[str] = mapped_column(String(12))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """One disclosure or access-changing action: who, when, what endpoint, which filters, rows.

    No patient data is written here: filters are query parameters (codes and opaque ids) and
    ``row_count`` counts the identifiable rows returned.
    """

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_key_id_id", "key_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    key_id: Mapped[str] = mapped_column(String(16))
    organisation_code: Mapped[str] = mapped_column(String(12))
    role: Mapped[str] = mapped_column(String(12))
    #: read_identifiable | upload | key_created | key_revoked
    action: Mapped[str] = mapped_column(String(24))
    method: Mapped[str] = mapped_column(String(8))
    endpoint: Mapped[str] = mapped_column(String(300))
    #: the request's filters as JSON (query parameters; never patient values)
    filters: Mapped[str | None] = mapped_column(Text)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int] = mapped_column(SmallInteger)


class AccessError(ValueError):
    """A key cannot be created or changed as asked; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Client:
    """The holder of a working key, as the API sees it."""

    key_id: str
    organisation_code: str
    role: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as listed for admins (never the secret)."""

    key_id: str
    organisation_code: str
    role: str
    name: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def key_digest(presented: str) -> str:
    return hashlib.sha256(presented.encode("utf-8")).hexdigest()


def parse_key_id(presented: str) -> str | None:
    """The key id inside a presented key, or None when it is not shaped like one of ours."""
    match = _KEY_SHAPE.match(presented.strip())
    return match.group(1) if match else None


def create_key(engine: Engine, org: str, role: str, name: str | None = None) -> tuple[str, str]:
    """Create a key for an organisation and role; returns ``(key_id, key)``.

    The key is the only copy there will ever be: show it once and do not log it.
    """
    org_code = org.strip().upper()
    if role not in ROLES:
        raise AccessError(f"unknown role '{role}': use one of {', '.join(ROLES)}")
    if not _ORG_SHAPE.match(org_code):
        raise AccessError(
            f"'{org}' is not an organisation code: use the ODS code, 3 to 12 letters or digits (e.g. RXX or QOX)"
        )
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    with engine.begin() as connection:
        connection.execute(
            insert(ApiClient).values(
                key_id=key_id, key_sha256=key_digest(key), organisation_code=org_code,
                role=role, name=name, created_at=_now(),
            )
        )
    return key_id, key


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Revoke a key (kept for the audit trail). False when there is no such working key."""
    with engine.begin() as connection:
        done = connection.execute(
            update(ApiClient)
            .where(ApiClient.key_id == key_id, ApiClient.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
    return bool(done.rowcount)


def list_keys(engine: Engine) -> list[KeyRecord]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(ApiClient.key_id, ApiClient.organisation_code, ApiClient.role, ApiClient.name,
                   ApiClient.created_at, ApiClient.revoked_at).order_by(ApiClient.created_at, ApiClient.key_id)
        ).all()
    return [KeyRecord(*row) for row in rows]


def authenticate(engine: Engine, presented: str) -> Client | None:
    """The client holding this key, or None when the key is unknown, wrong or revoked."""
    key_id = parse_key_id(presented)
    if key_id is None:
        return None
    with engine.connect() as connection:
        row = connection.execute(
            select(ApiClient.key_sha256, ApiClient.organisation_code, ApiClient.role, ApiClient.name,
                   ApiClient.revoked_at).where(ApiClient.key_id == key_id)
        ).first()
    # Compare digests in constant time even when the id is unknown, so timing says nothing.
    stored = row.key_sha256 if row is not None else "0" * 64
    if not hmac.compare_digest(stored, key_digest(presented.strip())) or row is None:
        return None
    if row.revoked_at is not None:
        return None
    return Client(key_id=key_id, organisation_code=row.organisation_code, role=row.role, name=row.name)


def audit_event_values(
    client: Client,
    *,
    action: str,
    method: str,
    endpoint: str,
    filters: Mapping[str, Any] | None,
    row_count: int,
    status_code: int,
) -> dict[str, Any]:
    """The column values of one `audit_event` row, stamped now (for batched writers)."""
    return {
        "occurred_at": _now(), "key_id": client.key_id, "organisation_code": client.organisation_code,
        "role": client.role, "action": action, "method": method, "endpoint": endpoint[:300],
        "filters": json.dumps(dict(filters), sort_keys=True, default=str) if filters else None,
        "row_count": row_count, "status_code": status_code,
    }


def record_audit(
    store: Engine | Connection,
    client: Client,
    *,
    action: str,
    method: str,
    endpoint: str,
    filters: Mapping[str, Any] | None,
    row_count: int,
    status_code: int,
) -> None:
    """Write one audit event: in the caller's transaction when given a connection, else in its
    own. Either way it is committed before the response is sent."""
    statement = insert(AuditEvent).values(
        audit_event_values(client, action=action, method=method, endpoint=endpoint, filters=filters,
                           row_count=row_count, status_code=status_code))
    if isinstance(store, Connection):
        store.execute(statement)
        return
    with store.begin() as connection:
        connection.execute(statement)
