"""mutual-aid capacity: offers, matching runs, proposals, transfers and pathway moves

Revision ID: 0005_matching
Revises: 0004_sources
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_matching"
down_revision: str | None = "0004_sources"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "capacity_offer",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("provider_code", sa.String(length=12), nullable=False),
        sa.Column("site_code", sa.String(length=12), nullable=False),
        sa.Column("treatment_function_code", sa.String(length=3), nullable=False),
        sa.Column("procedure_codes", sa.Text(), nullable=True),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("max_asa", sa.SmallInteger(), nullable=True),
        sa.Column("max_bmi", sa.Float(), nullable=True),
        sa.Column("min_age", sa.SmallInteger(), nullable=True),
        sa.Column("max_age", sa.SmallInteger(), nullable=True),
        sa.Column("day_case_only", sa.Boolean(), nullable=False),
        sa.Column("interpreter_support", sa.Boolean(), nullable=False),
        sa.Column("priorities", sa.Text(), nullable=True),
        sa.Column("accepts_out_of_area", sa.Boolean(), nullable=False),
        sa.Column("max_distance_miles", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_by_organisation", sa.String(length=12), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capacity_offer")),
    )
    with op.batch_alter_table("capacity_offer", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_capacity_offer_provider_code"), ["provider_code"], unique=False
        )

    op.create_table(
        "matching_run",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_by_organisation", sa.String(length=12), nullable=True),
        sa.Column("offer_ids", sa.Text(), nullable=False),
        sa.Column("filters", sa.Text(), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("data_version", sa.BigInteger(), nullable=False),
        sa.Column("solver", sa.String(length=80), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("eligible", sa.Integer(), nullable=False),
        sa.Column("assigned", sa.Integer(), nullable=False),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("baseline", sa.Text(), nullable=True),
        sa.Column("equity", sa.Text(), nullable=False),
        sa.Column("timings", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matching_run")),
    )
    op.create_table(
        "transfer",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("proposal_id", sa.BigInteger(), nullable=False),
        sa.Column("offer_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("pathway_row_id", sa.BigInteger(), nullable=False),
        sa.Column("pathway_id", sa.String(length=40), nullable=False),
        sa.Column("pathway_id_issuer", sa.String(length=12), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=True),
        sa.Column("source_identity_id", sa.BigInteger(), nullable=False),
        sa.Column("treatment_function_code", sa.String(length=3), nullable=False),
        sa.Column("rtt_start_date", sa.Date(), nullable=True),
        sa.Column("from_provider_code", sa.String(length=12), nullable=False),
        sa.Column("to_provider_code", sa.String(length=12), nullable=False),
        sa.Column("to_site_code", sa.String(length=12), nullable=False),
        sa.Column("clinical_priority", sa.String(length=3), nullable=True),
        sa.Column("days_waited", sa.Integer(), nullable=True),
        sa.Column("distance_miles", sa.Float(), nullable=True),
        sa.Column("asa_grade", sa.SmallInteger(), nullable=True),
        sa.Column("imd_quintile", sa.SmallInteger(), nullable=True),
        sa.Column("ethnic_group", sa.String(length=20), nullable=True),
        sa.Column("age_band", sa.String(length=6), nullable=True),
        sa.Column("sex", sa.String(length=1), nullable=True),
        sa.Column("learning_disability", sa.Boolean(), nullable=True),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("offered_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decline_reason", sa.Text(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer")),
        sa.UniqueConstraint("proposal_id", name=op.f("uq_transfer_proposal_id")),
    )
    with op.batch_alter_table("transfer", schema=None) as batch_op:
        batch_op.create_index(
            "ix_transfer_from_provider_code", ["from_provider_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_transfer_offer_id"), ["offer_id"], unique=False)
        batch_op.create_index("ix_transfer_state", ["state"], unique=False)
        batch_op.create_index("ix_transfer_to_provider_code", ["to_provider_code"], unique=False)

    op.create_table(
        "matching_proposal",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("offer_id", sa.BigInteger(), nullable=False),
        sa.Column("pathway_row_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_code", sa.String(length=12), nullable=False),
        sa.Column("pathway_id", sa.String(length=40), nullable=False),
        sa.Column("pathway_id_issuer", sa.String(length=12), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=True),
        sa.Column("source_identity_id", sa.BigInteger(), nullable=False),
        sa.Column("treatment_function_code", sa.String(length=3), nullable=False),
        sa.Column("rtt_start_date", sa.Date(), nullable=True),
        sa.Column("clinical_priority", sa.String(length=3), nullable=True),
        sa.Column("days_waited", sa.Integer(), nullable=True),
        sa.Column("distance_miles", sa.Float(), nullable=True),
        sa.Column("asa_grade", sa.SmallInteger(), nullable=True),
        sa.Column("imd_quintile", sa.SmallInteger(), nullable=True),
        sa.Column("ethnic_group", sa.String(length=20), nullable=True),
        sa.Column("age_band", sa.String(length=6), nullable=True),
        sa.Column("sex", sa.String(length=1), nullable=True),
        sa.Column("learning_disability", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["matching_run.id"],
            name=op.f("fk_matching_proposal_run_id_matching_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matching_proposal")),
    )
    with op.batch_alter_table("matching_proposal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_matching_proposal_run_id"), ["run_id"], unique=False)

    op.create_table(
        "matching_unassigned",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pathway_row_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_code", sa.String(length=12), nullable=False),
        sa.Column("pathway_id", sa.String(length=40), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=True),
        sa.Column("clinical_priority", sa.String(length=3), nullable=True),
        sa.Column("days_waited", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["matching_run.id"],
            name=op.f("fk_matching_unassigned_run_id_matching_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matching_unassigned")),
    )
    with op.batch_alter_table("matching_unassigned", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_matching_unassigned_run_id"), ["run_id"], unique=False)

    op.create_table(
        "pathway_move",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "transfer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("person_id", sa.BigInteger(), nullable=True),
        sa.Column("source_identity_id", sa.BigInteger(), nullable=False),
        sa.Column("treatment_function_code", sa.String(length=3), nullable=False),
        sa.Column("original_clock_start", sa.Date(), nullable=True),
        sa.Column("from_provider_code", sa.String(length=12), nullable=False),
        sa.Column("from_pathway_id", sa.String(length=40), nullable=False),
        sa.Column("from_pathway_id_issuer", sa.String(length=12), nullable=False),
        sa.Column("to_provider_code", sa.String(length=12), nullable=False),
        sa.Column("to_site_code", sa.String(length=12), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("moved_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfer.id"], name=op.f("fk_pathway_move_transfer_id_transfer")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pathway_move")),
        sa.UniqueConstraint("transfer_id", name=op.f("uq_pathway_move_transfer_id")),
    )
    with op.batch_alter_table("pathway_move", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pathway_move_from_key", ["from_pathway_id_issuer", "from_pathway_id"], unique=False
        )
        batch_op.create_index(
            "ix_pathway_move_person_tfc_start",
            ["person_id", "treatment_function_code", "original_clock_start"],
            unique=False,
        )

    op.create_table(
        "transfer_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "transfer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("actor_organisation", sa.String(length=12), nullable=True),
        sa.Column("actor_role", sa.String(length=12), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["transfer.id"],
            name=op.f("fk_transfer_event_transfer_id_transfer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_event")),
    )
    with op.batch_alter_table("transfer_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_transfer_event_transfer_id"), ["transfer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("transfer_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transfer_event_transfer_id"))

    op.drop_table("transfer_event")
    with op.batch_alter_table("pathway_move", schema=None) as batch_op:
        batch_op.drop_index("ix_pathway_move_person_tfc_start")
        batch_op.drop_index("ix_pathway_move_from_key")

    op.drop_table("pathway_move")
    with op.batch_alter_table("matching_unassigned", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_matching_unassigned_run_id"))

    op.drop_table("matching_unassigned")
    with op.batch_alter_table("matching_proposal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_matching_proposal_run_id"))

    op.drop_table("matching_proposal")
    with op.batch_alter_table("transfer", schema=None) as batch_op:
        batch_op.drop_index("ix_transfer_to_provider_code")
        batch_op.drop_index("ix_transfer_state")
        batch_op.drop_index(batch_op.f("ix_transfer_offer_id"))
        batch_op.drop_index("ix_transfer_from_provider_code")

    op.drop_table("transfer")
    op.drop_table("matching_run")
    with op.batch_alter_table("capacity_offer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capacity_offer_provider_code"))

    op.drop_table("capacity_offer")
