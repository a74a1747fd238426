"""PostgreSQL: one partition of `source_identity` per provider

The identifiable tier is held provider by provider (ptl/store/identity_partitions.py): a
provider's records can be detached or dropped as a unit, and a provider's first load writes
its identities into a table of its own without indexes and builds both keys afterwards, in
one sorted pass each, instead of growing two indexes row by row (bench/RESULTS.md).

A partitioned table's keys must include the partition column, so on PostgreSQL:
- the primary key is `(id, provider_code)`; ids still come from the one sequence, which
  stays with `source_identity.id`, so `id` alone stays unique;
- the unique key `(provider_code, local_patient_id)` is unchanged.

`identity_link.source_identity_id` loses its foreign key on both backends (PostgreSQL cannot
point one at `id` alone any more, and the schema stays the same on both): it is now kept like
`pathway.source_identity_id`, which never had one. Links are written only by `ptl.identity`,
for identities it has just read in the same transaction, and source identities are never
deleted.

Existing identities are moved into a partition per provider (one INSERT … SELECT: on a large
store this migration takes a while). SQLite keeps one table.

Revision ID: 0009_identity_partitions
Revises: 0008_pathway_partitions
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ptl.store import identity_partitions

revision: str = "0009_identity_partitions"
down_revision: str | None = "0008_pathway_partitions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LINK_FK = "fk_identity_link_source_identity_id_source_identity"
_UNIQUE = "uq_source_identity_provider_code_local_patient_id"


def upgrade() -> None:
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.drop_constraint(_LINK_FK, type_="foreignkey")
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE source_identity RENAME TO source_identity_0008")
    op.execute("ALTER TABLE source_identity_0008 RENAME CONSTRAINT pk_source_identity TO pk_source_identity_0008")
    op.execute(f"ALTER TABLE source_identity_0008 RENAME CONSTRAINT {_UNIQUE} TO uq_source_identity_0008")
    op.execute("CREATE TABLE source_identity (LIKE source_identity_0008 INCLUDING DEFAULTS) "
               "PARTITION BY LIST (provider_code)")
    op.execute("ALTER SEQUENCE source_identity_id_seq OWNED BY source_identity.id")
    op.execute("ALTER TABLE source_identity ADD CONSTRAINT pk_source_identity PRIMARY KEY (id, provider_code)")
    op.execute(f"ALTER TABLE source_identity ADD CONSTRAINT {_UNIQUE} UNIQUE (provider_code, local_patient_id)")
    providers = bind.execute(sa.text("SELECT DISTINCT provider_code FROM source_identity_0008")).scalars().all()
    identity_partitions.ensure(bind, providers)
    op.execute("INSERT INTO source_identity SELECT * FROM source_identity_0008")
    op.execute("DROP TABLE source_identity_0008")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE source_identity RENAME TO source_identity_0009")
        op.execute("CREATE TABLE source_identity (LIKE source_identity_0009 INCLUDING DEFAULTS)")
        op.execute("ALTER SEQUENCE source_identity_id_seq OWNED BY source_identity.id")
        op.execute("INSERT INTO source_identity SELECT * FROM source_identity_0009")
        op.execute("DROP TABLE source_identity_0009")  # and every partition with it
        op.execute("ALTER TABLE source_identity ADD CONSTRAINT pk_source_identity PRIMARY KEY (id)")
        op.execute(f"ALTER TABLE source_identity ADD CONSTRAINT {_UNIQUE} UNIQUE (provider_code, local_patient_id)")
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.create_foreign_key(_LINK_FK, "source_identity", ["source_identity_id"], ["id"])
