"""API benchmark: 1,000,000 open pathways from 10 providers in PostgreSQL, served by one worker.

    .venv/bin/python bench/bench_api.py [--pathways 1000000] [--providers 10]

Creates a throw-away PostgreSQL database (from PTL_BENCH_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test), loads two weekly censuses per provider through
`ingest_file` (so flows exist for site stats and equalisation), starts `api.serve.run` (uvicorn,
uvloop, httptools, one worker) and a bare Litestar JSON endpoint on loopback, and measures p50/p99
latency and throughput at 1 and 8 concurrent keep-alive clients with bounded request counts. Then
it loads one more feed and times the first request to each view (the cold rebuild: the API
process has served every view of the data before, and keeps its feed frame cache in a temporary
PTL_VAR_DIR). The client is
a minimal asyncio HTTP/1.1 client in this process, so the servers get the other core.

Targets (issue 4): warm queue page p99 ≤ 50 ms and ≥ 1,000 req/s at 8 clients; warm aggregate
views p99 ≤ 50 ms; cold rebuild of every view after a load ≤ 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.pipeline import ingest_file  # noqa: E402
from ptl.settings import Settings  # noqa: E402
from ptl.store import migrate  # noqa: E402
from ptl.store.access import create_key  # noqa: E402
from ptl.store.engine import make_engine  # noqa: E402

ADMIN_URL = os.environ.get("PTL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CENSUS = dt.date(2025, 1, 5)
TFCS = np.array(["110", "130", "101", "502", "120", "100", "330", "301", "140", "150"])
PRIORITIES = np.array(["P2", "P3", "P4", "P4", "P4", "", "P5", "P1b"])
ETHNIC = np.array(["A", "A", "A", "B", "H", "J", "M", "N", "Z", "99", "D", "R"])

BARE_APP = """
import msgspec, uvicorn
from litestar import Litestar, get
class Hello(msgspec.Struct):
    status: str
    items: list[int]
@get("/bare")
async def bare() -> Hello:
    return Hello(status="ok", items=[1, 2, 3])
uvicorn.run(Litestar([bare]), host="127.0.0.1", port={port}, loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""
API_SERVER = """
from api.serve import run
from ptl.settings import Settings
run(Settings.from_env(), "127.0.0.1", {port})
"""


# --- data --------------------------------------------------------------------------------------


def provider_extract(provider: str, index: int, rows: int, census: dt.date, week: int, rng_seed: int) -> pl.DataFrame:
    """One provider's census: pathway numbers shift by 2% a week (additions and removals)."""
    rng = np.random.default_rng([rng_seed, index, week])
    start = int(rows * 0.02 * week)
    numbers = np.arange(start, start + rows)
    person_rng = np.random.default_rng([rng_seed, index])  # stable per pathway number
    waits = (person_rng.gamma(2.0, 90.0, size=start + rows)[numbers] + 7 * week).astype(np.int64)
    waits = np.minimum(waits, 1500)
    clock_start = np.datetime64(census) - waits.astype("timedelta64[D]")
    dob = np.datetime64("1930-01-01") + (person_rng.integers(0, 30000, size=start + rows)[numbers]).astype("timedelta64[D]")
    tci = rng.random(rows) < 0.08
    return pl.DataFrame({
        "pathway_id": [f"{provider}{n:09d}" for n in numbers],
        "local_patient_id": [f"L{provider}{n:09d}" for n in numbers],
        "family_name": [f"FAM{n % 9973}" for n in numbers],
        "given_name": [f"GIV{n % 613}" for n in numbers],
        "date_of_birth": dob.astype("datetime64[D]").astype(str),
        "sex": np.where(numbers % 2 == 0, "1", "2"),
        "postcode": "LS1 4AP",
        "ethnic_category": ETHNIC[numbers % len(ETHNIC)],
        "rtt_start_date": clock_start.astype(str),
        "rtt_status": "20",
        "waiting_list_type": np.where(numbers % 3 == 0, "ORTT", "IRTT"),
        "treatment_function_code": TFCS[(numbers * 7 + index) % len(TFCS)],
        "clinical_priority": PRIORITIES[numbers % len(PRIORITIES)],
        "site_code": np.where(numbers % 3 == 0, f"{provider}02", f"{provider}01"),
        "tci_date": np.where(tci, str(census + dt.timedelta(days=14)), ""),
        "last_validated_date": (np.datetime64(census) - (numbers % 200).astype("timedelta64[D]")).astype(str),
        "census_date": str(census),
    })


def load_system(engine: sa.Engine, folder: Path, providers: list[str], per_provider: int, settings: Settings) -> float:
    started = time.perf_counter()
    for week, census in ((0, CENSUS - dt.timedelta(days=7)), (1, CENSUS)):
        for index, provider in enumerate(providers):
            path = folder / f"{provider}-{census}.csv"
            provider_extract(provider, index, per_provider, census, week, 7).write_csv(path)
            result = ingest_file(engine, path, provider_code=provider, profile="canonical", settings=settings)
            assert result.status == "loaded", result.message
            path.unlink()
        print(f"  census {census}: {len(providers)} providers loaded ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


# --- load generation ---------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        return status, len(body)
    size = 0
    while True:  # chunked
        chunk_head = await reader.readuntil(b"\r\n")
        length = int(chunk_head.strip(), 16)
        await reader.readexactly(length + 2)
        size += length
        if length == 0:
            return status, size


async def _client(port: int, request: bytes, count: int, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            writer.write(request)
            status, _ = await _read_response(reader)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


def _request(path: str, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: keep-alive\r\n\r\n".encode()


async def _run(port: int, path: str, key: str | None, clients: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[int] = []
    request = _request(path, key)
    started = time.perf_counter()
    await asyncio.gather(*[_client(port, request, total // clients, latencies, errors) for _ in range(clients)])
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "rps": len(latencies) / wall, "errors": float(len(errors))}


def measure(port: int, path: str, key: str | None, clients: int, total: int) -> dict[str, float]:
    return asyncio.run(_run(port, path, key, clients, total))


def first_request(port: int, path: str, key: str) -> tuple[float, int]:
    async def once() -> tuple[float, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.perf_counter()
        writer.write(_request(path, key))
        status, _ = await _read_response(reader)
        writer.close()
        return time.perf_counter() - t0, status
    return asyncio.run(once())


def wait_until_up(port: int, path: str, seconds: float = 60) -> None:
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)  # noqa: S310 - loopback
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not start")


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pathways", type=int, default=1_000_000, help="open pathways in the current census")
    parser.add_argument("--providers", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement at 8 clients")
    args = parser.parse_args()

    name = f"ptl_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    servers: list[subprocess.Popen[bytes]] = []
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up below when stopped
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        settings = Settings(database_url=url, rate_limit_per_minute=10**9, pseudonym_key="bench")
        providers = [f"R{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(args.providers)]
        per_provider = args.pathways // args.providers
        print(f"loading {args.pathways:,} open pathways x 2 censuses from {len(providers)} providers into PostgreSQL …")
        with tempfile.TemporaryDirectory(prefix="ptl-bench-") as folder:
            load_seconds = load_system(engine, Path(folder), providers, per_provider, settings)
            print(f"  loaded in {load_seconds:.0f} s")
            icb = create_key(engine, "QWO", "icb", "bench")[1]
            analyst = create_key(engine, "QWO", "analyst", "bench")[1]

            env = {**os.environ, "PTL_DATABASE_URL": url, "PTL_RATE_LIMIT_PER_MINUTE": str(10**9),
                   "PTL_PSEUDONYM_KEY": "bench", "PTL_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
                   "PTL_VAR_DIR": folder}  # the API's feed frame cache, dropped with the folder
            servers.append(subprocess.Popen([sys.executable, "-c", BARE_APP.replace("{port}", "8911")], env=env))
            servers.append(subprocess.Popen([sys.executable, "-c", API_SERVER.replace("{port}", "8912")], env=env))
            wait_until_up(8911, "/bare")
            wait_until_up(8912, "/health")

            views = {
                "queue first page, T&O, icb (identifiable, audited)": ("/api/v1/queue?treatment_function=110&limit=100", icb),
                "queue first page, T&O, analyst (pseudonymised)": ("/api/v1/queue?treatment_function=110&limit=100", analyst),
                "sites/stats": ("/api/v1/sites/stats", analyst),
                "equity by IMD quintile": ("/api/v1/equity?by=imd_quintile", analyst),
                "equalisation T&O": ("/api/v1/equalisation?treatment_function=110&patient_limit=100", analyst),
            }
            print("\nfirst request after the load (snapshot read + view computed):")
            cold_total = 0.0
            failing: set[str] = set()
            for label, (path, key) in views.items():
                seconds, status = first_request(8912, path, key)
                cold_total += seconds
                print(f"  {label:<55} {seconds * 1000:8.0f} ms  (HTTP {status})")
                if status != 200:
                    failing.add(label)  # measuring errors would only measure the error path
            print(f"  {'all views, in turn':<55} {cold_total * 1000:8.0f} ms")

            print(f"\n{'endpoint':<55} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}")
            targets = {"bare Litestar JSON endpoint (ceiling)": ("/bare", None, 8911), **{
                label: (path, key, 8912) for label, (path, key) in views.items()}}
            for label, (path, key, port) in targets.items():
                if label in failing:
                    print(f"{label:<55} skipped: the view answered an error")
                    continue
                measure(port, path, key, 4, 200)  # warm-up
                for clients, total in ((1, max(args.requests // 4, 100)), (8, args.requests)):
                    r = measure(port, path, key, clients, total)
                    print(f"{label:<55} {clients:>7} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f} {r['errors']:6.0f}",
                          flush=True)

            print("\nafter one more provider feed (a new data version), first request to each view:")
            path = Path(folder) / "reload.csv"
            provider_extract(providers[0], 0, per_provider, CENSUS + dt.timedelta(days=7), 2, 7).write_csv(path)
            t0 = time.perf_counter()
            result = ingest_file(engine, path, provider_code=providers[0], profile="canonical", settings=settings)
            print(f"  feed {result.feed_id} {result.status} in {time.perf_counter() - t0:.1f} s")
            cold_total = 0.0
            for label, (path_q, key) in views.items():
                seconds, status = first_request(8912, path_q, key)
                cold_total += seconds
                print(f"  {label:<55} {seconds * 1000:8.0f} ms  (HTTP {status})")
            print(f"  {'cold rebuild of every view':<55} {cold_total * 1000:8.0f} ms  (target ≤ 5000)")
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
