"""Tests for the synthetic ICB generator (`ptl.synth`).

The key test re-reads every generated file *as its dialect* (header mapping, value translation,
date format, encoding) with a small independent validator written from the loader rules, and
checks that the rows it would reject or warn on are exactly the planted truth: no unplanted
defects in clean rows, none missing.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
import zipfile
from pathlib import Path

import nhs_number
import polars as pl
import pytest

from ptl import codes
from ptl.fields import DATE_FIELDS, FIELDS
from ptl.synth import SynthFeed, SynthSystem, generate_system, last_sunday, write_canonical_extract

CENSUS = dt.date(2025, 3, 2)  # a Sunday
IMD_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "imd2019_lsoa11.csv"
WLMDS_TO_CANONICAL = {(f.wlmds[0] if f.wlmds else f.name): f.name for f in FIELDS}
REQUIRED = ("pathway_id", "local_patient_id", "waiting_list_type", "treatment_function_code")
DATES_NOT_AFTER_CENSUS = ("date_of_birth", "decision_to_admit_date", "last_validated_date",
                          "last_attended_date", "last_dna_date")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> SynthSystem:
    return generate_system(tmp_path_factory.mktemp("synth"), census_date=CENSUS)


@pytest.fixture(scope="module")
def weekly(tmp_path_factory: pytest.TempPathFactory) -> SynthSystem:
    return generate_system(tmp_path_factory.mktemp("weekly"), patients=3000, weeks=3,
                           census_date=CENSUS, seed=7)


# --------------------------------------------------------------------------------------------
# An independent reader/validator for the generated dialects
# --------------------------------------------------------------------------------------------


def read_feed(feed: SynthFeed) -> tuple[pl.DataFrame, int, str]:
    """The feed as canonical string columns, its first data row number and date format."""
    profile: dict = {}
    if feed.profile.endswith(".toml"):
        profile = tomllib.loads(Path(feed.profile).read_text(encoding="utf-8"))
    if feed.file_format == "parquet":
        df = pl.read_parquet(feed.path)
        return df.with_columns(pl.col(c).cast(pl.String) for c in df.columns), 1, "%Y-%m-%d"
    if feed.file_format == "xlsx":
        df = pl.read_excel(feed.path, sheet_name=profile.get("sheet", "PTL"))
    else:
        df = pl.read_csv(feed.path, infer_schema_length=0,
                         separator=profile.get("delimiter", ","),
                         encoding=profile.get("encoding", "utf8"))
    if feed.profile == "wlmds":
        df = df.rename({c: WLMDS_TO_CANONICAL[c] for c in df.columns})
    else:
        df = df.rename({v: k for k, v in profile["columns"].items()})
    df = df.with_columns(pl.col(c).cast(pl.String) for c in df.columns)
    for field, mapping in profile.get("values", {}).items():
        df = df.with_columns(pl.col(field).replace(mapping))
    for field, value in profile.get("defaults", {}).items():
        df = df.with_columns(pl.lit(value).alias(field))
    # A field the dialect does not send reads as empty in every row.
    df = df.with_columns(pl.lit(None, dtype=pl.String).alias(f.name) for f in FIELDS if f.name not in df.columns)
    return df, 2, profile.get("date_format", "%Y-%m-%d")


def validate(df: pl.DataFrame, census: dt.date, first_row: int, date_format: str
             ) -> tuple[set[tuple[int, str, str]], set[tuple[int, str, str]]]:
    """(rejections, warnings) as {(row, column, kind)} by the loader's documented rules."""
    rej: set[tuple[int, str, str]] = set()
    warn: set[tuple[int, str, str]] = set()
    df = df.with_row_index("_i").with_columns(
        wl=pl.col("waiting_list_type").str.to_uppercase().replace(codes.WAITING_LIST_TYPE_SYNONYMS)
    )

    def add(target: set, mask: pl.Expr, column: str, kind: str) -> None:
        rows = df.filter(mask)["_i"].to_list()
        target.update((r + first_row, column, kind) for r in rows)

    for c in REQUIRED:
        add(rej, pl.col(c).is_null(), c, "missing_value")
    parsed = {}
    for c in DATE_FIELDS:
        if c == "census_date" or c not in df.columns:
            continue
        p = pl.col(c).str.to_date(date_format, strict=False)
        parsed[c] = p
        # A date of birth is a demographic: blanked with a warning, the row kept.
        add(warn if c == "date_of_birth" else rej, pl.col(c).is_not_null() & p.is_null(), c, "bad_date")
    for c in DATES_NOT_AFTER_CENSUS:
        add(warn if c == "date_of_birth" else rej, parsed[c] > census, c, "date_after_census")
    add(rej, parsed["rtt_start_date"] > census, "rtt_start_date", "clock_start_after_census")
    checks = {
        "treatment_function_code": list(codes.TREATMENT_FUNCTIONS),
        "waiting_list_type": list(codes.WAITING_LIST_TYPES),
        "rtt_status": list(codes.RTT_STATUSES),
        "clinical_priority": list(codes.CLINICAL_PRIORITIES),
        "asa_grade": [str(g) for g in codes.ASA_GRADES],
        "priority_type": list(codes.PRIORITY_TYPES),
    }
    for c, ok in checks.items():
        col = pl.col("wl") if c == "waiting_list_type" else pl.col(c)
        add(rej, col.is_not_null() & ~col.is_in(ok), c, "bad_code")
    rtt = pl.col("wl").is_in(list(codes.RTT_WAITING_LIST_TYPES))
    add(rej, rtt & pl.col("rtt_status").is_in(list(codes.RTT_CLOCK_STOP_STATUSES)), "rtt_status",
        "clock_stop_on_open_pathway")
    dup = pl.col("pathway_id").is_not_null() & (pl.len().over("pathway_id") > 1)
    add(rej, dup, "pathway_id", "duplicate_pathway_key")

    nhs = df["nhs_number"].str.replace_all(" ", "").to_list()
    bad_nhs = [i for i, v in enumerate(nhs)
               if v is not None and (not nhs_number.is_valid(v)
                                     or v in codes.PLACEHOLDER_NHS_NUMBERS)]
    warn.update((i + first_row, "nhs_number", "invalid_nhs_number") for i in bad_nhs)
    for c, ok in (("ethnic_category", codes.ETHNIC_CATEGORIES), ("sex", codes.SEX_CODES)):
        add(warn, pl.col(c).is_not_null() & ~pl.col(c).is_in(list(ok)), c, "bad_code_blanked")
    add(warn, rtt & pl.col("rtt_start_date").is_null(), "rtt_start_date", "unknown_clock_start")
    return rej, warn


def truth_rows(system: SynthSystem, name: str, feed: SynthFeed) -> set[tuple[int, str, str]]:
    t = pl.read_csv(system.truth_dir / name, infer_schema_length=0)
    rel = feed.path.relative_to(system.out_dir).as_posix()
    t = t.filter(pl.col("file") == rel)
    return {(int(r), c, k) for r, c, k in t.select("row", "column", "kind").iter_rows()}


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_layout_and_dialects(system: SynthSystem) -> None:
    assert [p["dialect"] for p in system.providers] == [
        "wlmds", "local-csv", "xlsx", "parquet", "sparse"]
    assert [p["provider_code"] for p in system.providers] == ["RZA", "RZB", "RZC", "NZA", "NZB"]
    assert [p["kind"] for p in system.providers] == ["trust"] * 3 + ["independent"] * 2
    for p in system.providers:
        assert 1 <= len(p["sites"]) <= 3
        assert all(s["site_code"][:3] == p["provider_code"] and len(s["site_code"]) == 5
                   for s in p["sites"])
    by_code = {f.provider_code: f for f in system.feeds}
    assert by_code["RZA"].path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert by_code["RZB"].profile.endswith("RZB.toml") and by_code["RZB"].file_format == "csv"
    raw = by_code["RZB"].path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # Windows-1252 accents are not valid UTF-8
    assert "é" in raw.decode("cp1252") or "ö" in raw.decode("cp1252")
    profile = tomllib.loads(Path(by_code["RZB"].profile).read_text(encoding="utf-8"))
    assert profile["defaults"]["provider_code"] == "RZB"
    assert profile["values"]["treatment_function_code"]["Trauma & Orthopaedics"] == "110"
    assert profile["values"]["sex"]["U"] == "X"
    xlsx_profile = tomllib.loads(Path(by_code["RZC"].profile).read_text(encoding="utf-8"))
    assert xlsx_profile["sheet"] == "PTL"
    assert by_code["NZA"].profile == "canonical"
    pq = pl.read_parquet(by_code["NZA"].path)
    assert pq.schema["rtt_start_date"] == pl.Date and pq.schema["bmi"] == pl.Float64
    assert pq.schema["asa_grade"].is_integer() and pq.schema["learning_disability"] == pl.Boolean
    assert pq.schema["treatment_function_code"] == pl.String
    # The sparse IS extract: what WLMDS requires and the NHS number, nothing else.
    sparse_profile = tomllib.loads(Path(by_code["NZB"].profile).read_text(encoding="utf-8"))
    assert set(sparse_profile["columns"]) == {
        "local_patient_id", "nhs_number", "pathway_id", "treatment_function_code", "rtt_start_date",
        "waiting_list_type"}
    assert sparse_profile["defaults"]["provider_code"] == "NZB"
    header = by_code["NZB"].path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert sorted(header) == sorted(sparse_profile["columns"].values())
    for f in system.feeds:
        assert f.path.is_absolute() and f.path.exists()
        assert f.path.name == f"{f.provider_code}_{f.census_date.isoformat()}.{f.file_format}"
    ref = system.out_dir / "refdata"
    imd = pl.read_csv(ref / "imd2019_lsoa11.csv", infer_schema_length=0)
    assert imd.columns[4] == "Index of Multiple Deprivation (IMD) Rank"
    assert imd["Index of Multiple Deprivation (IMD) Decile"].n_unique() == 10
    assert ',"' in (ref / "imd2019_lsoa11.csv").read_text(encoding="utf-8-sig")
    pcs = pl.read_csv(ref / "postcodes.csv", infer_schema_length=0)
    assert {"pcd", "pcd2", "pcds", "dointr", "doterm", "lsoa11", "lat", "long"} <= set(pcs.columns)
    assert pcs["pcd"].str.len_chars().eq(7).all() and pcs["pcd2"].str.len_chars().eq(8).all()
    assert pcs["lsoa11"].is_in(imd["LSOA code (2011)"].implode()).all()
    sites = pl.read_csv(ref / "sites.csv")
    assert sites["postcode"].is_in(pcs["pcds"].implode()).all()


def test_truth_matches_an_independent_validator(system: SynthSystem) -> None:
    pcs = pl.read_csv(system.out_dir / "refdata" / "postcodes.csv", infer_schema_length=0)
    for feed in system.feeds:
        df, first_row, fmt = read_feed(feed)
        assert df.height == feed.rows
        rej, warn = validate(df, feed.census_date, first_row, fmt)
        assert rej == truth_rows(system, "rejections.csv", feed), feed.provider_code
        assert warn == truth_rows(system, "warnings.csv", feed), feed.provider_code
        assert feed.expected_rejected == len({r for r, _, _ in rej})
        assert feed.expected_loaded == feed.rows - feed.expected_rejected
        # Bad rows are a small share, every kind is planted, nothing else is wrong.
        assert feed.expected_rejected / feed.rows < 0.03
        kinds = {k for _, _, k in rej}
        sparse = feed.provider_code == "NZB"
        expected = {"missing_value", "clock_start_after_census", "bad_code", "duplicate_pathway_key"}
        if not sparse:  # the sparse dialect sends no other dates, no RTT status, no ethnicity or sex
            expected |= {"date_after_census", "clock_stop_on_open_pathway"}
        if feed.file_format != "parquet" and not sparse:
            expected.add("bad_date")
        assert kinds == expected, feed.provider_code
        dob_warnings = {"date_after_census"} | ({"bad_date"} if feed.file_format != "parquet" else set())
        assert {k for _, _, k in warn} == {"invalid_nhs_number", "unknown_clock_start"} | (
            set() if sparse else {"bad_code_blanked"} | dob_warnings), feed.provider_code
        # Waiting-list spellings that only need normalising are present.
        assert df["waiting_list_type"].is_in(["PTL0", "PLTI", "ptli"]).sum() > 0
        # Every non-empty postcode is in the postcode directory.
        assert df["postcode"].drop_nulls().is_in(pcs["pcds"].implode()).all()


def test_truth_files_agree_with_feeds(system: SynthSystem) -> None:
    manifest = json.loads((system.truth_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 42 and len(manifest["feeds"]) == len(system.feeds)
    rej = pl.read_csv(system.truth_dir / "rejections.csv")
    for f, m in zip(system.feeds, manifest["feeds"], strict=True):
        assert m["path"] == f.path.relative_to(system.out_dir).as_posix()
        assert m["expected_rejected"] == f.expected_rejected
        n = rej.filter(pl.col("file") == m["path"]).select(pl.col("row").n_unique()).item()
        assert n == f.expected_rejected
    assert [(f.census_date, f.provider_code) for f in system.feeds] == sorted(
        (f.census_date, f.provider_code) for f in system.feeds)


def test_identities(system: SynthSystem) -> None:
    ids = pl.read_csv(system.truth_dir / "identities.csv", infer_schema_length=0)
    assert ids.select("provider_code", "local_patient_id").is_unique().all()
    unusable = (ids["nhs_number_usable"] == "false").mean()
    assert unusable >= 0.20
    is_rows = ids.filter(pl.col("provider_code").str.starts_with("N"))
    assert 0.30 <= (is_rows["nhs_number_usable"] == "false").mean() <= 0.50
    persons = pl.read_csv(system.truth_dir / "persons.csv", infer_schema_length=0)
    assert persons.height == 20_000
    assert ids["person_key"].n_unique() == 20_000
    multi = ids.group_by("person_key").agg(pl.col("provider_code").n_unique().alias("n"))
    share = (multi["n"] > 1).mean()
    assert 0.07 <= share <= 0.13
    corrupted = ids.filter(pl.col("corruption").is_not_null())
    assert corrupted.height > 50
    assert (corrupted["nhs_number_usable"] == "false").all()
    assert corrupted["corruption"].str.contains(";").sum() > 0
    kinds = set(corrupted["corruption"].str.split(";").explode().to_list())
    assert kinds == {"family_name_typo", "nickname", "dob_day_month_swapped", "postcode_changed",
                     "postcode_missing"}
    eth = persons["ethnic_category"]
    assert 0.65 <= (eth == "A").mean() <= 0.82
    assert 0.05 <= eth.is_in(["Z", "99"]).mean() <= 0.11
    # NHS numbers carried are valid and never placeholders.
    for v in persons["nhs_number"].head(500).to_list():
        assert nhs_number.is_valid(v) and v not in codes.PLACEHOLDER_NHS_NUMBERS


def _clean_rows(system: SynthSystem) -> pl.DataFrame:
    """Loaded, defect-free rows of every feed with the true person attached."""
    ids = pl.read_csv(system.truth_dir / "identities.csv", infer_schema_length=0)
    rej = pl.read_csv(system.truth_dir / "rejections.csv", infer_schema_length=0)
    frames = []
    for feed in system.feeds:
        df, first_row, fmt = read_feed(feed)
        rel = feed.path.relative_to(system.out_dir).as_posix()
        bad = rej.filter(pl.col("file") == rel)["row"].cast(pl.Int64)
        df = df.with_row_index("_row", offset=first_row).filter(
            ~pl.col("_row").cast(pl.Int64).is_in(bad.implode()))
        frames.append(df.select(
            pl.lit(feed.provider_code).alias("provider_code"),
            pl.lit(feed.census_date).alias("census"),
            "local_patient_id", "pathway_id", "treatment_function_code", "lsoa11"
            if "lsoa11" in df.columns else pl.lit(None, pl.String).alias("lsoa11"),
            pl.col("waiting_list_type").str.to_uppercase()
            .replace(codes.WAITING_LIST_TYPE_SYNONYMS).alias("wl"),
            pl.col("rtt_start_date").str.to_date(fmt, strict=False).alias("start"),
        ))
    return pl.concat(frames).join(ids, on=["provider_code", "local_patient_id"], how="left")


def test_duplicate_pathways_are_exactly_the_planted_ones(system: SynthSystem) -> None:
    rows = _clean_rows(system)
    assert rows["person_key"].null_count() == 0
    found = (
        rows.filter(pl.col("wl").is_in(["IRTT", "ORTT"]))
        .group_by("person_key", "treatment_function_code")
        .agg(pl.col("provider_code").n_unique().alias("n"))
        .filter(pl.col("n") > 1)
    )
    truth = pl.read_csv(system.truth_dir / "duplicate_pathways.csv", infer_schema_length=0)
    assert truth.height >= 2
    assert set(found.select("person_key", "treatment_function_code").iter_rows()) == set(
        truth.select("person_key", "treatment_function_code").iter_rows())
    assert (truth["provider_code_1"] != truth["provider_code_2"]).all()


def test_waits_distribution(system: SynthSystem) -> None:
    rows = _clean_rows(system).filter(pl.col("wl").is_in(["IRTT", "ORTT"]) &
                                      pl.col("start").is_not_null())
    persons = pl.read_csv(system.truth_dir / "persons.csv", infer_schema_length=0)
    rows = rows.with_columns(d=(pl.col("census") - pl.col("start")).dt.total_days()).join(
        persons.select("person_key", pl.col("imd_decile").cast(pl.Int64)), on="person_key")
    within18 = (rows["d"] <= 126).mean()
    over52 = (rows["d"] >= 365).mean()
    assert 0.50 <= within18 <= 0.75
    assert 0.015 <= over52 <= 0.05
    q = rows.with_columns(q=(pl.col("imd_decile") + 1) // 2).group_by("q").agg(
        (pl.col("d") >= 365).mean().alias("o52"))
    rate = dict(q.iter_rows())
    assert rate[1] / rate[5] > 1.5
    trust = rows.filter(pl.col("provider_code").str.starts_with("R"))
    indep = rows.filter(pl.col("provider_code").str.starts_with("N"))
    assert (trust["d"] >= 365).mean() > (indep["d"] >= 365).mean()


def test_determinism(tmp_path: Path) -> None:
    a = generate_system(tmp_path / "a", patients=1500, census_date=CENSUS, seed=5)
    b = generate_system(tmp_path / "b", patients=1500, census_date=CENSUS, seed=5)
    c = generate_system(tmp_path / "c", patients=1500, census_date=CENSUS, seed=6)
    for fa, fb, fc in zip(a.feeds, b.feeds, c.feeds, strict=True):
        # Byte for byte, XLSX included: the same file is the same feed (same sha256) to ingest.
        assert fa.path.read_bytes() == fb.path.read_bytes(), fa.path.name
        assert fa.path.read_bytes() != fc.path.read_bytes(), fa.path.name
        if fa.file_format == "xlsx":
            with zipfile.ZipFile(fa.path) as book:
                core = book.read("docProps/core.xml").decode()
            assert f"{CENSUS.isoformat()}T00:00:00Z" in core  # not the time of writing
    for name in ("identities.csv", "rejections.csv", "warnings.csv", "duplicate_pathways.csv"):
        assert (a.truth_dir / name).read_bytes() == (b.truth_dir / name).read_bytes()
    # The clean data does not depend on whether defects are planted.
    d = generate_system(tmp_path / "d", patients=1500, census_date=CENSUS, seed=5, bad_rows=False)
    assert all(f.expected_rejected == 0 for f in d.feeds)
    assert pl.read_csv(d.truth_dir / "warnings.csv").height == 0
    assert (d.truth_dir / "identities.csv").read_bytes().splitlines()[0] == (
        a.truth_dir / "identities.csv").read_bytes().splitlines()[0]
    assert [f.rows for f in d.feeds] == [f.rows for f in a.feeds]


def test_weeks_persist_and_turn_over(weekly: SynthSystem) -> None:
    censuses = sorted({f.census_date for f in weekly.feeds})
    assert censuses == [CENSUS - dt.timedelta(days=14), CENSUS - dt.timedelta(days=7), CENSUS]
    assert all(c.weekday() == 6 for c in censuses)
    rows = _clean_rows(weekly).filter(pl.col("start").is_not_null())
    w0 = rows.filter(pl.col("census") == censuses[0])
    w1 = rows.filter(pl.col("census") == censuses[1])
    both = w0.join(w1, on=["provider_code", "pathway_id"], suffix="_1")
    assert (both["start"] == both["start_1"]).all()
    assert (both["local_patient_id"] == both["local_patient_id_1"]).all()
    left = 1 - both.height / w0.height
    # New pathways: not in any week-0 row, rejected or not (a rejected row is not a new one).
    w0_all = pl.concat(
        read_feed(f)[0].select(pl.lit(f.provider_code).alias("provider_code"), "pathway_id")
        for f in weekly.feeds if f.census_date == censuses[0]
    )
    new = w1.join(w0_all, on=["provider_code", "pathway_id"], how="anti")
    assert 0.01 <= left <= 0.06
    assert 0.01 <= new.height / w1.height <= 0.06
    waited = new.select((pl.col("census") - pl.col("start")).dt.total_days())
    # New clock starts fall within the last week (the few others lost their id to a planted
    # duplicate-key defect in week 0).
    assert (waited.to_series() <= 7).mean() > 0.85
    persons = pl.read_csv(weekly.truth_dir / "persons.csv", infer_schema_length=0)
    assert persons.height == 3000
    for feed in weekly.feeds:
        df, first_row, fmt = read_feed(feed)
        rej, warn = validate(df, feed.census_date, first_row, fmt)
        assert rej == truth_rows(weekly, "rejections.csv", feed)
        assert warn == truth_rows(weekly, "warnings.csv", feed)


def test_real_imd_reference(tmp_path: Path) -> None:
    if not IMD_REAL.exists():
        pytest.skip("real IMD file not available")
    s = generate_system(tmp_path, trusts=2, independents=1, patients=800, census_date=CENSUS,
                        imd_path=IMD_REAL)
    assert not (s.out_dir / "refdata" / "imd2019_lsoa11.csv").exists()
    imd = pl.read_csv(IMD_REAL, infer_schema_length=0)
    pcs = pl.read_csv(s.out_dir / "refdata" / "postcodes.csv", infer_schema_length=0)
    real = pcs.join(imd, left_on="lsoa11", right_on="LSOA code (2011)")
    assert real.height == pcs.height
    assert real["Index of Multiple Deprivation (IMD) Decile"].n_unique() == 10
    assert real["Local Authority District code (2019)"].n_unique() <= 3


def test_small_and_odd_parameters(tmp_path: Path) -> None:
    s = generate_system(tmp_path, trusts=1, independents=0, patients=50, census_date=CENSUS)
    assert len(s.feeds) == 1 and s.feeds[0].rows >= 50
    with pytest.raises(ValueError):
        generate_system(tmp_path / "x", census_date=dt.date(2025, 3, 3))
    assert last_sunday(dt.date(2025, 3, 2)) == dt.date(2025, 3, 2)
    assert last_sunday(dt.date(2025, 3, 8)) == dt.date(2025, 3, 2)
    assert last_sunday().weekday() == 6


@pytest.mark.parametrize("file_format", ["csv", "parquet", "xlsx"])
def test_canonical_extract_is_all_valid(tmp_path: Path, file_format: str) -> None:
    path = write_canonical_extract(tmp_path / f"x.{file_format}", rows=3000, census_date=CENSUS,
                                   provider_code="RXX", seed=3, file_format=file_format)
    if file_format == "csv":
        df = pl.read_csv(path, infer_schema_length=0)
    elif file_format == "parquet":
        df = pl.read_parquet(path)
        assert df.schema["rtt_start_date"] == pl.Date
        df = df.with_columns(pl.all().cast(pl.String))
    else:
        df = pl.read_excel(path).with_columns(pl.all().cast(pl.String))
    assert df.height == 3000
    assert df.columns == [f.name for f in FIELDS]
    rej, warn = validate(df, CENSUS, 2, "%Y-%m-%d")
    assert rej == set() and warn == set()
    assert df["pathway_id"].is_unique().all()
    assert (df["provider_code"] == "RXX").all()
    start = df["rtt_start_date"].str.to_date()
    assert (start <= CENSUS).all() and start.null_count() == 0
    assert df["ethnic_category"].is_in(list(codes.ETHNIC_CATEGORIES)).all()
    assert df["sex"].is_in(list(codes.SEX_CODES)).all()
    again = write_canonical_extract(tmp_path / f"y.{file_format}", rows=3000, census_date=CENSUS,
                                    provider_code="RXX", seed=3, file_format=file_format)
    assert path.read_bytes() == again.read_bytes()
