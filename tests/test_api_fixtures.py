"""Fixtures for the API tests: a small system of three providers loaded through `ingest_file`,
persons linked by NHS number, one key per role and organisation, and a Litestar test client.

The system (census Sunday 2025-01-05): trusts RAA and RBB, independent provider NCC. Every
patient's identity values are made up and carry a provider marker in the family name, so a
leak test can tell whose values came back. Persons 0..5 wait for trauma and orthopaedics (110)
at both RAA and RBB under the same NHS number: duplicate pathways.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import Engine

from api.app import create_app
from ingest.pipeline import ingest_file
from ptl.settings import Settings
from ptl.store.access import create_key
from ptl.views.snapshot import invalidate_snapshot

CENSUS = dt.date(2025, 1, 5)
PROVIDERS = ("RAA", "RBB", "NCC")
CANONICAL_HEADER = (
    "pathway_id", "local_patient_id", "nhs_number", "family_name", "given_name", "date_of_birth",
    "sex", "postcode", "ethnic_category", "rtt_start_date", "rtt_status", "waiting_list_type",
    "treatment_function_code", "clinical_priority", "site_code", "tci_date", "last_validated_date",
    "census_date",
)
_PRIORITIES = ("P2", "P3", "P4", "", "P5", "P1b")
_TFCS = ("110", "130", "101")
_ETHNIC = ("A", "B", "H", "M", "Z", "A", "A", "N")


def nhs_number(seed: int) -> str:
    """A valid (modulus 11) NHS number from a seed, in the test range 9xx."""
    body = f"9{seed:08d}"
    while True:
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return body + str(check)
        body = f"{int(body) + 1:09d}"


def patient_rows(provider: str, count: int, *, first_person: int = 0,
                 shared_persons: range = range(0)) -> list[dict[str, str]]:
    """`count` pathways at `provider`; persons in `shared_persons` use the shared NHS numbers."""
    rows = []
    for i in range(count):
        person = first_person + i
        shared = i in shared_persons
        number = nhs_number(i if shared else 1000 * (PROVIDERS.index(provider) + 1) + i)
        start = CENSUS - dt.timedelta(days=7 + (i * 37) % 800)
        rows.append({
            "pathway_id": f"{provider}-PW{i:04d}",
            "local_patient_id": f"{provider}-L{i:05d}",
            "nhs_number": number,
            "family_name": f"FAMILY{provider}{i}",
            "given_name": f"GIVEN{provider}{i}",
            "date_of_birth": (dt.date(1950, 1, 1) + dt.timedelta(days=(person * 397) % 20000)).isoformat(),
            "sex": "1" if i % 2 else "2",
            "postcode": "LS1 4AP",
            "ethnic_category": _ETHNIC[i % len(_ETHNIC)],
            "rtt_start_date": start.isoformat(),
            "rtt_status": "20",
            "waiting_list_type": "IRTT" if i % 3 else "ORTT",
            "treatment_function_code": "110" if shared else _TFCS[i % len(_TFCS)],
            "clinical_priority": _PRIORITIES[i % len(_PRIORITIES)],
            "site_code": f"{provider}01" if i % 4 else f"{provider}02",
            "tci_date": (CENSUS + dt.timedelta(days=10)).isoformat() if i % 9 == 0 else "",
            "last_validated_date": (CENSUS - dt.timedelta(days=(i * 11) % 200)).isoformat(),
            "census_date": CENSUS.isoformat(),
        })
    return rows


def write_extract(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CANONICAL_HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def link_persons_by_nhs_number(engine: Engine) -> None:
    """Stand-in for identity linking: one person per NHS number (tests need person ids)."""
    with engine.begin() as connection:
        identities = connection.execute(sa.text(
            "SELECT id, nhs_number FROM source_identity ORDER BY id")).all()
        person_of: dict[str, int] = {}
        now = dt.datetime.now(dt.UTC)
        for identity_id, number in identities:
            key = number or f"none-{identity_id}"
            if key not in person_of:
                person_of[key] = connection.execute(
                    sa.text("INSERT INTO person (created_at) VALUES (:now) RETURNING id"), {"now": now}
                ).scalar_one()
            connection.execute(sa.text(
                "INSERT INTO identity_link (source_identity_id, person_id, method, linked_at) "
                "VALUES (:s, :p, 'nhs_number', :now)"), {"s": identity_id, "p": person_of[key], "now": now})
    invalidate_snapshot(engine)


@dataclass
class ApiSystem:
    """A loaded store, its app and client, and a key for every role/organisation used."""

    engine: Engine
    app: Litestar
    client: TestClient[Litestar]
    keys: dict[str, str]  # "icb", "analyst", "admin", "provider:RAA", ...
    settings: Settings

    def get(self, path: str, key: str | None, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {self.keys.get(key, key)}"
        return self.client.get(path, headers=headers, **kwargs)


def load_system(engine: Engine, folder: Path) -> None:
    sizes = {"RAA": 40, "RBB": 30, "NCC": 12}
    for provider in PROVIDERS:
        rows = patient_rows(provider, sizes[provider], shared_persons=range(6) if provider != "NCC" else range(0))
        path = write_extract(folder / f"{provider}.csv", rows)
        # Linked below by a deterministic stand-in, so person ids are known to the tests.
        result = ingest_file(engine, path, provider_code=provider, profile="canonical",
                             settings=Settings(database_url=str(engine.url)), link=False)
        assert result.status == "loaded", result.message
    link_persons_by_nhs_number(engine)


def make_system(engine: Engine, folder: Path, *, prepare: Callable[[Engine], None] | None = None,
                **settings_overrides: Any) -> Iterator[ApiSystem]:
    """The loaded system served; `prepare` changes the store after loading, before serving."""
    load_system(engine, folder)
    if prepare is not None:
        prepare(engine)
        invalidate_snapshot(engine)
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False), var_dir=folder,
                        rate_limit_per_minute=100_000, pseudonym_key="test-pseudonym-secret",
                        **settings_overrides)
    keys = {
        "icb": create_key(engine, "QWO", "icb", "coordinators")[1],
        "analyst": create_key(engine, "QWO", "analyst", "analysts")[1],
        "admin": create_key(engine, "QWO", "admin", "service desk")[1],
    }
    for provider in PROVIDERS:
        keys[f"provider:{provider}"] = create_key(engine, provider, "provider", f"{provider} PTL team")[1]
    app = create_app(settings, engine)
    with TestClient(app=app) as client:
        yield ApiSystem(engine=engine, app=app, client=client, keys=keys, settings=settings)


@pytest.fixture
def api_system(store_engine: Engine, tmp_path: Path) -> Iterator[ApiSystem]:
    """The three-provider system on each store backend."""
    yield from make_system(store_engine, tmp_path)


@pytest.fixture(scope="module", params=[pytest.param("sqlite", marks=pytest.mark.sqlite),
                                        pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_system(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiSystem]:
    """One loaded system per backend for a whole test module (read-only tests only)."""
    from ptl.store import migrate
    from ptl.store.engine import make_engine
    from tests.conftest import _temporary_postgres_url

    folder = tmp_path_factory.mktemp("api")
    urls = (iter([f"sqlite:///{folder / 'ptl.sqlite3'}"]) if request.param == "sqlite"
            else _temporary_postgres_url())
    url = next(urls)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        yield from make_system(engine, folder)
    finally:
        engine.dispose()
        for _ in urls:  # runs the PostgreSQL clean-up (drop database)
            pass
