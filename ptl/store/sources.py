"""Store models for scheduled sources state and the scheduler lease (imported by `ptl.store` so Alembic sees them)."""

from __future__ import annotations

from ptl.store.models import Base  # noqa: F401
