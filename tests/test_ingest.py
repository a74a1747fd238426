"""Ingest into the store (SQLite and PostgreSQL): loads, refusals, duplicates, history."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from ingest.pipeline import IngestResult, ingest_file
from ptl.fields import FIELDS, FIELDS_BY_NAME
from ptl.refdata.imd import load_imd
from ptl.refdata.postcodes import load_postcodes
from ptl.settings import Settings
from tests.extract_rows import good_row, good_rows, write_csv


def counts(engine: Engine) -> dict[str, object]:
    """What a user would check: rows per table and which feed is current."""
    with engine.connect() as connection:
        scalar = connection.execute
        return {
            "pathway": scalar(sa.text("SELECT COUNT(*) FROM pathway")).scalar_one(),
            "source_identity": scalar(sa.text("SELECT COUNT(*) FROM source_identity")).scalar_one(),
            "current": [(p, f, str(c)[:10]) for p, f, c in scalar(sa.text(
                "SELECT provider_code, feed_id, census_date FROM current_snapshot ORDER BY 1"))],
            "loaded_feeds": scalar(sa.text("SELECT COUNT(*) FROM feed WHERE status = 'loaded'")).scalar_one(),
            # PostgreSQL: a feed's pathway table left unattached (a load that did not finish)
            "unattached": unattached_pathway_tables(connection),
        }


def unattached_pathway_tables(connection: sa.Connection) -> list[str]:
    if connection.dialect.name != "postgresql":
        return []
    return list(connection.execute(sa.text(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'pathway\\_feed\\_%' "
        "AND NOT relispartition ORDER BY 1"
    )).scalars())


def ingest(engine: Engine, path: Path, **kwargs: object) -> IngestResult:
    kwargs.setdefault("provider_code", "RXX")
    kwargs.setdefault("profile", "canonical")
    kwargs.setdefault("settings", Settings())
    return ingest_file(engine, path, **kwargs)  # type: ignore[arg-type]


def test_a_clean_file_loads_and_becomes_current(store_engine: Engine, tmp_path: Path) -> None:
    rows = good_rows(10)
    rows[0] = good_row(1, rtt_start_date="2023-06-01", clinical_priority="P2")
    result = ingest(store_engine, write_csv(tmp_path / "ptl.csv", rows))
    assert (result.status, result.rows_read, result.rows_loaded, result.rows_rejected) == ("loaded", 10, 10, 0)
    assert result.became_current
    state = counts(store_engine)
    assert state["pathway"] == 10 and state["source_identity"] == 10
    assert state["current"] == [("RXX", result.feed_id, "2024-06-30")]
    with store_engine.connect() as connection:
        first = connection.execute(sa.text(
            "SELECT days_waited, week_band, age_years, age_band, priority_rank, is_rtt, ethnic_group "
            "FROM pathway WHERE pathway_id = 'PPI000001'")).one()
    # 2023-06-01 → 2024-06-30 is 395 days: band ceil(395/7)-1 = 56.
    assert tuple(first) == (395, 56, 64, "50-64", 3, True, "White")


def test_rows_with_problems_are_quarantined_and_the_rest_load(store_engine: Engine, tmp_path: Path) -> None:
    rows = good_rows(20)
    rows[4] = good_row(5, treatment_function_code="999")
    rows[9] = good_row(10, nhs_number="1234567890")
    result = ingest(store_engine, write_csv(tmp_path / "ptl.csv", rows))
    assert (result.status, result.rows_loaded, result.rows_rejected, result.rows_warned) == ("loaded", 19, 1, 1)
    assert result.rejections == [{"row": 6, "column": "treatment_function_code", "kind": "bad_code",
                                  "reason": result.rejections[0]["reason"]}]
    with store_engine.connect() as connection:
        issues = connection.execute(sa.text(
            "SELECT row_number, column_name, severity, kind FROM row_issue ORDER BY row_number")).all()
        nhs = connection.execute(sa.text(
            "SELECT nhs_number FROM source_identity WHERE local_patient_id = 'L000010'")).scalar_one()
    assert [tuple(i) for i in issues] == [(6, "treatment_function_code", "rejected", "bad_code"),
                                          (11, "nhs_number", "warning", "invalid_nhs_number")]
    assert nhs is None


def test_the_same_file_twice_is_a_no_op(store_engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ptl.csv", good_rows(5))
    first = ingest(store_engine, path)
    before = counts(store_engine)
    again = ingest(store_engine, path)
    assert again.status == "duplicate"
    assert again.message == f"already loaded as feed {first.feed_id}"
    assert again.feed_id == first.feed_id
    assert counts(store_engine) == before


def _refused_leaves_store_untouched(engine: Engine, path: Path, **kwargs: object) -> IngestResult:
    before = counts(engine)
    result = ingest(engine, path, **kwargs)
    assert result.status == "refused"
    assert result.rows_loaded == 0
    assert counts(engine) == before
    with engine.connect() as connection:
        status = connection.execute(sa.text("SELECT status, message FROM feed WHERE id = :id"),
                                    {"id": result.feed_id}).one()
    assert status[0] == "refused" and status[1] == result.message
    return result


@pytest.mark.parametrize("writer_process_rows", [0, 1_000_000], ids=["writer-process", "direct"])
def test_a_refusal_found_after_batches_were_stored_rolls_them_back(
    store_engine: Engine, tmp_path: Path, writer_process_rows: int
) -> None:
    """Rows are stored batch by batch; too many rejections in the last batch must still leave
    nothing of the file behind (SQLite: through the writer process and directly)."""
    ingest(store_engine, write_csv(tmp_path / "good.csv", good_rows(8)))
    before = counts(store_engine)
    rows = [good_row(n, census_date="2024-07-07") for n in range(1, 11)]
    for n in range(7, 10):
        rows[n] = good_row(n + 1, census_date="2024-07-07", waiting_list_type="XXXX")
    settings = Settings(sqlite_writer_process_rows=writer_process_rows)
    result = ingest(store_engine, write_csv(tmp_path / "late.csv", rows), batch_rows=4, settings=settings)
    assert result.status == "refused" and result.refusal_kind == "too_many_rejected"
    assert [r["row"] for r in result.rejections] == [9, 10, 11]
    assert counts(store_engine) == before
    again = ingest(store_engine, write_csv(tmp_path / "fixed.csv", rows[:7]), settings=settings)
    assert again.status == "loaded" and again.rows_loaded == 7


def test_the_sqlite_writer_raises_a_failed_batch_before_anything_else_runs(tmp_path: Path) -> None:
    """Batches are sent to the SQLite writer process without waiting for its answer; a batch
    it could not store must still stop the load at the next statement, before any commit, and
    the rollback must leave nothing behind."""
    import polars as pl

    from ingest.sqlite_writer import SqliteWriterProcess, WriterFailed
    from ptl.store import migrate
    from ptl.store.engine import make_engine

    database = tmp_path / "writer.sqlite3"
    engine = make_engine(f"sqlite:///{database}")
    migrate.upgrade(engine)
    writer = SqliteWriterProcess(str(database))
    writer.begin()
    writer.ensure_organisation("RXX")
    writer.insert("organisation", pl.DataFrame({"code": ["RYY"], "kind": ["other"], "updated_at": ["2024-07-07"]}))
    writer.insert("no_such_table", pl.DataFrame({"a": [1]}))  # answered later
    with pytest.raises(WriterFailed, match="insert"):
        writer.current_census("RXX")
    writer.rollback()
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM organisation")).scalar() == 0


def test_whole_file_refusals_leave_the_previous_snapshot_untouched(store_engine: Engine, tmp_path: Path) -> None:
    ingest(store_engine, write_csv(tmp_path / "good.csv", good_rows(8)))

    too_bad = good_rows(10)
    for n in range(3):
        too_bad[n] = good_row(n + 1, census_date="2024-07-07", waiting_list_type="XXXX")
    for n in range(3, 10):
        too_bad[n] = good_row(n + 1, census_date="2024-07-07")
    result = _refused_leaves_store_untouched(store_engine, write_csv(tmp_path / "bad.csv", too_bad))
    assert result.refusal_kind == "too_many_rejected"
    assert "3 of 10 rows (30%) were rejected, more than the 20% allowed" in result.message
    assert len(result.rejections) == 3

    other = write_csv(tmp_path / "other.csv", [good_row(1, provider_code="RYY", census_date="2024-07-07")])
    assert _refused_leaves_store_untouched(store_engine, other).refusal_kind == "provider_mismatch"

    garbage = tmp_path / "garbage.xlsx"
    garbage.write_bytes(b"this is not a spreadsheet")
    assert _refused_leaves_store_untouched(store_engine, garbage).refusal_kind == "unreadable"

    empty = tmp_path / "empty.csv"
    empty.write_text("pathway_id,local_patient_id\n")
    assert _refused_leaves_store_untouched(store_engine, empty).refusal_kind in ("empty", "unreadable")

    no_columns = write_csv(tmp_path / "cols.csv", [{"pathway_id": "P1", "census_date": "2024-07-07"}])
    assert _refused_leaves_store_untouched(store_engine, no_columns).refusal_kind == "missing_columns"


def test_rejected_share_threshold_is_a_setting(store_engine: Engine, tmp_path: Path) -> None:
    rows = good_rows(10)
    for n in range(3):
        rows[n] = good_row(n + 1, waiting_list_type="XXXX")
    path = write_csv(tmp_path / "ptl.csv", rows)
    result = ingest(store_engine, path, settings=Settings(max_rejected_share=0.5))
    assert (result.status, result.rows_loaded) == ("loaded", 7)


def test_history_older_census_is_kept_but_not_current(store_engine: Engine, tmp_path: Path) -> None:
    june_30 = ingest(store_engine, write_csv(tmp_path / "w2.csv", good_rows(6)))
    older_rows = [good_row(n, census_date="2024-06-23", postcode="M1 1AA") for n in range(1, 5)]
    older = ingest(store_engine, write_csv(tmp_path / "w1.csv", older_rows))
    assert older.status == "loaded" and not older.became_current
    assert "kept as history" in older.message
    with store_engine.connect() as connection:
        current = connection.execute(sa.text("SELECT feed_id FROM current_snapshot")).scalar_one()
        by_census = dict(connection.execute(sa.text(
            "SELECT census_date, COUNT(*) FROM pathway GROUP BY census_date")).all())
        postcodes = {r[0] for r in connection.execute(sa.text("SELECT postcode FROM source_identity"))}
    assert current == june_30.feed_id
    assert {str(k)[:10]: v for k, v in by_census.items()} == {"2024-06-30": 6, "2024-06-23": 4}
    # An older census never overwrites newer identity values.
    assert postcodes == {"LS1 4AB"}


def test_a_newer_census_replaces_current_and_updates_identities(store_engine: Engine, tmp_path: Path) -> None:
    ingest(store_engine, write_csv(tmp_path / "w1.csv", good_rows(4)))
    newer = [good_row(n, census_date="2024-07-07") for n in range(2, 6)]
    newer[0] = good_row(2, census_date="2024-07-07", family_name="Smyth-Jones")
    result = ingest(store_engine, write_csv(tmp_path / "w2.csv", newer))
    assert result.became_current
    with store_engine.connect() as connection:
        identities = dict(connection.execute(sa.text(
            "SELECT local_patient_id, family_name FROM source_identity")).all())
        current_rows = connection.execute(sa.text(
            "SELECT COUNT(*) FROM pathway p JOIN current_snapshot c ON c.feed_id = p.feed_id")).scalar_one()
        ids_stable = connection.execute(sa.text(
            "SELECT COUNT(DISTINCT source_identity_id) FROM pathway WHERE pathway_id = 'PPI000002'")).scalar_one()
    assert len(identities) == 5 and identities["L000002"] == "Smyth-Jones"
    assert current_rows == 4
    assert ids_stable == 1


def test_lsoa_and_imd_are_derived_from_the_loaded_reference_data(
    store_engine: Engine, tmp_path: Path, shared_data: Path
) -> None:
    load_imd(store_engine, shared_data / "imd2019_lsoa11.csv")
    postcodes = tmp_path / "nspl.csv"
    postcodes.write_text("pcd,pcds,lsoa11,lat,long\nLS1 4AB,LS1 4AB,E01000001,53.79,-1.55\n"
                         "M1  1AA,M1 1AA,E01033658,53.48,-2.24\n")
    load_postcodes(store_engine, postcodes)
    rows = [good_row(1), good_row(2, postcode="m11aa"), good_row(3, postcode="", lsoa11="E01000002"),
            good_row(4, postcode="ZZ9 9ZZ")]
    ingest(store_engine, write_csv(tmp_path / "ptl.csv", rows))
    with store_engine.connect() as connection:
        derived = connection.execute(sa.text(
            "SELECT pathway_id, lsoa11, imd_decile, imd_quintile FROM pathway ORDER BY pathway_id")).all()
    imd = {"E01000001": 9, "E01000002": 10}
    assert [tuple(r) for r in derived][0] == ("PPI000001", "E01000001", imd["E01000001"], 5)
    assert tuple(derived[1])[1] == "E01033658" and derived[1][2] is not None
    assert tuple(derived[2]) == ("PPI000003", "E01000002", 10, 5)
    assert tuple(derived[3]) == ("PPI000004", None, None, None)


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_delimiters_are_sniffed(store_engine: Engine, tmp_path: Path, delimiter: str) -> None:
    path = write_csv(tmp_path / "ptl.csv", good_rows(3), delimiter=delimiter)
    assert ingest(store_engine, path).rows_loaded == 3


def test_postgresql_keeps_each_feed_in_its_own_partition_and_drops_what_a_dead_load_left(
    postgres_url: str, tmp_path: Path
) -> None:
    """A feed's pathways are built in a table of their own and attached by the feed's
    transaction; a table a killed load left unattached is invisible and dropped by the next
    load; a refused load leaves none."""
    from ptl.store import migrate, pathway_partitions
    from ptl.store.engine import make_engine

    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    first = ingest(engine, write_csv(tmp_path / "a.csv", good_rows(8)), batch_rows=3)
    assert first.status == "loaded"
    with engine.connect() as connection:
        assert pathway_partitions.is_partitioned(connection)
        partitions = connection.execute(sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'pathway'::regclass")).all()
        assert partitions == [(f"pathway_feed_{first.feed_id}", f"FOR VALUES IN ('{first.feed_id}')")]
    # What a load killed between its two commits leaves: a built table, never attached.
    with engine.begin() as connection:
        pathway_partitions.create_unattached(connection, 999)
        connection.execute(sa.text(f"CREATE TEMPORARY TABLE dead AS SELECT * FROM pathway_feed_{first.feed_id}"))
        connection.execute(sa.text("UPDATE dead SET feed_id = 999, id = id + 100000"))
        connection.execute(sa.text("INSERT INTO pathway_feed_999 SELECT * FROM dead"))
        pathway_partitions.create_unattached(connection, 998)  # a live load's: its lock is held
    live = engine.connect()
    live.execute(sa.text("SELECT pg_advisory_lock(hashtext(:key))"),
                 {"key": pathway_partitions.staging_lock_key(998)})
    live.commit()
    before = counts(engine)
    assert before["unattached"] == ["pathway_feed_998", "pathway_feed_999"] and before["pathway"] == 8
    rows = [good_row(n, census_date="2024-07-07") for n in range(1, 11)]
    for n in range(7, 10):
        rows[n] = good_row(n + 1, census_date="2024-07-07", waiting_list_type="XXXX")
    refused = ingest(engine, write_csv(tmp_path / "late.csv", rows), batch_rows=4)
    assert refused.status == "refused"
    # The dead load's table is gone, the live one's kept, and the refused load left none.
    assert counts(engine) == {**before, "unattached": ["pathway_feed_998"]}
    live.close()
    engine.dispose()


def test_postgresql_keeps_each_providers_identities_in_their_own_partition(
    postgres_url: str, tmp_path: Path
) -> None:
    """A provider's first load builds their identity partition apart and attaches it, keys and
    all, when it commits; a refused first load leaves no table; later loads write through the
    parent, and the keys hold there as before."""
    from ptl.store import identity_partitions, migrate
    from ptl.store.engine import make_engine

    engine = make_engine(postgres_url)
    migrate.upgrade(engine)

    def identity_tables() -> dict[str, tuple[str | None, int]]:
        with engine.connect() as connection:
            return {name: (bound, indexes) for name, bound, indexes in connection.execute(sa.text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), "
                "(SELECT COUNT(*) FROM pg_index x WHERE x.indrelid = c.oid AND x.indisunique) "
                "FROM pg_class c WHERE c.relkind = 'r' AND c.relname LIKE 'source\\_identity\\_%'"))}

    rows = good_rows(10)
    for n in range(7, 10):
        rows[n] = good_row(n + 1, waiting_list_type="XXXX")
    refused = ingest(engine, write_csv(tmp_path / "late.csv", rows), batch_rows=4)
    assert refused.status == "refused" and identity_tables() == {}

    first = ingest(engine, write_csv(tmp_path / "a.csv", good_rows(8)), batch_rows=3)
    assert first.status == "loaded"
    assert identity_tables() == {"source_identity_rxx": ("FOR VALUES IN ('RXX')", 2)}
    newer = [good_row(n, census_date="2024-07-07") for n in range(5, 11)]
    newer[0] = good_row(5, census_date="2024-07-07", family_name="Smyth-Jones")
    assert ingest(engine, write_csv(tmp_path / "b.csv", newer), batch_rows=3).status == "loaded"
    other = [good_row(n, provider_code="RYY") for n in range(1, 4)]
    assert ingest(engine, write_csv(tmp_path / "c.csv", other), provider_code="RYY").status == "loaded"
    assert identity_tables() == {"source_identity_rxx": ("FOR VALUES IN ('RXX')", 2),
                                 "source_identity_ryy": ("FOR VALUES IN ('RYY')", 2)}
    with engine.connect() as connection:
        assert identity_partitions.is_partitioned(connection)
        held = connection.execute(sa.text(
            "SELECT provider_code, COUNT(*), COUNT(DISTINCT id) FROM source_identity GROUP BY 1 ORDER BY 1")).all()
        assert held == [("RXX", 10, 10), ("RYY", 3, 3)]
        assert connection.execute(sa.text(
            "SELECT family_name FROM source_identity WHERE local_patient_id = 'L000005' "
            "AND provider_code = 'RXX'")).scalar_one() == "Smyth-Jones"
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO source_identity (id, provider_code, local_patient_id, first_feed_id, "
            "values_census_date) VALUES (999999, 'RXX', 'L000001', 1, '2024-06-30')"))
    engine.dispose()


def _longest_stored_text(engine: Engine) -> dict[str, int]:
    """The longest text each table holds that a person or page would be shown (0 when none)."""
    with engine.connect() as connection:
        return {
            "source_identity": connection.execute(sa.text(
                "SELECT COALESCE(MAX(LENGTH(local_patient_id) + COALESCE(LENGTH(family_name), 0) "
                "+ COALESCE(LENGTH(given_name), 0)), 0) FROM source_identity")).scalar_one(),
            "row_issue": connection.execute(sa.text(
                "SELECT COALESCE(MAX(LENGTH(reason) + COALESCE(LENGTH(raw_value), 0) "
                "+ COALESCE(LENGTH(raw_row), 0)), 0) FROM row_issue")).scalar_one(),
            "feed": connection.execute(sa.text("SELECT MAX(LENGTH(message)) FROM feed")).scalar_one(),
        }


def test_an_over_long_name_is_blanked_and_the_patient_stays_listed(store_engine: Engine, tmp_path: Path) -> None:
    # The longest cell a spreadsheet holds (a longer one, such as a 150 MB field, refuses the
    # whole file as it is read: tests/test_hostile_files.py).
    rows = good_rows(3)
    rows[1] = good_row(2, given_name="A" * 32_767)
    result = ingest(store_engine, write_csv(tmp_path / "ptl.csv", rows))
    assert (result.status, result.rows_loaded, result.rows_rejected, result.rows_warned) == ("loaded", 3, 0, 1)
    assert result.warnings == [{"row": 3, "column": "given_name", "kind": "too_long",
                                "reason": "given_name is 32767 characters long, more than its maximum "
                                          "of 100: blanked"}]
    with store_engine.connect() as connection:
        given = connection.execute(sa.text(
            "SELECT given_name FROM source_identity WHERE local_patient_id = 'L000002'")).scalar_one()
    assert given is None
    assert counts(store_engine)["pathway"] == 3
    longest = _longest_stored_text(store_engine)
    assert longest["source_identity"] < 200 and longest["row_issue"] < 200 and longest["feed"] < 200


def test_an_over_long_local_patient_id_rejects_its_row_on_both_stores(store_engine: Engine, tmp_path: Path) -> None:
    rows = good_rows(5)
    rows[3] = good_row(4, local_patient_id="L" * 41)
    result = ingest(store_engine, write_csv(tmp_path / "ptl.csv", rows))
    assert (result.status, result.rows_loaded, result.rows_rejected) == ("loaded", 4, 1)
    assert result.rejections == [{"row": 5, "column": "local_patient_id", "kind": "too_long",
                                  "reason": "local_patient_id is 41 characters long, more than its maximum of 40"}]
    state = counts(store_engine)
    assert (state["pathway"], state["source_identity"]) == (4, 4)


def test_every_field_loads_at_its_maximum_length_and_not_one_over_on_both_stores(
    store_engine: Engine, tmp_path: Path
) -> None:
    """One row per field at exactly its maximum (two-byte characters: the store counts
    characters) and one a character over; whatever the store's column sizes, the file loads,
    values stored as sent are stored whole, and each over-long value is rejected or blanked."""
    ruled = [f for f in FIELDS if f.invalid != "refuse"]
    rows, number = [], 0
    for field in ruled:
        for extra in (0, 1):
            number += 1
            rows.append(good_row(number, **{field.name: "é" * (field.max_length + extra)}))
    result = ingest(store_engine, write_csv(tmp_path / "ptl.csv", rows), settings=Settings(max_rejected_share=1.0))
    assert result.status == "loaded", result.message
    too_long = {(issue["row"] - 2, issue["column"]) for issue in result.rejections + result.warnings
                if issue["kind"] == "too_long"}
    assert too_long == {(2 * i + 1, field.name) for i, field in enumerate(ruled)}
    rejected = {issue["row"] - 2 for issue in result.rejections if issue["kind"] == "too_long"}
    assert rejected == {2 * i + 1 for i, field in enumerate(ruled) if field.invalid == "reject"}
    stored_as_sent = {"pathway_id": "pathway", "referral_id": "pathway", "pathway_id_issuer": "pathway",
                      "local_patient_id": "source_identity", "family_name": "source_identity",
                      "given_name": "source_identity"}
    with store_engine.connect() as connection:
        for name, table in stored_as_sent.items():
            longest = connection.execute(sa.text(f"SELECT MAX(LENGTH({name})) FROM {table}")).scalar_one()
            assert longest == FIELDS_BY_NAME[name].max_length, name


def test_a_headerless_file_is_refused_without_a_patient_value_in_any_record(
    store_engine: Engine, tmp_path: Path
) -> None:
    rows = [good_row(n, family_name="Okonkwo-Baptiste", given_name="Precious") for n in range(1, 6)]
    path = tmp_path / "ptl.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(list(row.values()) for row in rows)
    result = _refused_leaves_store_untouched(store_engine, path)
    assert result.refusal_kind == "missing_columns"
    assert "the first line looks like data, not headers: it has values shaped like nhs_number" in result.message
    with store_engine.connect() as connection:
        recorded = " ".join(str(value) for row in connection.execute(sa.text(
            "SELECT * FROM feed")).all() for value in row)
        issues = connection.execute(sa.text("SELECT COUNT(*) FROM row_issue")).scalar_one()
    said = json.dumps(result.as_json()) + recorded
    # Every value of the first line but the provider's own code, which the feed is recorded under.
    first_line = {value for name, value in rows[0].items() if len(value) >= 3 and name != "provider_code"}
    assert {"9434765919", "Okonkwo-Baptiste", "Precious", "1960-03-04", "LS1 4AB", "L000001"} <= first_line
    assert sorted(value for value in first_line if value in said) == []
    assert issues == 0


def test_nul_characters_in_values_and_headers_load_without_them_on_both_stores(
        store_engine: Engine, tmp_path: Path) -> None:
    """A NUL in any value failed the whole COPY on PostgreSQL (a 500 through the API)."""
    rows = good_rows(3)
    rows[0] = good_row(1, pathway_id="PPI\x00000001", family_name="Sm\x00ith")
    for row in rows:  # and a header with a NUL in it
        row["site_code\x00"] = "RXX01"
    result = ingest(store_engine, write_csv(tmp_path / "ptl.csv", rows))
    assert (result.status, result.rows_loaded) == ("loaded", 3), result.message
    with store_engine.connect() as connection:
        assert connection.execute(sa.text(
            "SELECT COUNT(*) FROM pathway WHERE pathway_id = 'PPI000001' AND site_code = 'RXX01'")).scalar_one() == 1
        assert connection.execute(sa.text(
            "SELECT family_name FROM source_identity WHERE local_patient_id = 'L000001'")).scalar_one() == "Smith"
