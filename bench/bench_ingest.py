"""Benchmark: ingest a large canonical extract into SQLite and PostgreSQL.

Prints, for one synthetic clean canonical CSV of N rows (default 1,000,000):
- Polars just reading the CSV (the floor for any pipeline);
- end-to-end `ingest_file` into SQLite and into PostgreSQL (read, validate, derive, load in
  one transaction; storing runs on its own thread, and for SQLite in a writer process, while
  later batches are validated), with rows/s and the peak memory of the process doing it;
- raw PostgreSQL `COPY` of the same already-normalised pathway rows (the issue's floor for the
  load), and of those rows plus the source identities the load wrote, into a twin with that
  table's two unique indexes (all that a first load must write);
- with `--refresh`, a weekly refresh into each store: the file with the census a week later,
  after the week before's file (the same rows with every pathway date a week earlier, less
  `--new-share` of the patients, 3% by default, who are new this week) was loaded and linked by
  another process; the refresh loaded alone, and loaded then linked (as every load path runs
  it);
- with `--upload-rows N`, an HTTP upload of N rows through the API (file sent → linked answer)
  into a store already holding another provider's linked load of the same people;
- CPU time of the ingest process (with its SQLite writer) and, when the PostgreSQL server runs
  on this machine, of the backends serving the benchmark's database: on a shared or busy
  machine these say more than wall time.

Each measurement runs in its own child process so peak RSS is that step's alone.

    .venv/bin/python bench/bench_ingest.py [--rows 1000000] [--postgres-url URL] [--refresh]
        [--upload-rows 50000]

Record results in bench/RESULTS.md (machine, date, figures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

CENSUS = dt.date(2026, 11, 22)
DEFAULT_PG = os.environ.get("PTL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _high_water_mib(pid: int | str = "self") -> float:
    """Peak resident memory of a process since it started its program (VmHWM). Not
    `ru_maxrss`, which also counts the moments between fork and exec when a child shares its
    parent's memory: that would charge the SQLite writer, or this child, with the memory of
    the process that started it."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if pid == "self" else 0.0


class _WriterPeak:
    """Follows the peak memory of this process's SQLite writer processes (read until each
    exits: VmHWM only grows)."""

    def __init__(self) -> None:
        import threading

        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.05):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        if stat.read().rsplit(")", 1)[1].split()[1] != me:
                            continue
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        if b"ingest.sqlite_writer" not in cmdline.read():
                            continue
                except OSError:
                    continue
                self.peaks[int(pid)] = max(self.peaks.get(int(pid), 0.0), _high_water_mib(pid))

    def stop(self) -> float:
        """The largest writer's peak (MiB)."""
        self._stop.set()
        self._thread.join()
        return max(self.peaks.values(), default=0.0)


def _peak_mib(writer_mib: float = 0.0) -> float:
    """Peak memory of this process plus that of its SQLite writer process, which runs beside
    it: a conservative figure for the whole load."""
    return _high_water_mib() + writer_mib


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the SQLite writer process)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _server_cpu_seconds(database: str) -> float:
    """CPU time so far of the PostgreSQL backends serving `database`, when the server runs on
    this machine (its processes name the database they serve); 0 when it cannot be seen."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if f" {database} ".encode() not in cmdline.read():
                    continue
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return total


def child_read(path: str) -> dict[str, float]:
    import polars as pl

    started = time.perf_counter()
    frame = pl.read_csv(path, infer_schema=False)
    return {"seconds": time.perf_counter() - started, "rows": frame.height, "peak_mib": _peak_mib()}


def _writer_settled() -> None:
    """A SQLite writer process checkpoints its WAL after the commit is answered: wait for it,
    so that its CPU time is counted and the next step has the machine to itself."""
    import threading

    for thread in threading.enumerate():
        if thread.name == "ptl-sqlite-writer-exit":
            thread.join()


def child_ingest(url: str, path: str, census: str = CENSUS.isoformat(), mode: str = "load",
                 provider: str = "RXX") -> dict[str, float]:
    """Ingest `path` (census `census`) into the store at `url`, migrated first: the load alone
    (`mode` "load"), or the load and then identity linking, as every load path runs it
    ("link")."""
    from ingest.pipeline import ingest_file
    from ptl.settings import Settings
    from ptl.store import migrate
    from ptl.store.engine import make_engine

    engine = make_engine(url)
    migrate.upgrade(engine)
    settings = Settings(database_url=url)
    writer = _WriterPeak()
    database = engine.url.database or ""
    server_before = _server_cpu_seconds(database) if engine.dialect.name == "postgresql" else 0.0
    started, cpu_before = time.perf_counter(), _cpu_seconds()
    result = ingest_file(engine, Path(path), provider_code=provider, profile="canonical",
                         census_date=dt.date.fromisoformat(census), settings=settings,
                         link=mode == "link")
    seconds = time.perf_counter() - started
    _writer_settled()
    settled = time.perf_counter() - started
    # The backends are still open in the pool, so their CPU time is still there to read.
    server_cpu = (_server_cpu_seconds(database) - server_before) if engine.dialect.name == "postgresql" else 0.0
    cpu = _cpu_seconds() - cpu_before
    assert result.status == "loaded", result.message
    link_s = 0.0
    if result.linking is not None:
        assert result.linking.status == "linked", result.linking.message
        link_s = float(result.linking.report["seconds"]) if result.linking.report else 0.0
    from sqlalchemy import text

    with engine.connect() as connection:
        timings = connection.execute(text(
            "SELECT read_seconds, validate_seconds, load_seconds FROM feed WHERE id = :id"),
            {"id": result.feed_id}).one()
    return {"seconds": seconds, "rows": result.rows_loaded, "peak_mib": _peak_mib(writer.stop()),
            "read_s": timings[0], "validate_derive_s": timings[1], "load_s": timings[2],
            "client_cpu_s": cpu, "server_cpu_s": server_cpu, "settled_s": settled, "link_s": link_s}


def child_upload(url: str, path: str, census: str) -> dict[str, float]:
    """POST `path` as provider RYY's extract to the real API (in this process, Litestar's test
    client over the ASGI app) into the store at `url`, which already holds RXX's linked load of
    the same people: the time from sending the file to the answer, which comes after linking."""
    from litestar.testing import TestClient

    from api.app import create_app
    from ptl.settings import Settings
    from ptl.store.access import create_key
    from ptl.store.engine import make_engine

    engine = make_engine(url)
    settings = Settings(database_url=url, rate_limit_per_minute=100_000, pseudonym_key="bench")
    key = create_key(engine, "RYY", "provider", "bench upload")[1]
    content = Path(path).read_bytes()
    with TestClient(app=create_app(settings, engine)) as client:
        started = time.perf_counter()
        answer = client.post("/api/v1/feeds", headers={"Authorization": f"Bearer {key}"},
                             files={"file": ("extract.csv", content, "text/csv")},
                             data={"profile": "canonical", "census_date": census})
        seconds = time.perf_counter() - started
    assert answer.status_code == 201, answer.text[:500]
    body = answer.json()
    assert body["linking"]["status"] == "linked", body["linking"]
    return {"seconds": seconds, "rows": body["rows_loaded"], "peak_mib": _peak_mib(),
            "link_s": float(body["linking"]["report"]["seconds"])}


def child_raw_copy(url: str, with_identities: str = "") -> dict[str, float]:
    """COPY the already-normalised pathway rows (exported from the store) into a twin table;
    with `with_identities`, then also the source identities the load wrote, into a twin with
    that table's two unique indexes (all that a load must write, by plain COPY on one
    connection)."""
    import io

    from ptl.store.engine import make_engine

    engine = make_engine(url)
    with engine.connect() as connection:
        # The driver's own connection and commits: SQLAlchemy's `commit` would not see
        # statements run on a raw cursor, and the COPY would be rolled back uncounted.
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        tables = {"pathway": "INCLUDING DEFAULTS"}
        if with_identities:
            tables["source_identity"] = "INCLUDING DEFAULTS INCLUDING INDEXES"
        exported: dict[str, bytes] = {}
        for table, like in tables.items():
            buffer = io.BytesIO()
            with cursor.copy(f"COPY (SELECT * FROM {table}) TO STDOUT WITH (FORMAT csv)") as copy:
                for chunk in copy:
                    buffer.write(chunk)
            exported[table] = buffer.getvalue()
            cursor.execute(f"DROP TABLE IF EXISTS {table}_twin")
            cursor.execute(f"CREATE TABLE {table}_twin (LIKE {table} {like})")
        driver.commit()
        server_before = _server_cpu_seconds(engine.url.database or "")
        started = time.perf_counter()
        for table, data in exported.items():
            with cursor.copy(f"COPY {table}_twin FROM STDIN WITH (FORMAT csv)") as copy:
                for offset in range(0, len(data), 1 << 20):
                    copy.write(data[offset : offset + (1 << 20)])
        driver.commit()
        seconds = time.perf_counter() - started
        server_cpu = _server_cpu_seconds(engine.url.database or "") - server_before
        rows = cursor.execute("SELECT COUNT(*) FROM pathway_twin").fetchone()[0]  # type: ignore[index]
    return {"seconds": seconds, "rows": rows, "peak_mib": _peak_mib(), "server_cpu_s": server_cpu}


def run_child(*args: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "_child", *args], check=True, capture_output=True, text=True,
        env=dict(os.environ, PTL_LOG_FORMAT="json", PTL_LOG_LEVEL="WARNING"),
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--refresh", action="store_true",
                        help="also time a weekly refresh: the same rows a week later with a few new patients, "
                             "loaded alone and loaded then linked")
    parser.add_argument("--new-share", type=float, default=0.03,
                        help="share of the refresh's patients who were not in the week before (default 0.03)")
    parser.add_argument("--upload-rows", type=int, default=0,
                        help="also time an HTTP upload of this many rows (e.g. 50000) from the file sent "
                             "to the linked answer, into a store holding another provider's linked load")
    args = parser.parse_args()

    import sqlalchemy as sa

    from ptl.store.engine import make_engine
    from ptl.synth import write_canonical_extract

    with tempfile.TemporaryDirectory(prefix="ptl-bench-") as tmp:
        path = Path(tmp) / "extract.csv"
        started = time.perf_counter()
        write_canonical_extract(path, rows=args.rows, census_date=CENSUS, provider_code="RXX", seed=7)
        print(f"machine: {os.cpu_count()} cores; rows: {args.rows:,}; file {path.stat().st_size / 2**20:.0f} MiB "
              f"(generated in {time.perf_counter() - started:.1f}s)")
        week_before = Path(tmp) / "extract_week_before.csv"
        week_before_census = (CENSUS - dt.timedelta(days=7)).isoformat()
        if args.refresh:
            import polars as pl

            from ptl.fields import FIELDS

            # The week before: every pathway date a week earlier (so no row of it falls after
            # its census), the same identities, less `--new-share` of the patients (who
            # arrive this week: new identities for linking, as in a real week).
            frame = pl.read_csv(path, infer_schema=False)
            shifted = [f.name for f in FIELDS if f.kind == "date" and f.name in frame.columns
                       and f.name not in ("date_of_birth", "census_date")]
            patients = frame.get_column("local_patient_id").unique().sort()
            new = patients.sample(fraction=args.new_share, seed=3) if args.new_share else patients.head(0)
            (frame.filter(~pl.col("local_patient_id").is_in(new.implode()))
             .with_columns(pl.lit(week_before_census).alias("census_date"),
                           *[(pl.col(c).str.to_date("%Y-%m-%d", strict=False) - dt.timedelta(days=7))
                             .dt.strftime("%Y-%m-%d").alias(c) for c in shifted])
             .write_csv(week_before))
        results: dict[str, dict[str, float]] = {"polars read_csv": run_child("read", str(path))}
        if not args.skip_sqlite:
            results["ingest -> SQLite"] = run_child("ingest", f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", str(path))
            if args.refresh:
                refresh = f"sqlite:///{Path(tmp) / 'refresh.sqlite3'}"
                run_child("ingest", refresh, str(week_before), week_before_census, "link")
                results["refresh -> SQLite"] = run_child("ingest", refresh, str(path))
                refresh = f"sqlite:///{Path(tmp) / 'refresh_linked.sqlite3'}"
                run_child("ingest", refresh, str(week_before), week_before_census, "link")
                results["refresh+link -> SQLite"] = run_child(
                    "ingest", refresh, str(path), CENSUS.isoformat(), "link")
        name = f"ptl_bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.engine.make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
        try:
            results["ingest -> PostgreSQL"] = run_child("ingest", url, str(path))
            results["raw COPY -> PostgreSQL"] = run_child("copy", url)
            results["  + identities"] = run_child("copy", url, "with-identities")
            if args.refresh:
                with admin.connect() as connection:
                    connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                    connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
                run_child("ingest", url, str(week_before), week_before_census, "link")
                results["refresh -> PostgreSQL"] = run_child("ingest", url, str(path))
                with admin.connect() as connection:
                    connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                    connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
                run_child("ingest", url, str(week_before), week_before_census, "link")
                results["refresh+link -> PostgreSQL"] = run_child(
                    "ingest", url, str(path), CENSUS.isoformat(), "link")
            if args.upload_rows:
                small = Path(tmp) / "upload.csv"
                write_canonical_extract(small, rows=args.upload_rows, census_date=CENSUS,
                                        provider_code="RYY", seed=11)
                first = Path(tmp) / "upload_other.csv"
                write_canonical_extract(first, rows=args.upload_rows, census_date=CENSUS,
                                        provider_code="RXX", seed=11)
                for label, store in (("SQLite", f"sqlite:///{Path(tmp) / 'upload.sqlite3'}"), ("PostgreSQL", url)):
                    if label == "SQLite" and args.skip_sqlite:
                        continue
                    if label == "PostgreSQL":
                        with admin.connect() as connection:
                            connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
                    run_child("ingest", store, str(first), CENSUS.isoformat(), "link")
                    results[f"upload {args.upload_rows // 1000}k -> {label}"] = run_child(
                        "upload", store, str(small), CENSUS.isoformat())
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    print(f"{'step':<24}{'seconds':>9}{'rows/s':>12}{'peak MiB':>10}  detail")
    for step, r in results.items():
        detail = ""
        if "load_s" in r:
            detail = (f"read {r['read_s']:.2f}s, validate+derive {r['validate_derive_s']:.2f}s, "
                      f"store {r['load_s']:.2f}s (overlaps validation); CPU: ingest {r['client_cpu_s']:.1f}s")
            if r["settled_s"] - r["seconds"] > 0.05:
                detail += f" (writer's checkpoint done at {r['settled_s']:.2f}s)"
        if r.get("link_s"):
            detail += f"{'; ' if detail else ''}of which linking {r['link_s']:.2f}s"
        if r.get("server_cpu_s"):
            detail += f"{'; ' if detail else 'CPU: '}PostgreSQL server {r['server_cpu_s']:.1f}s"
        print(f"{step:<24}{r['seconds']:>9.2f}{r['rows'] / r['seconds']:>12,.0f}{r['peak_mib']:>10,.0f}  {detail}")
    pg, raw = results["ingest -> PostgreSQL"], results["raw COPY -> PostgreSQL"]
    print(f"PostgreSQL end to end / raw COPY: {pg['seconds'] / raw['seconds']:.2f}x (target <= 2.5x)")
    for store in ("SQLite", "PostgreSQL"):
        alone, linked = results.get(f"refresh -> {store}"), results.get(f"refresh+link -> {store}")
        if alone and linked:
            print(f"{store} weekly refresh, load + link / load alone: "
                  f"{linked['seconds'] / alone['seconds']:.2f}x (target <= 1.5x)")
    both = results["  + identities"]
    print(f"PostgreSQL end to end / raw COPY of pathways and identities: {pg['seconds'] / both['seconds']:.2f}x "
          "(a first load also writes a source identity per new patient)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        kind, rest = sys.argv[2], sys.argv[3:]
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        children: dict[str, Callable[..., dict[str, float]]] = {
            "read": child_read, "ingest": child_ingest, "copy": child_raw_copy, "upload": child_upload}
        outcome = children[kind](*rest)
        print(json.dumps(outcome))
    else:
        main()
