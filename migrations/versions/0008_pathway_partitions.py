"""PostgreSQL: one partition of `pathway` per loaded feed

A feed's pathways are written once and never change, and a million-row load spends much of
its server time growing the pathway indexes row by row. With `pathway` partitioned by
`feed_id` (LIST, one partition per feed; ptl/store/pathway_partitions.py), a load builds its
feed's table on a second connection while the identities are written on the first, builds the
table's primary key in one sorted pass, and the feed's own transaction attaches it: atomic for
readers, and both server cores busy (bench/RESULTS.md).

The partitioned parent has no primary key of its own (PostgreSQL would require it to include
`feed_id`); each partition has `PRIMARY KEY (id)`, and ids come from the one sequence, so they
stay unique. The BRIN index on `feed_id` is kept on the parent (each partition has its own).

Existing rows are moved into a partition per feed (one INSERT … SELECT: on a large store this
migration takes minutes). SQLite is untouched: `pathway` stays one table there.

Revision ID: 0008_pathway_partitions
Revises: 0007_declared_capacity
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0008_pathway_partitions"
down_revision: str | None = "0007_declared_capacity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREFIX = "pathway_feed_"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE pathway RENAME TO pathway_0007")
    op.execute("ALTER TABLE pathway_0007 RENAME CONSTRAINT pk_pathway TO pk_pathway_0007")
    op.execute("ALTER INDEX ix_pathway_feed_id RENAME TO ix_pathway_0007_feed_id")
    op.execute("CREATE TABLE pathway (LIKE pathway_0007 INCLUDING DEFAULTS) PARTITION BY LIST (feed_id)")
    op.execute("ALTER SEQUENCE pathway_id_seq OWNED BY pathway.id")
    op.execute("CREATE INDEX ix_pathway_feed_id ON pathway USING brin (feed_id)")
    feeds = bind.execute(text("SELECT DISTINCT feed_id FROM pathway_0007 ORDER BY feed_id")).scalars().all()
    for feed_id in feeds:
        name = f"{PREFIX}{int(feed_id)}"
        op.execute(f'CREATE TABLE "{name}" PARTITION OF pathway FOR VALUES IN ({int(feed_id)})')
    op.execute("INSERT INTO pathway SELECT * FROM pathway_0007")
    for feed_id in feeds:
        name = f"{PREFIX}{int(feed_id)}"
        op.execute(f'ALTER TABLE "{name}" ADD CONSTRAINT "pk_{name}" PRIMARY KEY (id)')
    op.execute("DROP TABLE pathway_0007")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE pathway RENAME TO pathway_0008")
    op.execute("ALTER INDEX ix_pathway_feed_id RENAME TO ix_pathway_0008_feed_id")
    op.execute("CREATE TABLE pathway (LIKE pathway_0008 INCLUDING DEFAULTS)")
    op.execute("ALTER SEQUENCE pathway_id_seq OWNED BY pathway.id")
    op.execute("INSERT INTO pathway SELECT * FROM pathway_0008")
    op.execute("ALTER TABLE pathway ADD CONSTRAINT pk_pathway PRIMARY KEY (id)")
    op.execute("CREATE INDEX ix_pathway_feed_id ON pathway USING brin (feed_id)")
    op.execute("DROP TABLE pathway_0008")  # and every partition with it
    # Tables a dead load left unattached belong to nothing now.
    leftovers = bind.execute(text(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE :prefix"
    ), {"prefix": PREFIX.replace("_", r"\_") + "%"}).scalars().all()
    for name in leftovers:
        op.execute(f'DROP TABLE IF EXISTS "{name}"')
