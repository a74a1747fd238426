"""Store models for persons, identity links and the identity review list (imported by `ptl.store` so Alembic sees them)."""

from __future__ import annotations

from ptl.store.models import Base  # noqa: F401
