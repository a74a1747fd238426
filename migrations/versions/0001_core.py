"""core store: organisations, feeds, pathways, identities, refdata

Revision ID: 0001_core
Revises:
Create Date: 2026-11-23 18:03:34.915980
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_core"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "feed",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("provider_code", sa.String(length=12), nullable=False),
        sa.Column("census_date", sa.Date(), nullable=True),
        sa.Column("filename", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("file_format", sa.String(length=10), nullable=False),
        sa.Column("profile", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_loaded", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("rows_warned", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_seconds", sa.Float(), nullable=True),
        sa.Column("validate_seconds", sa.Float(), nullable=True),
        sa.Column("load_seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed")),
    )
    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.create_index(
            "ix_feed_provider_census", ["provider_code", "census_date"], unique=False
        )
        batch_op.create_index(
            "uq_feed_loaded_sha256",
            ["provider_code", "sha256"],
            unique=True,
            sqlite_where=sa.text("status = 'loaded'"),
            postgresql_where=sa.text("status = 'loaded'"),
        )

    op.create_table(
        "imd_lsoa",
        sa.Column("lsoa11", sa.String(length=9), nullable=False),
        sa.Column("lsoa_name", sa.String(length=100), nullable=True),
        sa.Column("lad_code", sa.String(length=9), nullable=True),
        sa.Column("lad_name", sa.String(length=100), nullable=True),
        sa.Column("imd_rank", sa.Integer(), nullable=False),
        sa.Column("imd_decile", sa.SmallInteger(), nullable=False),
        sa.Column("imd_quintile", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lsoa11", name=op.f("pk_imd_lsoa")),
    )
    op.create_table(
        "organisation",
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=True),
        sa.Column("icb_code", sa.String(length=12), nullable=True),
        sa.Column("postcode", sa.String(length=10), nullable=True),
        sa.Column("open_date", sa.Date(), nullable=True),
        sa.Column("close_date", sa.Date(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_organisation")),
    )
    op.create_table(
        "postcode_lsoa",
        sa.Column("postcode", sa.String(length=8), nullable=False),
        sa.Column("outward_code", sa.String(length=4), nullable=False),
        sa.Column("lsoa11", sa.String(length=9), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("postcode", name=op.f("pk_postcode_lsoa")),
    )
    with op.batch_alter_table("postcode_lsoa", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_postcode_lsoa_outward_code"), ["outward_code"], unique=False
        )

    op.create_table(
        "refdata_load",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("filename", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column(
            "loaded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refdata_load")),
    )
    op.create_table(
        "source_identity",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("provider_code", sa.String(length=12), nullable=False),
        sa.Column("local_patient_id", sa.String(length=40), nullable=False),
        sa.Column("nhs_number", sa.String(length=10), nullable=True),
        sa.Column("nhs_number_status", sa.String(length=2), nullable=True),
        sa.Column("family_name", sa.String(length=100), nullable=True),
        sa.Column("given_name", sa.String(length=100), nullable=True),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("sex", sa.String(length=1), nullable=True),
        sa.Column("postcode", sa.String(length=8), nullable=True),
        sa.Column("first_feed_id", sa.BigInteger(), nullable=False),
        sa.Column("values_census_date", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_identity")),
        sa.UniqueConstraint(
            "provider_code",
            "local_patient_id",
            name=op.f("uq_source_identity_provider_code_local_patient_id"),
        ),
    )
    op.create_table(
        "current_snapshot",
        sa.Column("provider_code", sa.String(length=12), nullable=False),
        sa.Column("feed_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("census_date", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["feed_id"], ["feed.id"], name=op.f("fk_current_snapshot_feed_id_feed")
        ),
        sa.PrimaryKeyConstraint("provider_code", name=op.f("pk_current_snapshot")),
    )
    op.create_table(
        "pathway",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("feed_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider_code", sa.String(length=12), nullable=False),
        sa.Column("census_date", sa.Date(), nullable=False),
        sa.Column("source_identity_id", sa.BigInteger(), nullable=False),
        sa.Column("pathway_id", sa.String(length=40), nullable=False),
        sa.Column("pathway_id_issuer", sa.String(length=12), nullable=False),
        sa.Column("referral_id", sa.String(length=40), nullable=True),
        sa.Column("site_code", sa.String(length=12), nullable=True),
        sa.Column("treatment_function_code", sa.String(length=3), nullable=False),
        sa.Column("rtt_start_date", sa.Date(), nullable=True),
        sa.Column("rtt_status", sa.String(length=2), nullable=True),
        sa.Column("waiting_list_type", sa.String(length=4), nullable=False),
        sa.Column("is_rtt", sa.Boolean(), nullable=False),
        sa.Column("priority_type", sa.String(length=1), nullable=True),
        sa.Column("clinical_priority", sa.String(length=3), nullable=True),
        sa.Column("procedure_code", sa.String(length=10), nullable=True),
        sa.Column("intended_management", sa.String(length=1), nullable=True),
        sa.Column("decision_to_admit_date", sa.Date(), nullable=True),
        sa.Column("tci_date", sa.Date(), nullable=True),
        sa.Column("asa_grade", sa.SmallInteger(), nullable=True),
        sa.Column("bmi", sa.Float(), nullable=True),
        sa.Column("learning_disability", sa.Boolean(), nullable=True),
        sa.Column("interpreter_required", sa.Boolean(), nullable=True),
        sa.Column("last_validated_date", sa.Date(), nullable=True),
        sa.Column("last_attended_date", sa.Date(), nullable=True),
        sa.Column("last_dna_date", sa.Date(), nullable=True),
        sa.Column("travel_willingness", sa.String(length=10), nullable=True),
        sa.Column("sex", sa.String(length=1), nullable=True),
        sa.Column("ethnic_category", sa.String(length=2), nullable=True),
        sa.Column("ethnic_group", sa.String(length=20), nullable=True),
        sa.Column("lsoa11", sa.String(length=9), nullable=True),
        sa.Column("imd_decile", sa.SmallInteger(), nullable=True),
        sa.Column("imd_quintile", sa.SmallInteger(), nullable=True),
        sa.Column("age_years", sa.SmallInteger(), nullable=True),
        sa.Column("age_band", sa.String(length=6), nullable=True),
        sa.Column("days_waited", sa.Integer(), nullable=True),
        sa.Column("week_band", sa.Integer(), nullable=True),
        sa.Column("priority_rank", sa.SmallInteger(), nullable=False),
        # No foreign key to feed: its per-row check cost ~40% of a million-row COPY. The loader
        # writes the feed row in the same transaction as its pathways, and feeds are never deleted.
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pathway")),
    )
    # Only the feed index: every read of the store goes through a feed (the current snapshot
    # or a census), and each extra index multiplies the cost of a million-row load. Pathway
    # keys are unique per feed by validation (duplicates are rejected before loading).
    with op.batch_alter_table("pathway", schema=None) as batch_op:
        batch_op.create_index("ix_pathway_feed_id", ["feed_id"], unique=False)

    op.create_table(
        "row_issue",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("feed_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("column_name", sa.String(length=100), nullable=False),
        sa.Column("source_column", sa.String(length=200), nullable=True),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw_value", sa.Text(), nullable=True),
        sa.Column("raw_row", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["feed_id"], ["feed.id"], name=op.f("fk_row_issue_feed_id_feed"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_row_issue")),
    )
    with op.batch_alter_table("row_issue", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_row_issue_feed_id"), ["feed_id"], unique=False)

    op.create_table(
        "site",
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("organisation_code", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("postcode", sa.String(length=10), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_code"],
            ["organisation.code"],
            name=op.f("fk_site_organisation_code_organisation"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_site")),
    )
    with op.batch_alter_table("site", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_site_organisation_code"), ["organisation_code"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("site", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_site_organisation_code"))

    op.drop_table("site")
    with op.batch_alter_table("row_issue", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_row_issue_feed_id"))

    op.drop_table("row_issue")
    with op.batch_alter_table("pathway", schema=None) as batch_op:
        batch_op.drop_index("ix_pathway_feed_id")

    op.drop_table("pathway")
    op.drop_table("current_snapshot")
    op.drop_table("source_identity")
    op.drop_table("refdata_load")
    with op.batch_alter_table("postcode_lsoa", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_postcode_lsoa_outward_code"))

    op.drop_table("postcode_lsoa")
    op.drop_table("organisation")
    op.drop_table("imd_lsoa")
    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_feed_loaded_sha256",
            sqlite_where=sa.text("status = 'loaded'"),
            postgresql_where=sa.text("status = 'loaded'"),
        )
        batch_op.drop_index("ix_feed_provider_census")

    op.drop_table("feed")
