"""The migration chain and the store's basic contracts, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Engine

from ptl.store import Base, migrate


def test_migrations_create_every_model_table(store_engine: Engine) -> None:
    tables = set(sa.inspect(store_engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert migrate.is_current(store_engine)


def test_migrations_downgrade_to_nothing_and_back(store_engine: Engine) -> None:
    migrate.downgrade(store_engine, "base")
    assert set(sa.inspect(store_engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(store_engine)
    assert migrate.is_current(store_engine)


def test_models_and_migrations_agree(store_engine: Engine) -> None:
    """Autogenerate finds nothing to do: the models are what the migrations build."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "apscheduler_jobs")]
    assert diff == []
