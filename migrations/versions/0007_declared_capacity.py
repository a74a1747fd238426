"""declared capacity: the clock stops a week each provider plans to deliver, per scope

One row per declaration (provider; site or the whole provider; treatment function or every
specialty; from a date). Declarations are kept: a later one for the same scope supersedes from
its `valid_from`, and a withdrawn one is marked, not deleted. The table is small (a few rows per
provider and specialty a year) and read whole.

Revision ID: 0007_declared_capacity
Revises: 0006_bulk_load
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_declared_capacity"
down_revision: str | None = "0006_bulk_load"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "declared_capacity",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("provider_code", sa.String(length=12), nullable=False),
        sa.Column("site_code", sa.String(length=12), nullable=True),
        sa.Column("treatment_function_code", sa.String(length=3), nullable=True),
        sa.Column("weekly_capacity", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("declared_by", sa.String(length=64), nullable=False),
        sa.Column("declared_by_organisation", sa.String(length=12), nullable=True),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "weekly_capacity > 0", name=op.f("ck_declared_capacity_weekly_capacity_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_declared_capacity")),
    )
    with op.batch_alter_table("declared_capacity", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_declared_capacity_provider_code"), ["provider_code"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("declared_capacity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_declared_capacity_provider_code"))

    op.drop_table("declared_capacity")
