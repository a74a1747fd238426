"""PostgreSQL keeps each loaded feed's pathways in a partition of its own.

`pathway` is partitioned by `feed_id` on PostgreSQL (migration 0008): one partition per
loaded feed, named `pathway_feed_<feed id>`. A feed's rows never change once loaded, and a
partition per feed lets a load be built apart and switched in at once:

1. the loader creates `pathway_feed_<N>` as a plain table on a second connection (its own
   transaction, holding a session advisory lock that says "a load owns this table"), COPYs
   the feed's rows into it while the first connection writes the identities, then builds its
   primary key in one sorted pass (cheaper than growing the index row by row) and commits;
2. the feed's own transaction attaches it to `pathway` with the feed row, the identities and
   the current-snapshot pointer, and commits: readers see the whole feed or none of it.

If the loader dies between the two commits, the built table is left unattached: no query of
`pathway` reaches it, and the next load drops it (`drop_abandoned`; the advisory lock tells a
live load's table from a dead one's). Reads of a feed (`WHERE feed_id = …`) touch only its
partition.

SQLite has no partitions: `pathway` is one table there, and everything here is a no-op.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

PREFIX = "pathway_feed_"


def partition_name(feed_id: int) -> str:
    return f"{PREFIX}{int(feed_id)}"


def is_partitioned(connection: Connection) -> bool:
    """Whether `pathway` is partitioned by feed (PostgreSQL after migration 0008)."""
    if connection.dialect.name != "postgresql":
        return False
    kind = connection.execute(text("SELECT relkind FROM pg_class WHERE oid = 'pathway'::regclass")).scalar()
    return bool(kind == "p")


def staging_lock_key(feed_id: int) -> str:
    """The session advisory lock a load holds while it owns an unattached partition."""
    return f"ptl-pathway-partition:{int(feed_id)}"


def create_unattached(connection: Connection, feed_id: int) -> str:
    """A plain table shaped like `pathway`, for one feed's rows, to be attached later. Its
    CHECK lets the attach skip scanning the rows for the partition bound. The BRIN index the
    attach adopts for the parent's is made now, while the table is empty: rows then added
    leave their ranges unsummarised at almost no cost, which loses nothing here (every row of
    the partition has the one feed id), where building it after the rows would scan them all."""
    name = partition_name(feed_id)
    connection.execute(text(
        f'CREATE TABLE "{name}" (LIKE pathway INCLUDING DEFAULTS, '
        f'CONSTRAINT "ck_{name}_feed" CHECK (feed_id = {int(feed_id)}))'
    ))
    connection.execute(text(f'CREATE INDEX "ix_{name}_feed_id" ON "{name}" USING brin (feed_id)'))
    return name


#: Memory for building a partition's primary key in one in-memory sort (the server's default
#: 64MB makes a million-row build about half again slower); for this transaction only.
INDEX_BUILD_MEMORY = "256MB"


def index_unattached(connection: Connection, feed_id: int) -> None:
    """The partition's own primary key, built in one sorted pass after its rows are in (in
    the loader's transaction, rather than grown row by row or built during the attach)."""
    name = partition_name(feed_id)
    connection.execute(text(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'"))
    connection.execute(text(f'ALTER TABLE "{name}" ADD CONSTRAINT "pk_{name}" PRIMARY KEY (id)'))


def attach(connection: Connection, feed_id: int) -> None:
    """Make a built table the feed's partition (in the feed's transaction)."""
    name = partition_name(feed_id)
    connection.execute(text(
        f'ALTER TABLE pathway ATTACH PARTITION "{name}" FOR VALUES IN ({int(feed_id)})'
    ))


def ensure_partition(connection: Connection, feed_id: int) -> None:
    """A partition for `feed_id`, created and attached at once if missing: for pathways
    written outside a feed load (tests, repairs). A no-op on SQLite."""
    if not is_partitioned(connection):
        return
    name = partition_name(feed_id)
    exists = connection.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar()
    if exists:
        return
    connection.execute(text(f'CREATE TABLE "{name}" PARTITION OF pathway FOR VALUES IN ({int(feed_id)})'))
    connection.execute(text(f'ALTER TABLE "{name}" ADD CONSTRAINT "pk_{name}" PRIMARY KEY (id)'))


def drop_abandoned(connection: Connection) -> list[str]:
    """Drop unattached feed tables whose load is gone (no session holds their advisory lock).
    Run in autocommit: each drop stands alone. Returns the names dropped."""
    if connection.dialect.name != "postgresql":
        return []
    candidates = connection.execute(text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND c.relname LIKE :prefix AND n.nspname = current_schema() "
        "AND NOT c.relispartition"
    ), {"prefix": PREFIX.replace("_", r"\_") + "%"}).scalars().all()
    dropped: list[str] = []
    for name in candidates:
        suffix = name.removeprefix(PREFIX)
        if not suffix.isdigit():
            continue
        key = {"key": staging_lock_key(int(suffix))}
        if not connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:key))"), key).scalar():
            continue  # a live load owns it
        try:
            connection.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
            dropped.append(name)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
    return dropped
