"""Linkage quality on a synthetic system with ground truth: ≥ 100,000 source identities, ≥ 20%
without a usable NHS number, realistic corruption on those records. Fails below pairwise
precision 0.995 or recall 0.98 (the issue's bar), on SQLite and PostgreSQL."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import Engine

from ptl.identity import identity_export, link, pairwise_quality
from ptl.settings import Settings
from ptl.store import identity_partitions
from ptl.store.bulk import insert_frame
from ptl.store.engine import write_connection
from ptl.synth import source_identity_rows, synthetic_identities

THRESHOLD = 0.8
MIN_PRECISION = 0.995
MIN_RECALL = 0.98


@pytest.fixture(scope="module")
def system() -> pl.DataFrame:
    return synthetic_identities(100_000, seed=11, without_nhs_share=0.22)


@pytest.mark.slow
def test_precision_and_recall_on_a_synthetic_system(store_engine: Engine, system: pl.DataFrame) -> None:
    without = 1 - system["nhs_number_usable"].cast(pl.Float64).sum() / system.height
    corrupted = system.filter(~pl.col("nhs_number_usable") & (pl.col("corruption") != "")).height
    assert system.height >= 100_000 and without >= 0.20 and corrupted > 1_000
    with write_connection(store_engine) as connection, connection.begin():
        identity_partitions.ensure(connection, system.get_column("provider_code").unique())
        insert_frame(connection, "source_identity", source_identity_rows(system))
    url = store_engine.url.render_as_string(hide_password=False)
    link(store_engine, Settings(database_url=url, link_match_threshold=THRESHOLD))
    with store_engine.connect() as connection:
        quality = pairwise_quality(identity_export(connection), system.select(
            "provider_code", "local_patient_id", "person_key", "nhs_number_usable"))
    overall = quality["all"]
    print({name: (round(q.precision, 4), round(q.recall, 4), q.true_pairs) for name, q in quality.items()})
    assert overall.records == system.height
    assert overall.precision >= MIN_PRECISION, quality
    assert overall.recall >= MIN_RECALL, quality
    # The probabilistic part is measured on its own too (no bar in the issue; guards regressions).
    assert quality["without_nhs_number"].precision >= 0.985
    assert quality["without_nhs_number"].recall >= 0.96
