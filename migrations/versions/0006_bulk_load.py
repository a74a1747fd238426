"""cheaper bulk loads on PostgreSQL: BRIN for pathway.feed_id, byte-order identity keys

Loading a million-row feed is dominated by index maintenance, measured in bench/RESULTS.md:
- `pathway` is append-only and a feed's rows are written together in one transaction, so
  its rows sit in contiguous pages: a BRIN index (one summary per block range) finds a feed's
  rows as well as a b-tree does for whole-feed reads, at almost no cost per inserted row.
- `source_identity (provider_code, local_patient_id)` holds codes, not words: byte order
  ("C" collation) compares them with memcmp instead of the locale's rules (about 15% of an
  identity load) and sorts them the same way everywhere.
SQLite keeps its b-tree and its default (binary) collation: nothing to do there.

Revision ID: 0006_bulk_load
Revises: 0005_matching
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_bulk_load"
down_revision: str | None = "0005_matching"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_pathway_feed_id")
    op.execute("CREATE INDEX ix_pathway_feed_id ON pathway USING brin (feed_id)")
    op.execute(
        'ALTER TABLE source_identity ALTER COLUMN provider_code TYPE varchar(12) COLLATE "C", '
        'ALTER COLUMN local_patient_id TYPE varchar(40) COLLATE "C"'
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        'ALTER TABLE source_identity ALTER COLUMN provider_code TYPE varchar(12) COLLATE "default", '
        'ALTER COLUMN local_patient_id TYPE varchar(40) COLLATE "default"'
    )
    op.execute("DROP INDEX ix_pathway_feed_id")
    op.execute("CREATE INDEX ix_pathway_feed_id ON pathway (feed_id)")
