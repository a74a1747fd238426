"""The migration chain and the store's basic contracts, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from ptl.store import Base, identity_partitions, migrate


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


def test_bulk_insert_round_trips_every_value_on_both_backends(store_engine: Engine) -> None:
    """`insert_frame` writes constant columns once (as literals on SQLite): single rows,
    identical rows, quotes, nulls, dates and booleans must all come back as written."""
    import datetime as dt

    import polars as pl

    from ptl.store.bulk import insert_frame, read_frame

    schema = {"id": pl.Int64, "values_census_date": pl.Date, "date_of_birth": pl.Date}
    frames = [
        pl.DataFrame({"id": [1], "provider_code": ["RXX"], "local_patient_id": ["O'Brien"],
                      "date_of_birth": [dt.date(1950, 1, 2)]}),
        pl.DataFrame({"id": [2, 3, 4], "provider_code": ["RXX"] * 3, "local_patient_id": ["a", "b", "c"],
                      "date_of_birth": [None, None, None]}, schema_overrides={"date_of_birth": pl.Date}),
    ]
    with store_engine.connect() as connection, connection.begin():
        identity_partitions.ensure(connection, ["RXX"])  # PostgreSQL: each provider's partition
        for frame in frames:
            insert_frame(connection, "source_identity", frame.with_columns(
                pl.lit(7, dtype=pl.Int64).alias("first_feed_id"),
                pl.lit(dt.date(2024, 6, 30)).alias("values_census_date"),
                pl.lit(None, dtype=pl.String).alias("nhs_number"),
            ))
    with store_engine.connect() as connection:
        back = read_frame(connection, "SELECT id, provider_code, local_patient_id, nhs_number, date_of_birth, "
                          "first_feed_id, values_census_date FROM source_identity ORDER BY id", schema=schema)
    assert back.get_column("local_patient_id").to_list() == ["O'Brien", "a", "b", "c"]
    assert back.get_column("date_of_birth").to_list() == [dt.date(1950, 1, 2), None, None, None]
    assert back.get_column("values_census_date").to_list() == [dt.date(2024, 6, 30)] * 4
    assert back.get_column("nhs_number").null_count() == 4
    assert back.get_column("first_feed_id").cast(pl.Int64).to_list() == [7] * 4


def test_bulk_insert_converts_frame_types_to_the_columns_types(store_engine: Engine) -> None:
    """PostgreSQL's binary COPY needs each value in its column's exact type: a frame's Int64
    into a smallint, a float, booleans, dates and a timezone-aware timestamp all arrive as
    written (and as CSV when a date comes as text), on both backends."""
    import datetime as dt

    import polars as pl

    from ptl.store.bulk import insert_frame, read_frame
    from ptl.store.pathway_partitions import ensure_partition

    at = dt.datetime(2026, 11, 23, 9, 30, 15, 250000, tzinfo=dt.UTC)
    rows = pl.DataFrame({
        "id": [1, 2], "feed_id": [9, 9], "provider_code": ["RXX", "RXX"],
        "census_date": [dt.date(2026, 11, 22)] * 2, "source_identity_id": [5, 6],
        "pathway_id": ["P1", "P'2"], "pathway_id_issuer": ["RXX", "RXX"],
        "treatment_function_code": ["100", "101"], "waiting_list_type": ["IRTT", "IRTT"],
        "is_rtt": [True, False], "asa_grade": [3, None], "bmi": [31.25, None],
        "learning_disability": [None, True], "days_waited": [400, 12], "priority_rank": [2, 9],
    })
    text_dates = rows.slice(1).with_columns(pl.lit("2026-11-22").alias("census_date"), pl.lit(3).alias("id"))
    with store_engine.connect() as connection, connection.begin():
        ensure_partition(connection, 9)  # PostgreSQL: pathways live in their feed's partition
        insert_frame(connection, "pathway", rows)
        insert_frame(connection, "pathway", text_dates)
        insert_frame(connection, "refdata_load", pl.DataFrame({
            "id": [1], "kind": ["imd"], "filename": ["f.csv"], "sha256": ["0" * 64], "rows": [3],
            "loaded_at": [at],
        }))
    schema = {"id": pl.Int64, "census_date": pl.Date, "is_rtt": pl.Boolean, "asa_grade": pl.Int64,
              "bmi": pl.Float64, "learning_disability": pl.Boolean, "days_waited": pl.Int64}
    with store_engine.connect() as connection:
        back = read_frame(connection, "SELECT id, pathway_id, census_date, is_rtt, asa_grade, bmi, "
                          "learning_disability, days_waited FROM pathway ORDER BY id", schema=schema)
        loaded_at = connection.execute(sa.text("SELECT loaded_at FROM refdata_load")).scalar_one()
    assert back.get_column("pathway_id").to_list() == ["P1", "P'2", "P'2"]
    assert back.get_column("census_date").to_list() == [dt.date(2026, 11, 22)] * 3
    assert back.get_column("is_rtt").to_list() == [True, False, False]
    assert back.get_column("asa_grade").to_list() == [3, None, None]
    assert back.get_column("bmi").to_list() == [31.25, None, None]
    assert back.get_column("learning_disability").to_list() == [None, True, True]
    assert back.get_column("days_waited").to_list() == [400, 12, 12]
    if isinstance(loaded_at, str):  # SQLite keeps the text SQLAlchemy wrote
        loaded_at = dt.datetime.fromisoformat(loaded_at).replace(tzinfo=dt.UTC)
    assert loaded_at == at


def test_partitioning_migration_keeps_every_pathway_and_reverses(postgres_url: str) -> None:
    """Migration 0008 moves an existing store's pathways into a partition per feed (and back
    on downgrade) without losing a row, and the id sequence stays with `pathway`."""
    import polars as pl

    from ptl.store.bulk import insert_frame
    from ptl.store.engine import make_engine

    engine = make_engine(postgres_url)
    migrate.downgrade(engine, "base")
    migrate.upgrade(engine, "0007_declared_capacity")
    rows = pl.DataFrame({
        "id": [1, 2, 3], "feed_id": [4, 4, 7], "provider_code": ["RXX"] * 3,
        "census_date": ["2026-11-22"] * 3, "source_identity_id": [1, 2, 3],
        "pathway_id": ["A", "B", "C"], "pathway_id_issuer": ["RXX"] * 3, "treatment_function_code": ["110"] * 3,
        "waiting_list_type": ["IRTT"] * 3, "is_rtt": [True] * 3, "priority_rank": [2] * 3,
    })
    with engine.begin() as connection:
        insert_frame(connection, "pathway", rows)

    def state() -> tuple[object, ...]:
        with engine.connect() as connection:
            return (
                connection.execute(sa.text("SELECT feed_id, id, pathway_id FROM pathway ORDER BY id")).all(),
                connection.execute(sa.text("SELECT pg_get_serial_sequence('pathway', 'id')")).scalar(),
            )

    before = state()
    migrate.upgrade(engine)
    assert state() == before
    with engine.connect() as connection:
        partitions = connection.execute(sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'pathway'::regclass ORDER BY 1")).scalars().all()
    assert partitions == ["pathway_feed_4", "pathway_feed_7"]
    migrate.downgrade(engine, "0007_declared_capacity")
    assert state() == before
    migrate.upgrade(engine)
    engine.dispose()


def test_identity_partitioning_migration_keeps_every_identity_and_reverses(postgres_url: str) -> None:
    """Migration 0009 moves an existing store's source identities into a partition per
    provider (and back on downgrade) without losing a row or a link; the id sequence stays
    with `source_identity`, and the unique key still holds across the move."""
    import polars as pl

    from ptl.store.bulk import insert_frame
    from ptl.store.engine import make_engine

    engine = make_engine(postgres_url)
    migrate.downgrade(engine, "base")
    migrate.upgrade(engine, "0008_pathway_partitions")
    with engine.begin() as connection:
        insert_frame(connection, "source_identity", pl.DataFrame({
            "id": [1, 2, 3], "provider_code": ["RA1", "RA1", "RB2"], "local_patient_id": ["L1", "L2", "L1"],
            "first_feed_id": [1, 1, 2], "values_census_date": ["2026-11-22"] * 3,
        }))
        connection.execute(sa.text("INSERT INTO person (id, created_at) VALUES (1, now())"))
        connection.execute(sa.text("INSERT INTO identity_link (source_identity_id, person_id, method, linked_at) "
                                   "VALUES (3, 1, 'singleton', now())"))

    def state() -> tuple[object, ...]:
        with engine.connect() as connection:
            return (
                connection.execute(sa.text(
                    "SELECT id, provider_code, local_patient_id FROM source_identity ORDER BY id")).all(),
                connection.execute(sa.text("SELECT source_identity_id, person_id FROM identity_link")).all(),
                connection.execute(sa.text("SELECT pg_get_serial_sequence('source_identity', 'id')")).scalar(),
            )

    def link_foreign_keys() -> int:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(
                "SELECT COUNT(*) FROM pg_constraint WHERE conrelid = 'identity_link'::regclass "
                "AND confrelid = 'source_identity'::regclass")).scalar_one())

    before = state()
    assert link_foreign_keys() == 1
    migrate.upgrade(engine)
    assert state() == before and link_foreign_keys() == 0
    with engine.connect() as connection:
        partitions = connection.execute(sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'source_identity'::regclass ORDER BY 1")).scalars().all()
    assert partitions == ["source_identity_ra1", "source_identity_rb2"]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO source_identity (id, provider_code, local_patient_id, "
                                   "first_feed_id, values_census_date) VALUES (4, 'RB2', 'L1', 2, '2026-11-22')"))
    migrate.downgrade(engine, "0008_pathway_partitions")
    assert state() == before and link_foreign_keys() == 1
    migrate.upgrade(engine)
    engine.dispose()
