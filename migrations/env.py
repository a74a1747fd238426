"""Alembic environment: one chain of migrations for SQLite and PostgreSQL.

Run through `ptl db upgrade` (which passes the engine) or plain `alembic` with
`PTL_DATABASE_URL` set. `render_as_batch` lets ALTERs work on SQLite.
"""

from __future__ import annotations

from alembic import context

from ptl.settings import Settings
from ptl.store import Base
from ptl.store.engine import make_engine

config = context.config
target_metadata = Base.metadata


def _include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # APScheduler owns its job table; each loaded feed's pathways are a partition of `pathway`
    # on PostgreSQL (migration 0008), made by the loader: keep them out of autogenerate.
    if type_ == "table" and (name == "apscheduler_jobs" or name.startswith("pathway_feed_")):
        return False
    return not (type_ == "index" and obj.table.name.startswith("pathway_feed_"))


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or make_engine(Settings.from_env().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_object=_include_object,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
