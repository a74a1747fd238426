"""Benchmark: identity linking of 1,000,000 source identities (25% without a usable NHS number)
end to end from the store, then an incremental weekly refresh adding 2% new records.

    .venv/bin/python bench/bench_identity.py [--identities 1000000] [--database-url URL]

Targets (issue 3, 2 cores): full link ≤ 60 s and ≤ 4 GiB peak; refresh ≤ 15 s. Each link run
happens in a fresh child process so its peak memory (max RSS) is its own, not the generator's.
Default store: a SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_SECONDS = 60.0
TARGET_GIB = 4.0
TARGET_REFRESH_SECONDS = 15.0
IDENTITIES_PER_PATIENT = 1.0992  # measured on ptl.synth's plan (3 trusts, 2 IS providers)


def _link_in_child(url: str, threshold: float, queue: Any) -> None:
    from ptl.identity import link
    from ptl.settings import Settings
    from ptl.store.engine import make_engine

    engine = make_engine(url)
    started = time.perf_counter()
    report = link(engine, Settings(database_url=url, link_match_threshold=threshold))
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"seconds": seconds, "peak_gib": peak_kib / 1024**2, "report": report.as_json()})


def _timed_link(url: str, threshold: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_link_in_child, args=(url, threshold, queue))
    child.start()
    result: dict[str, Any] = queue.get()
    child.join()
    return result


def _load(url: str, rows: pl.DataFrame) -> float:
    from ptl.store import identity_partitions
    from ptl.store.bulk import insert_frame
    from ptl.store.engine import make_engine, write_connection
    from ptl.synth import source_identity_rows

    started = time.perf_counter()
    engine = make_engine(url)
    with write_connection(engine) as connection, connection.begin():
        identity_partitions.ensure(connection, rows.get_column("provider_code").unique())
        insert_frame(connection, "source_identity", source_identity_rows(rows))
    engine.dispose()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--refresh-share", type=float, default=0.02)
    parser.add_argument("--without-nhs-share", type=float, default=0.25)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--database-url", help="an EMPTY store to use (default: temporary SQLite file)")
    args = parser.parse_args()

    from ptl.identity import identity_export, pairwise_quality
    from ptl.store import migrate
    from ptl.store.engine import make_engine
    from ptl.synth import synthetic_identities

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        total = int(args.identities * (1 + args.refresh_share))
        t0 = time.perf_counter()
        identities = synthetic_identities(int(total / IDENTITIES_PER_PATIENT) + 1, seed=2024,
                                          without_nhs_share=args.without_nhs_share)
        identities = identities.sample(fraction=1.0, shuffle=True, seed=7)
        first, later = identities.head(args.identities), identities.slice(args.identities)
        later = later.head(int(args.identities * args.refresh_share))
        generated = time.perf_counter() - t0
        without = 1 - first["nhs_number_usable"].cast(pl.Float64).sum() / first.height
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        loaded = _load(url, first)
        print(f"store {url.split('://')[0]}: generated {identities.height:,} synthetic identities in "
              f"{generated:.1f}s; loaded {first.height:,} ({without:.1%} without a usable NHS number) "
              f"in {loaded:.1f}s")

        full = _timed_link(url, args.threshold)
        report = full["report"]
        print(f"full link      {report['identities']:>9,} identities  {full['seconds']:6.1f}s  "
              f"peak {full['peak_gib']:.2f} GiB  (~{report['pairs_estimated']:,} pairs; "
              f"{report['persons']:,} persons; {report['reviews_open']:,} review items)  "
              f"targets ≤ {TARGET_SECONDS:.0f}s, ≤ {TARGET_GIB:.0f} GiB")

        _load(url, later)
        refresh = _timed_link(url, args.threshold)
        report = refresh["report"]
        print(f"weekly refresh +{later.height:,} new  {refresh['seconds']:6.1f}s  "
              f"peak {refresh['peak_gib']:.2f} GiB  ({report['links_changed']:,} links written, "
              f"{report['persons_created']:,} persons created)  target ≤ {TARGET_REFRESH_SECONDS:.0f}s")

        rerun = _timed_link(url, args.threshold)
        print(f"re-run, no new data          {rerun['seconds']:6.1f}s  "
              f"({rerun['report']['links_changed']} links changed)")

        engine = make_engine(url)
        with engine.connect() as connection:
            linked = identity_export(connection)
        engine.dispose()
        truth = pl.concat([first, later]).select("provider_code", "local_patient_id", "person_key",
                                                  "nhs_number_usable")
        quality = pairwise_quality(linked, truth)
        for name, q in quality.items():
            print(f"quality ({name}): precision {q.precision:.4f} recall {q.recall:.4f} "
                  f"({q.true_pairs:,} true pairs)")
        ok = (full["seconds"] <= TARGET_SECONDS and full["peak_gib"] <= TARGET_GIB
              and refresh["seconds"] <= TARGET_REFRESH_SECONDS)
        print("targets met" if ok else "TARGETS MISSED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
