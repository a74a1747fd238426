"""Benchmark: what reading a file in a confined child process costs (ingest/untrusted.py).

For one synthetic canonical extract of N rows (default 1,000,000) as CSV, Parquet and, with
`--xlsx`, XLSX (slow to write: about four minutes per million rows), prints the seconds to read
it into the all-text frame in this process (`read_extract`, what `ptl ingest` does for CSV and
Parquet) and in a child process with memory and time limits (`read_in_child`, what uploads,
drop folders and MESH do, and every XLSX), each best of `--repeat`, the child's peak memory,
and then `ingest_file` end to end into PostgreSQL as `ptl ingest` (source "cli") and as an
upload (source "api").

    .venv/bin/python bench/bench_untrusted_read.py [--rows 1000000] [--xlsx] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CENSUS = dt.date(2026, 11, 22)
DEFAULT_PG = os.environ.get("PTL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _best(repeat: int, run: object) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--xlsx", action="store_true")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    args = parser.parse_args()

    import sqlalchemy as sa

    from ingest.pipeline import ingest_file
    from ingest.profiles import load_profile
    from ingest.read import read_extract
    from ingest.untrusted import limits_of, read_in_child
    from ptl.settings import Settings
    from ptl.store import migrate
    from ptl.store.engine import make_engine
    from ptl.synth import write_canonical_extract

    settings = Settings()
    profile = load_profile("canonical")
    formats = ["csv", "parquet"] + (["xlsx"] if args.xlsx else [])
    with tempfile.TemporaryDirectory(prefix="ptl-bench-read-") as tmp:
        print(f"machine: {os.cpu_count()} cores; rows: {args.rows:,}; child memory limit "
              f"{settings.read_memory_mb:,} MB")
        print(f"{'format':<9}{'MiB':>7}{'in process s':>14}{'child s':>9}{'child peak MiB':>16}")
        paths = {}
        for fmt in formats:
            path = Path(tmp) / f"extract.{fmt}"
            write_canonical_extract(path, rows=args.rows, census_date=CENSUS, seed=7, file_format=fmt)
            paths[fmt] = path
            inside = (_best(args.repeat, lambda p=path: read_extract(p, profile).frame.rechunk())
                      if fmt != "xlsx" else float("nan"))
            child = _best(args.repeat, lambda p=path: read_in_child(
                p, profile, limits_of(settings), memory_mb=settings.read_memory_mb,
                seconds=settings.read_seconds).frame.rechunk())
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"{fmt:<9}{path.stat().st_size / 2**20:>7.0f}{inside:>14.2f}{child:>9.2f}{peak:>16,.0f}")

        admin = make_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        for source in ("cli", "api"):
            name = f"ptl_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            url = sa.engine.make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
            try:
                engine = make_engine(url)
                migrate.upgrade(engine)
                started = time.perf_counter()
                result = ingest_file(engine, paths["csv"], provider_code="RXX", profile="canonical",
                                     source=source, settings=Settings(database_url=url))
                seconds = time.perf_counter() - started
                assert result.status == "loaded", result.message
                engine.dispose()
                print(f"ingest_file CSV -> PostgreSQL, source {source!r}: {seconds:.2f} s")
            finally:
                with admin.connect() as connection:
                    connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
