"""Benchmark of the analytics views on 1,000,000 current pathways from 10 providers (PostgreSQL).

Builds a synthetic system (vectorised NumPy/Polars: 10 providers × 3 sites, 12 treatment
functions, realistic wait and priority mixes, ~1% cross-provider duplicates) with two
censuses of history in a throw-away PostgreSQL database, then reports:
- snapshot read time without any cache (ADBC and COPY paths);
- the first request after a load, which pays the snapshot rebuild (`load_snapshot` with the
  API's feed frame cache, `ptl.views.feed_frames`) plus the first computation of every aggregate
  (site stats ×3 groupings, equity ×6 dimensions with trend and headline, equalisation for every
  treatment function, every validation worklist, data quality, the unfiltered shared queue),
  target ≤ 5 s in total, in three scenarios, each in a process of its own:
  1. a fresh process with an empty feed frame cache (the first start of the API);
  2. a fresh process with the feed frames on disk (a restart);
  3. a warm process (it has served every aggregate of the data before) right after one
     provider's new weekly census is loaded (`--loads` times, a different provider each time):
     the case the target is about;
- warm (cached) lookup time: `load_snapshot` (one version query) + `Snapshot.cached` hit.

Run: `.venv/bin/python bench/bench_views.py [--rows 1000000] [--url postgresql+psycopg://…]`
(default URL: PTL_TEST_POSTGRES_URL or postgresql+psycopg://postgres@127.0.0.1:5432/test; a
database `ptl_bench_views_<random>` is created there and dropped afterwards).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import sqlalchemy as sa

from ptl import codes, rtt
from ptl.store import identity_partitions, migrate
from ptl.store.bulk import insert_frame, read_frame
from ptl.store.engine import make_engine
from ptl.store.pathway_partitions import ensure_partition
from ptl.views import (
    NO_FILTER,
    WORKLIST_KINDS,
    ViewFilter,
    data_quality,
    equalisation,
    equity,
    load_snapshot,
    read_snapshot,
    shared_queue,
    site_stats,
    worklist,
)
from ptl.views import snapshot as snapshot_module
from ptl.views.feed_frames import FeedFrameCache

CENSUS = dt.date(2025, 3, 2)
PROVIDERS = [f"R{c}{n}" for c, n in zip("ABCDEFGHJK", range(10), strict=True)]
TFCS = ["100", "101", "110", "120", "130", "160", "300", "320", "330", "400", "410", "502"]
PRIORITIES = np.array(["P1a", "P1b", "P2", "P3", "P4", "P5", "P6", ""], dtype=object)
PRIORITY_P = [0.002, 0.008, 0.08, 0.2, 0.35, 0.02, 0.02, 0.32]
ETHNIC = np.array(list("ABCDEFGHJKLMNPRS") + ["Z", "99", ""], dtype=object)
ETHNIC_P = np.array([0.70, 0.02, 0.05] + [0.01] * 4 + [0.03, 0.025, 0.01, 0.01, 0.015, 0.02, 0.005, 0.005, 0.01]
                    + [0.04, 0.02, 0.01])
AGE_BANDS = np.array([label for _, label in codes.AGE_BANDS], dtype=object)


def synthetic_pathways(rows: int, census: dt.date, seed: int, id_offset: int, feed_of: dict[str, int],
                       keys: np.ndarray | None = None) -> pl.DataFrame:
    """One census of `rows` pathways spread over the providers (vectorised)."""
    rng = np.random.default_rng(seed)
    provider_index = np.arange(rows) % len(PROVIDERS)
    provider = np.array(PROVIDERS, dtype=object)[provider_index]
    days = np.minimum(rng.gamma(1.3, 95, rows).astype(np.int32), 1100)
    unknown_start = rng.random(rows) < 0.003
    lwt = rng.choice(np.array(["IRTT", "ORTT", "INON"], dtype=object), rows, p=[0.4, 0.55, 0.05])
    priority = rng.choice(PRIORITIES, rows, p=np.array(PRIORITY_P) / sum(PRIORITY_P))
    ethnic = rng.choice(ETHNIC, rows, p=ETHNIC_P / ETHNIC_P.sum())
    imd = rng.choice(np.array([1, 2, 3, 4, 5, 0]), rows, p=[0.24, 0.21, 0.19, 0.17, 0.15, 0.04])
    # Deprived areas wait a little longer (so the headline ratio is not 1).
    days = (days * np.where(imd == 1, 1.15, 1.0)).astype(np.int32)
    pathway_key = keys if keys is not None else np.arange(rows) + id_offset
    frame = pl.DataFrame({
        "id": np.arange(rows, dtype=np.int64) + id_offset,
        "provider_code": provider,
        "census_date": pl.repeat(census, rows, eager=True),
        "source_identity_id": pathway_key.astype(np.int64) % 1_000_003 + 1,
        "pathway_id": pathway_key.astype(str),
        "site_code": provider + "0" + (rng.integers(1, 4, rows)).astype(str).astype(object),
        "treatment_function_code": rng.choice(np.array(TFCS, dtype=object), rows),
        "rtt_start_date": None,
        "days": np.where(unknown_start, -1, days),
        "waiting_list_type": lwt,
        "rtt_status": rng.choice(np.array(["10", "20", "21"], dtype=object), rows),
        "clinical_priority": priority,
        "procedure_code": rng.choice(np.array(["W371", "W401", "C751", "H229", ""], dtype=object), rows),
        "tci_date": np.where(rng.random(rows) < 0.08, 1, 0),
        "last_validated_date": rng.integers(0, 200, rows),
        "learning_disability": rng.random(rows) < 0.02,
        "sex": rng.choice(np.array(["1", "2", "X"], dtype=object), rows, p=[0.46, 0.53, 0.01]),
        "ethnic_category": ethnic,
        "imd_quintile": imd,
        "age_band": rng.choice(AGE_BANDS, rows),
    })
    census_lit = pl.lit(census)
    days_expr = pl.when(pl.col("days") < 0).then(None).otherwise(pl.col("days"))
    frame = frame.with_columns(
        pl.col("provider_code").replace_strict(feed_of, return_dtype=pl.Int64).alias("feed_id"),
        pl.col("provider_code").alias("pathway_id_issuer"),
        (census_lit - pl.duration(days=days_expr)).alias("rtt_start_date"),
        pl.when(pl.col("tci_date") == 1).then(census_lit + pl.duration(days=14)).alias("tci_date"),
        (census_lit - pl.duration(days=pl.col("last_validated_date"))).alias("last_validated_date"),
        pl.when(pl.col("clinical_priority") == "").then(None).otherwise(pl.col("clinical_priority"))
        .alias("clinical_priority"),
        pl.when(pl.col("procedure_code") == "").then(None).otherwise(pl.col("procedure_code")).alias("procedure_code"),
        pl.when(pl.col("ethnic_category") == "").then(None).otherwise(pl.col("ethnic_category")).alias("ethnic_category"),
        pl.when(pl.col("imd_quintile") == 0).then(None).otherwise(pl.col("imd_quintile")).cast(pl.Int16).alias("imd_quintile"),
    ).drop("days")
    is_rtt = pl.col("waiting_list_type").is_in(["IRTT", "ORTT"])
    days_waited = rtt.days_waited_expr(census_lit, pl.col("rtt_start_date"))
    frame = frame.with_columns(
        is_rtt.alias("is_rtt"),
        pl.when(is_rtt).then(days_waited).alias("days_waited"),
        pl.col("ethnic_category").replace_strict(codes.ETHNIC_GROUP_OF_CATEGORY, default=None,
                                                 return_dtype=pl.String).alias("ethnic_group"),
        pl.col("clinical_priority").replace_strict(codes.CLINICAL_PRIORITY_RANK, default=codes.UNKNOWN_PRIORITY_RANK,
                                                   return_dtype=pl.Int16).alias("priority_rank"),
        (pl.col("imd_quintile") * 2).cast(pl.Int16).alias("imd_decile"),
        pl.when(pl.col("imd_quintile").is_not_null()).then(pl.lit("E01000001")).alias("lsoa11"),
    ).with_columns(rtt.week_band_expr(pl.col("days_waited")).alias("week_band"))
    # ~1% of pathways also at the next provider under the same pathway key (duplicates).
    duplicate = (pl.col("id") % 100 == 0) & pl.col("is_rtt")
    copies = frame.filter(duplicate).with_columns(
        (pl.col("id") + rows * 10).alias("id"),
        pl.col("provider_code").replace_strict(dict(zip(PROVIDERS, PROVIDERS[1:] + PROVIDERS[:1], strict=True)))
        .alias("provider_code"),
    ).with_columns(pl.col("provider_code").replace_strict(feed_of, return_dtype=pl.Int64).alias("feed_id"))
    return pl.concat([frame.head(rows - copies.height), copies])


def build(engine: sa.Engine, rows: int) -> None:
    now = dt.datetime.now(dt.UTC)
    before = CENSUS - dt.timedelta(weeks=1)
    old_feed = {p: i + 1 for i, p in enumerate(PROVIDERS)}
    new_feed = {p: i + 1 + len(PROVIDERS) for i, p in enumerate(PROVIDERS)}
    current = synthetic_pathways(rows, CENSUS, 1, 0, new_feed)
    # Last week's census: the current pathways that had started by then, minus this week's
    # additions, plus pathways removed since (treated or validated off).
    kept = current.filter((pl.col("days_waited").fill_null(30) >= 7) & (pl.col("id") % 50 != 1))
    removed = synthetic_pathways(rows // 50, before, 2, rows * 20, old_feed,
                                 keys=np.arange(rows // 50) + rows * 20)
    older = pl.concat([
        kept.with_columns(pl.col("provider_code").replace_strict(old_feed, return_dtype=pl.Int64).alias("feed_id"),
                          pl.lit(before).alias("census_date"), (pl.col("id") + rows * 40).alias("id"),
                          (pl.col("days_waited") - 7).alias("days_waited"))
        .with_columns(rtt.week_band_expr(pl.col("days_waited")).alias("week_band")),
        removed,
    ], how="vertical_relaxed")
    identities = pl.DataFrame({"id": np.arange(1, 1_000_004, dtype=np.int64)}).with_columns(
        pl.lit("X").alias("provider_code"), pl.col("id").cast(pl.String).alias("local_patient_id"),
        pl.when(pl.col("id") % 20 != 0).then(pl.lit("9434765919")).alias("nhs_number"),
        pl.when(pl.col("id") % 15 != 0).then(pl.lit("LS1 4AP")).alias("postcode"),
        pl.lit(1, pl.Int64).alias("first_feed_id"), pl.lit(CENSUS).alias("values_census_date"))
    columns = [c for c in snapshot_module.CURRENT_SCHEMA if c in current.columns]
    started = time.perf_counter()
    with engine.begin() as connection:
        for provider in PROVIDERS:
            connection.execute(sa.text("INSERT INTO organisation (code, kind, updated_at) VALUES (:p, 'trust', :now)"),
                               {"p": provider, "now": now})
        for feeds, census in ((old_feed, before), (new_feed, CENSUS)):
            for provider, feed_id in feeds.items():
                connection.execute(sa.text(
                    "INSERT INTO feed (id, provider_code, census_date, filename, sha256, file_format, profile, source, "
                    "status, rows_read, rows_loaded, rows_rejected, rows_warned, received_at) VALUES (:id, :p, :c, "
                    "'x.csv', :sha, 'csv', 'wlmds', 'cli', 'loaded', 100000, 100000, 120, 0, :now)"),
                    {"id": feed_id, "p": provider, "c": census, "sha": f"{feed_id:064d}", "now": now})
                ensure_partition(connection, feed_id)  # PostgreSQL: each feed's rows in a partition
        for provider, feed_id in new_feed.items():
            connection.execute(sa.text("INSERT INTO current_snapshot VALUES (:p, :f, :c, :now)"),
                               {"p": provider, "f": feed_id, "c": CENSUS, "now": now})
        identity_partitions.ensure(connection, identities.get_column("provider_code").unique())
        insert_frame(connection, "source_identity", identities)
        insert_frame(connection, "pathway", pl.concat([current.select(columns), older.select(columns)],
                                                      how="vertical_relaxed"))
        connection.execute(sa.text("ANALYZE"))
    print(f"built {current.height:,} current + {older.height:,} older pathways, 1,000,003 identities "
          f"in {time.perf_counter() - started:.1f} s")


def load_new_census(engine: sa.Engine, provider: str, week: int) -> int:
    """One provider's next weekly census, as a load leaves it: a new feed (the provider's
    current rows a week older, 2% removed, 2% added) made current in one transaction."""
    now = dt.datetime.now(dt.UTC)
    census = CENSUS + dt.timedelta(weeks=week)
    columns = [c for c in snapshot_module.CURRENT_SCHEMA
               if c not in ("person_id", "has_nhs_number", "has_postcode")]
    with engine.begin() as connection:
        feed_id = int(connection.execute(sa.text("SELECT MAX(id) + 1 FROM feed")).scalar_one())
        next_id = int(connection.execute(sa.text("SELECT MAX(id) + 1 FROM pathway")).scalar_one())
        previous = read_frame(connection, "SELECT p.* FROM pathway p JOIN current_snapshot cs ON cs.feed_id = p.feed_id"
                              " WHERE cs.provider_code = :p", {"p": provider},
                              {c: snapshot_module.CURRENT_SCHEMA[c] for c in columns})
        kept = previous.filter(pl.col("id") % 50 != week)
        added = previous.filter(pl.col("id") % 50 == (week + 25) % 50).with_columns(
            ("N" + pl.col("pathway_id") + f"-{week}").alias("pathway_id"),
            (pl.col("rtt_start_date").fill_null(census) + pl.duration(days=pl.col("id") % 7)).alias("rtt_start_date"))
        rows = pl.concat([kept, added]).with_columns(
            pl.lit(feed_id, pl.Int64).alias("feed_id"), pl.lit(census).alias("census_date"),
            (pl.int_range(pl.len(), dtype=pl.Int64) + next_id).alias("id"),
        ).with_columns(
            pl.when(pl.col("is_rtt")).then(rtt.days_waited_expr(pl.lit(census), pl.col("rtt_start_date")))
            .cast(pl.Int32).alias("days_waited"),
        ).with_columns(rtt.week_band_expr(pl.col("days_waited")).cast(pl.Int32).alias("week_band"))
        connection.execute(sa.text(
            "INSERT INTO feed (id, provider_code, census_date, filename, sha256, file_format, profile, source, "
            "status, rows_read, rows_loaded, rows_rejected, rows_warned, received_at) VALUES (:id, :p, :c, "
            "'x.csv', :sha, 'csv', 'wlmds', 'cli', 'loaded', :n, :n, 0, 0, :now)"),
            {"id": feed_id, "p": provider, "c": census, "sha": f"{feed_id:064d}", "n": rows.height, "now": now})
        ensure_partition(connection, feed_id)
        insert_frame(connection, "pathway", rows.select(columns))
        connection.execute(sa.text("UPDATE current_snapshot SET feed_id = :f, census_date = :c, updated_at = :now "
                                   "WHERE provider_code = :p"), {"f": feed_id, "c": census, "now": now, "p": provider})
    with engine.begin() as connection:
        connection.execute(sa.text("ANALYZE pathway"))
    return rows.height


def timed(label: str, action: Callable[[], Any], results: dict[str, float],
          cpu: dict[str, float] | None = None) -> Any:
    """Run `action`, recording its wall time in `results` (and this process's CPU time, every
    thread, in `cpu`)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    value = action()
    results[label] = time.perf_counter() - started
    if cpu is not None:
        cpu[label] = time.process_time() - started_cpu
    return value


def every_aggregate(snapshot: snapshot_module.Snapshot, cpu: dict[str, float] | None = None) -> dict[str, float]:
    results: dict[str, float] = {}
    for by in (("provider_code", "site_code"), ("provider_code",), ()):
        timed(f"site_stats {'/'.join(by) or 'system'}", lambda by=by: site_stats(snapshot, NO_FILTER, by), results, cpu)
    for dimension in ("imd_quintile", "ethnic_group", "ethnic_category", "age_band", "sex", "learning_disability"):
        timed(f"equity {dimension} (+trend, headline)",
              lambda d=dimension: equity(snapshot.current, d, NO_FILTER, snapshot.history), results, cpu)
    for tfc in TFCS:
        timed(f"equalisation {tfc}", lambda t=tfc: equalisation(snapshot, ViewFilter(treatment_function_code=t)),
              results, cpu)
    for kind in WORKLIST_KINDS:
        timed(f"worklist {kind}", lambda k=kind: worklist(snapshot, k), results, cpu)
    timed("data_quality", lambda: data_quality(snapshot), results, cpu)
    timed("shared_queue (all)", lambda: shared_queue(snapshot.current), results, cpu)
    return results


READ = "load_snapshot (snapshot read)"


def first_requests(engine: sa.Engine, cache: FeedFrameCache,
                   cpu: dict[str, float] | None = None) -> dict[str, float]:
    """What the first request after a load pays: the snapshot rebuild (`load_snapshot`, with
    the API's feed frame cache), then every aggregate computed for the first time. Views of
    a new snapshot are partly prepared on a background thread (`snapshot.prepare`): its CPU
    time counts in `cpu` (process time), and the aggregates wait for what they need of it."""
    results: dict[str, float] = {}
    snapshot = timed(READ, lambda: load_snapshot(engine, frame_cache=cache), results, cpu)
    results.update(every_aggregate(snapshot, cpu))
    return results


def report(title: str, results: dict[str, float], detail: bool, cpu: dict[str, float] | None = None) -> float:
    total = sum(results.values())
    cpu = cpu or {}
    print(f"\n{title}:")
    if detail:
        for label, seconds in results.items():
            used = f"   CPU {cpu[label] * 1000:6.0f} ms" if label in cpu else ""
            print(f"  {label:<45} {seconds * 1000:8.0f} ms{used}")
    else:
        read = results[READ]
        used = (f" (CPU {cpu[READ] * 1000:.0f} ms / {(sum(cpu.values()) - cpu[READ]) * 1000:.0f} ms)"
                if READ in cpu else "")
        print(f"  snapshot read {read * 1000:6.0f} ms, aggregates {(total - read) * 1000:6.0f} ms{used}")
    used = f", process CPU {sum(cpu.values()) * 1000:,.0f} ms" if cpu else ""
    print(f"  {'TOTAL (first request after a load)':<45} {total * 1000:8.0f} ms   (target ≤ 5,000 ms){used}",
          flush=True)
    return total


def phase_fresh(url: str, cache_dir: Path, title: str) -> None:
    """A new API process: nothing in memory; the disk cache as the caller left it."""
    engine = make_engine(url)
    cpu: dict[str, float] = {}
    report(title, first_requests(engine, FeedFrameCache(cache_dir), cpu), detail=False, cpu=cpu)
    engine.dispose()


def phase_after_load(url: str, cache_dir: Path, loads: int) -> None:
    """A running API process that has served every aggregate; then one provider's new census
    is loaded, and the next requests rebuild. Repeated for `loads` weekly loads."""
    engine = make_engine(url)
    cache = FeedFrameCache(cache_dir)
    first_requests(engine, cache)  # the process is warm: snapshot and views of the data before
    for week in range(1, loads + 1):
        rows = load_new_census(engine, PROVIDERS[week % len(PROVIDERS)], week)
        print(f"\nloaded a new census for {PROVIDERS[week % len(PROVIDERS)]} ({rows:,} pathways)", flush=True)
        cpu: dict[str, float] = {}
        report(f"warm process, first request after that load (run {week})", first_requests(engine, cache, cpu),
               detail=week == 1, cpu=cpu)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=3, help="new provider censuses measured in the warm process")
    parser.add_argument("--url", default=os.environ.get("PTL_TEST_POSTGRES_URL",
                                                        "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--phase", choices=["fresh", "after-load"], help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--title", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "fresh":
        phase_fresh(args.url, args.cache_dir, args.title)
        return
    if args.phase == "after-load":
        phase_after_load(args.url, args.cache_dir, args.loads)
        return
    name = f"ptl_bench_views_{uuid.uuid4().hex[:8]}"
    admin = make_engine(args.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(args.url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    cache_dir = Path(tempfile.mkdtemp(prefix="ptl-bench-views-"))
    try:
        migrate.upgrade(engine)
        build(engine, args.rows)
        load: dict[str, float] = {}
        snapshot = timed("snapshot read, no cache (ADBC)", lambda: read_snapshot(engine), load)
        available = snapshot_module._adbc_available
        snapshot_module._adbc_available = lambda: False  # type: ignore[assignment]
        timed("snapshot read, no cache (COPY)", lambda: read_snapshot(engine), load)
        snapshot_module._adbc_available = available  # type: ignore[assignment]
        for label, seconds in load.items():
            print(f"{label:<32} {seconds:6.2f} s  ({snapshot.current.height:,} current, "
                  f"{snapshot.history.height:,} history rows)")
        del snapshot

        # Each scenario in a process of its own, as an API worker would be.
        def phase(*extra: str) -> None:
            subprocess.run([sys.executable, __file__, "--url", url, "--cache-dir", str(cache_dir), *extra],
                           check=True)

        phase("--phase", "fresh", "--title", "fresh process, empty feed frame cache (first start)")
        phase("--phase", "fresh", "--title", "fresh process, feed frames on disk (a restart)")
        phase("--phase", "after-load", "--loads", str(args.loads))

        # Warm: the API's path per request: version check, then the memo.
        snapshot = load_snapshot(engine)
        key = ("site_stats", NO_FILTER)
        snapshot.cached(key, lambda: site_stats(snapshot))
        samples = []
        for _ in range(1000):
            started = time.perf_counter()
            load_snapshot(engine).cached(key, lambda: site_stats(snapshot))
            samples.append(time.perf_counter() - started)
        samples.sort()
        print(f"\nwarm cached lookup (load_snapshot + cached hit), 1,000 calls: "
              f"p50 {statistics.median(samples) * 1000:.2f} ms, p99 {samples[989] * 1000:.2f} ms")
    finally:
        engine.dispose()
        shutil.rmtree(cache_dir, ignore_errors=True)
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
