"""Store models for API clients (hashed keys) and the audit trail (imported by `ptl.store` so Alembic sees them)."""

from __future__ import annotations

from ptl.store.models import Base  # noqa: F401
