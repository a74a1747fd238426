"""Identity linking on any column set (SQLite and PostgreSQL): providers that send only what
WLMDS requires, or send the demographic fields empty, never break `ptl link`, `link train`,
`link evaluate` or `export identities`; NHS numbers still link deterministically, checked
against a plain reference; Splink is skipped with a note when it has nothing to compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nhs_number import is_valid
from sqlalchemy import Engine

from ptl import codes
from ptl.identity import ModelError, link, person_ids, train_model
from ptl.identity.features import linkage_features
from ptl.settings import Settings
from ptl.store import identity_partitions
from ptl.store.bulk import insert_frame
from ptl.store.engine import write_connection
from ptl.synth import source_identity_rows, synthetic_identities

#: The identity columns a provider may leave out of its extract or send empty.
DEMOGRAPHICS = ("nhs_number", "nhs_number_status", "family_name", "given_name", "date_of_birth", "sex",
                "postcode")
#: How a field nobody filled arrives: null, an empty string, or blanks.
EMPTY_FORMS = (None, "", "   ")
#: Tables a link run writes, cleared between generated examples (children first).
_LINK_TABLES = ("identity_review", "person_change", "identity_link", "link_run", "person", "source_identity")


@pytest.fixture(scope="module")
def population() -> pl.DataFrame:
    return synthetic_identities(400, seed=13)


def _blanked(frame: pl.DataFrame, provider_columns: dict[str, tuple[frozenset[str], str | None]]
             ) -> pl.DataFrame:
    """Each provider's chosen columns emptied (in the chosen empty form; a date is null)."""
    blanked = frame
    for provider, (columns, form) in provider_columns.items():
        at = pl.col("provider_code") == provider
        blanked = blanked.with_columns(
            pl.when(at).then(pl.lit(None if name == "date_of_birth" else form, dtype=frame.schema[name]))
            .otherwise(pl.col(name)).alias(name)
            for name in columns
        )
    return blanked


def _reference_number(number: str | None, status: str | None) -> str | None:
    """The plain rule, one record at a time: a valid (modulus 11), non-placeholder NHS number
    links when its status is verified (01) or unknown."""
    cleaned = None if number is None else number.replace(" ", "").replace("-", "")
    if not cleaned or len(cleaned) != 10 or not cleaned.isdigit() or not is_valid(cleaned):
        return None
    if cleaned in codes.PLACEHOLDER_NHS_NUMBERS or len(set(cleaned)) == 1:
        return None
    known = (status or "").strip().zfill(2)
    if known in codes.NHS_NUMBER_STATUSES and known != "01":
        return None
    return cleaned


def _load(engine: Engine, frame: pl.DataFrame) -> None:
    with write_connection(engine) as connection, connection.begin():
        for table in _LINK_TABLES:
            connection.execute(sa.text(f"DELETE FROM {table}"))
        identity_partitions.ensure(connection, frame.get_column("provider_code").unique())
        insert_frame(connection, "source_identity", source_identity_rows(frame))


def _settings(engine: Engine, **overrides: Any) -> Settings:
    return Settings(database_url=engine.url.render_as_string(hide_password=False), link_match_threshold=0.8,
                    **overrides)


def _check_against_reference(engine: Engine, frame: pl.DataFrame) -> None:
    with engine.connect() as connection:
        persons = person_ids(connection)
    linked = frame.select("id", "nhs_number", "nhs_number_status").join(
        persons.rename({"source_identity_id": "id"}), on="id", how="left")
    assert linked["person_id"].null_count() == 0  # every record has a person
    keys = [_reference_number(n, s) for n, s in linked.select("nhs_number", "nhs_number_status").iter_rows()]
    keyed = linked.with_columns(pl.Series("key", keys, dtype=pl.String)).drop_nulls("key")
    # Same valid NHS number → one person; two valid NHS numbers → never one person.
    assert keyed.group_by("key").agg(pl.col("person_id").n_unique())["person_id"].max() in (1, None)
    assert keyed.group_by("person_id").agg(pl.col("key").n_unique())["key"].max() in (1, None)


column_sets = st.frozensets(st.sampled_from(DEMOGRAPHICS))


@given(choices=st.lists(st.tuples(column_sets, st.sampled_from(EMPTY_FORMS)), min_size=5, max_size=5),
       everywhere=column_sets)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_link_on_any_column_set_agrees_with_the_reference(
    store_engine: Engine, population: pl.DataFrame,
    choices: list[tuple[frozenset[str], str | None]], everywhere: frozenset[str],
) -> None:
    providers = sorted(population["provider_code"].unique().to_list())
    assert len(providers) == len(choices)
    # Some fields are absent from every provider's extract; each provider leaves out others.
    plan = {p: (columns | everywhere, form) for p, (columns, form) in zip(providers, choices, strict=True)}
    frame = _blanked(population, plan)
    _load(store_engine, frame)
    report = link(store_engine, _settings(store_engine))
    assert report.identities == frame.height
    _check_against_reference(store_engine, frame)
    features = linkage_features(frame)
    has = {c: features[c].null_count() < features.height for c in features.columns}
    # Splink compares records sharing a date of birth and a name, or a postcode and given name.
    nothing_to_compare = not (
        (has["date_of_birth"] and (has["given_name"] or has["family_name"]))
        or (has["postcode"] and has["given_name"]))
    if nothing_to_compare:
        assert report.probabilistic_skipped and report.linked_probabilistic == 0
        assert "NHS number" in report.probabilistic_skipped
    else:
        assert report.probabilistic_skipped is None
    # A second run over the same data changes nothing, whatever the columns.
    again = link(store_engine, _settings(store_engine))
    assert (again.pending, again.links_changed) == (0, 0)


@pytest.mark.parametrize("absent", [
    pytest.param(frozenset(DEMOGRAPHICS), id="nothing-but-local-ids"),
    pytest.param(frozenset(DEMOGRAPHICS) - {"nhs_number"}, id="nhs-number-only"),
    pytest.param(frozenset({"nhs_number", "nhs_number_status"}), id="no-nhs-numbers"),
    pytest.param(frozenset({"postcode", "sex"}), id="no-postcode-or-sex"),
    pytest.param(frozenset({"date_of_birth", "postcode"}), id="names-and-numbers-only"),
])
def test_commands_on_a_sparse_store(store_engine: Engine, population: pl.DataFrame, absent: frozenset[str],
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from ptl.cli import main

    frame = _blanked(population, {p: (absent, None) for p in population["provider_code"].unique()})
    _load(store_engine, frame)
    monkeypatch.setenv("PTL_DATABASE_URL", store_engine.url.render_as_string(hide_password=False))
    assert main(["link"]) == 0
    assert main(["link", "--full", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["identities"] == frame.height
    if {"given_name", "date_of_birth"} <= absent or {"date_of_birth", "postcode"} <= absent:
        assert "linked on NHS number only" in report["probabilistic_skipped"]
    _check_against_reference(store_engine, frame)
    out = tmp_path / "identities.csv"
    assert main(["export", "identities", str(out)]) == 0
    assert pl.read_csv(out, infer_schema=False)["person_id"].null_count() == 0
    truth = tmp_path / "truth.csv"
    population.select("provider_code", "local_patient_id", "person_key").write_csv(truth)
    capsys.readouterr()
    assert main(["link", "evaluate", str(truth), "--json"]) == 0
    quality = json.loads(capsys.readouterr().out)["all"]
    assert quality["records"] == frame.height and quality["precision"] >= 0.99
    # Training either learns from what is there or says plainly why it cannot: never a traceback.
    code = main(["link", "train", "--out", str(tmp_path / "model.json")])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2 or (code == 0 and (tmp_path / "model.json").exists()), err


#: Which comparisons a store must lack to keep the shipped parameters for them.
@pytest.mark.parametrize("absent", [
    frozenset({"postcode"}), frozenset({"date_of_birth"}), frozenset({"given_name", "sex"}),
    frozenset({"nhs_number", "nhs_number_status"}),
], ids=lambda a: "no-" + "-".join(sorted(a)))
def test_training_keeps_shipped_parameters_for_fields_without_data(absent: frozenset[str],
                                                                    tmp_path: Path) -> None:
    identities = synthetic_identities(1_500, seed=3)
    blank = identities.with_columns(pl.lit(None, dtype=identities.schema[c]).alias(c) for c in absent)
    model = train_model(linkage_features(blank), tmp_path / "model.json")
    comparisons = [c["output_column_name"] for c in model["comparisons"]]
    assert comparisons == ["given_name", "family_name", "date_of_birth", "postcode", "sex", "nhs_number",
                           "provider_code"]
    carried = set(model["ptl"]["shipped_parameters"])
    lacking = {c for c in absent if c in comparisons}
    assert lacking <= carried
    assert not carried & {"family_name"}  # always present here, so always learnt
    assert 0 < model["probability_two_random_records_match"] < 0.01
    # The model it wrote links a store (every comparison has parameters).
    saved = json.loads((tmp_path / "model.json").read_text())
    for comparison in saved["comparisons"]:
        for level in comparison["comparison_levels"]:
            if not level.get("is_null_level"):
                assert level["m_probability"] > 0 and level["u_probability"] > 0


def test_training_refuses_plainly_without_demographics(tmp_path: Path) -> None:
    identities = synthetic_identities(1_500, seed=3)
    blank = identities.with_columns(
        pl.lit(None, dtype=identities.schema[c]).alias(c) for c in DEMOGRAPHICS if c != "nhs_number")
    with pytest.raises(ModelError, match="names, dates of birth or postcodes"):
        train_model(linkage_features(blank), tmp_path / "model.json")
    assert not (tmp_path / "model.json").exists()


def test_features_from_a_frame_missing_columns_or_typed_null() -> None:
    frame = pl.DataFrame({"id": [1, 2], "provider_code": ["RXA", "NXA"], "local_patient_id": ["a", "b"],
                          "nhs_number_status": [None, None], "date_of_birth": [None, None]})
    features = linkage_features(frame)
    assert features.height == 2
    assert features.schema["date_of_birth"] == pl.Date and features.schema["given_name"] == pl.String
    assert features.select(pl.exclude("source_identity_id", "provider_code")).null_count().row(0) == \
        (2,) * (features.width - 2)
