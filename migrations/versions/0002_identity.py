"""persons, identity links and the identity review list

Revision ID: 0002_identity
Revises: 0001_core
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_identity"
down_revision: str | None = "0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_run_id", sa.BigInteger(), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("merged_into_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
    )
    op.create_table(
        "identity_link",
        sa.Column("source_identity_id", sa.BigInteger(), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=13), nullable=False),
        sa.Column("match_probability", sa.Float(), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("values_digest", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"],
                                name=op.f("fk_identity_link_person_id_person")),
        sa.ForeignKeyConstraint(["source_identity_id"], ["source_identity.id"],
                                name=op.f("fk_identity_link_source_identity_id_source_identity")),
        sa.PrimaryKeyConstraint("source_identity_id", name=op.f("pk_identity_link")),
    )
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_link_person_id"), ["person_id"], unique=False)

    op.create_table(
        "identity_review",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("subject_key", sa.String(length=200), nullable=False),
        sa.Column("source_identity_ids", sa.Text(), nullable=False),
        sa.Column("provider_codes", sa.Text(), nullable=False),
        sa.Column("person_ids", sa.Text(), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("link_run_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_review")),
        sa.UniqueConstraint("subject_key", name=op.f("uq_identity_review_subject_key")),
    )
    op.create_table(
        "link_run",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mode", sa.String(length=12), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("match_threshold", sa.Float(), nullable=False),
        sa.Column("identities", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("pairs_scored", sa.BigInteger(), nullable=False),
        sa.Column("links_changed", sa.Integer(), nullable=False),
        sa.Column("persons_created", sa.Integer(), nullable=False),
        sa.Column("persons_merged", sa.Integer(), nullable=False),
        sa.Column("persons_split", sa.Integer(), nullable=False),
        sa.Column("reviews_opened", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_run")),
    )
    op.create_table(
        "person_change",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("link_run_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("other_person_id", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["link_run_id"], ["link_run.id"],
                                name=op.f("fk_person_change_link_run_id_link_run")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_change")),
    )
    with op.batch_alter_table("person_change", schema=None) as batch_op:
        batch_op.create_index("ix_person_change_person_id", ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_person_change_link_run_id"), ["link_run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("person_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_change_link_run_id"))
        batch_op.drop_index("ix_person_change_person_id")
    op.drop_table("person_change")
    op.drop_table("link_run")
    op.drop_table("identity_review")
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_link_person_id"))
    op.drop_table("identity_link")
    op.drop_table("person")
