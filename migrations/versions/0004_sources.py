"""scheduled sources state and the scheduler lease

Revision ID: 0004_sources
Revises: 0003_access
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_sources"
down_revision: str | None = "0003_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_state",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("provider_code", sa.String(length=12), nullable=False),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_poll_seconds", sa.Float(), nullable=True),
        sa.Column("last_poll_ok", sa.Boolean(), nullable=True),
        sa.Column("files_waiting", sa.Integer(), nullable=False),
        sa.Column("last_feed_id", sa.BigInteger(), nullable=True),
        sa.Column("last_feed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_source_state")),
    )
    op.create_table(
        "source_receipt",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source_name", sa.String(length=100), nullable=False),
        sa.Column("received_name", sa.String(length=500), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("feed_id", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_receipt")),
    )
    with op.batch_alter_table("source_receipt", schema=None) as batch_op:
        batch_op.create_index(
            "ix_source_receipt_source_message", ["source_name", "message_id"], unique=False
        )
        batch_op.create_index(
            "ix_source_receipt_source_received", ["source_name", "received_at"], unique=False
        )
    op.create_table(
        "scheduler_heartbeat",
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("holder", name=op.f("pk_scheduler_heartbeat")),
    )


def downgrade() -> None:
    op.drop_table("scheduler_heartbeat")
    with op.batch_alter_table("source_receipt", schema=None) as batch_op:
        batch_op.drop_index("ix_source_receipt_source_received")
        batch_op.drop_index("ix_source_receipt_source_message")
    op.drop_table("source_receipt")
    op.drop_table("source_state")
