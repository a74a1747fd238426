"""Shared fixtures: a freshly migrated store on SQLite and on PostgreSQL.

`store_engine` is parametrised over both backends (pytest markers `sqlite` / `postgres`).
Each PostgreSQL test gets its own throw-away database, so test runs (and parallel sessions)
never see each other's rows. PostgreSQL comes from `PTL_TEST_POSTGRES_URL` (default
postgresql://postgres@127.0.0.1:5432/test); when it is unreachable the PostgreSQL cases are
skipped with the reason, except under CI (`CI=true`) where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from ptl.store import migrate
from ptl.store.engine import make_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "PTL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_problem() -> str | None:
    try:
        engine = make_engine(POSTGRES_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({type(exc).__name__})"


_PG_PROBLEM: str | None | bool = False


def postgres_problem() -> str | None:
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _postgres_problem()
    return _PG_PROBLEM  # type: ignore[return-value]


def require_postgres() -> None:
    problem = postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"{problem}: CI must test the PostgreSQL store")
        pytest.skip(problem)


def _temporary_postgres_url() -> Iterator[str]:
    require_postgres()
    name = f"ptl_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite),
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ptl.sqlite3'}"
    else:
        yield from _temporary_postgres_url()


@pytest.fixture
def store_engine(store_url: str) -> Iterator[Engine]:
    """A migrated store on each backend."""
    engine = make_engine(store_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL database only (for tests that are about PostgreSQL itself)."""
    yield from _temporary_postgres_url()


@pytest.fixture
def shared_data() -> Path:
    """The real reference files in ../shared/data (skipped when absent)."""
    if not (SHARED_DATA / "imd2019_lsoa11.csv").exists():
        pytest.skip(f"real reference data not found at {SHARED_DATA}")
    return SHARED_DATA
