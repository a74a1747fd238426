"""`ptl synth` (a synthetic system of provider extracts) and `ptl demo` (generate, load, show)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from ptl.settings import Settings


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD)") from None


def _add_system_options(parser: argparse.ArgumentParser, patients: int, weeks: int) -> None:
    parser.add_argument("--trusts", type=int, default=3, help="NHS trusts (default 3)")
    parser.add_argument("--independents", type=int, default=2, help="independent-sector providers (default 2)")
    parser.add_argument("--patients", type=int, default=patients, help=f"people on the lists (default {patients:,})")
    parser.add_argument("--weeks", type=int, default=weeks, help=f"weekly censuses per provider (default {weeks})")
    parser.add_argument("--census-date", type=_date, help="newest census (default: last Sunday)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--imd", type=Path, help="real IMD 2019 File 1 CSV to draw LSOAs from")


def register(subparsers: Any) -> None:
    synth = subparsers.add_parser("synth", help="write a synthetic system of provider extracts with ground truth")
    synth.add_argument("--out", type=Path, required=True, help="directory to write")
    _add_system_options(synth, patients=20_000, weeks=1)
    synth.add_argument("--clean", action="store_true", help="plant no bad rows")
    synth.set_defaults(handler=_synth)

    demo = subparsers.add_parser("demo", help="generate a synthetic system, load it and show what loaded")
    demo.add_argument("--out", type=Path, help="where to write the extracts (default VAR/demo)")
    _add_system_options(demo, patients=20_000, weeks=4)
    demo.add_argument("--no-serve", action="store_true", help="stop after loading (do not start the API)")
    demo.set_defaults(handler=_demo)


def _generate(args: argparse.Namespace, out: Path, bad_rows: bool) -> Any:
    from ptl.synth import generate_system

    return generate_system(
        out, trusts=args.trusts, independents=args.independents, patients=args.patients,
        weeks=args.weeks, census_date=args.census_date, seed=args.seed, imd_path=args.imd,
        bad_rows=bad_rows,
    )


def _synth(args: argparse.Namespace, settings: Settings) -> int:
    system = _generate(args, args.out, bad_rows=not args.clean)
    print(f"wrote {len(system.feeds)} extracts for {len(system.providers)} providers to {args.out}")
    for feed in system.feeds:
        print(f"  {feed.provider_code}  {feed.census_date}  {feed.file_format:<7} {feed.rows:>7,} rows  "
              f"profile {Path(feed.profile).name}")
    print(f"ground truth in {system.truth_dir}")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    out = args.out or settings.var_dir / "demo"
    # The demo prints its own one-line-per-feed summary; per-feed log lines would repeat it.
    quieted = {name: logging.getLogger(name).level for name in ("ptl.ingest", "ptl.identity")}
    if settings.log_level.upper() == "INFO":
        for name in quieted:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        engine = _load_demo(args, settings, out)
    finally:  # the loggers speak again for whatever runs next in this process (the API)
        for name, level in quieted.items():
            logging.getLogger(name).setLevel(level)
    if args.no_serve:
        print("\nLook at it:")
        print("  ptl feeds list                 # every feed; * marks each provider's current snapshot")
        print("  ptl feeds show FEED_ID         # rejected rows with row number, column and reason")
        print("  ptl link review                # identity conflicts, not merged silently")
        print("  ptl capacity list              # declared weekly capacity and what is in force")
        print("  ptl ingest FILE --provider CODE --profile PROFILE.toml   # load your own extract")
        return 0
    return _serve_demo(engine, settings)


def _load_demo(args: argparse.Namespace, settings: Settings, out: Path) -> Any:
    """Steps 1-6 of the demo: store, synthetic system, reference data, load, link, capacity."""
    from ingest.pipeline import ingest_file
    from ptl.refdata.imd import load_imd
    from ptl.refdata.postcodes import load_postcodes
    from ptl.store import migrate
    from ptl.store.engine import make_engine

    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    print(f"1. store ready at {settings.database_url}")
    system = _generate(args, out, bad_rows=True)
    print(f"2. generated {len(system.feeds)} weekly extracts from {len(system.providers)} providers in {out}")
    imd_file = args.imd or out / "refdata" / "imd2019_lsoa11.csv"
    print(f"3. reference data: {load_imd(engine, imd_file):,} LSOAs with IMD 2019 deciles, "
          f"{load_postcodes(engine, out / 'refdata' / 'postcodes.csv'):,} postcodes")
    print("4. ingesting (each provider's file in its own dialect and profile):")
    loaded = 0
    for feed in system.feeds:
        # One job: every file is loaded, then linked once below (nothing reads in between).
        result = ingest_file(engine, feed.path, provider_code=feed.provider_code, profile=feed.profile,
                             census_date=feed.census_date, settings=settings, link=False)
        print(f"   {result.status:<9} feed {result.feed_id:>3}  {feed.provider_code}  {feed.census_date}  "
              f"{feed.file_format:<7} read {result.rows_read:>6,}  loaded {result.rows_loaded:>6,}  "
              f"rejected {result.rows_rejected:>4,}  warnings {result.rows_warned:>4,}")
        loaded += result.status == "loaded"
    if not loaded:
        print("   nothing new: every extract was already loaded (the same files give the same feeds)")
    from ptl.identity import link

    report = link(engine, settings)
    print(f"5. linked {report.identities:,} provider records to {report.persons:,} people "
          f"({report.linked_nhs_number:,} on NHS number, {report.linked_probabilistic:,} by "
          f"probabilistic match; {report.reviews_open} identity conflicts to review) in "
          f"{report.seconds:.1f}s")
    if loaded:  # a second run declares nothing again
        _declare_demo_capacity(engine, system.providers)
    return engine


def _declare_demo_capacity(engine: Any, providers: list[dict[str, Any]]) -> None:
    """Declare trauma and orthopaedics capacity for the first trust and the first independent
    provider (a fifth above the removals their history shows), so sites/stats has declared
    figures to show beside the history-based ones."""
    from ptl.declared_capacity import declare
    from ptl.views.filters import ViewFilter
    from ptl.views.sites import site_stats
    from ptl.views.snapshot import load_snapshot

    chosen = [next((p["provider_code"] for p in providers if p["kind"] == kind), None)
              for kind in ("trust", "independent")]
    import logging

    quiet = logging.getLogger("ptl.views.snapshot")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the demo prints its own summary; serving logs rebuilds again
    try:
        snapshot = load_snapshot(engine)
    finally:
        quiet.setLevel(level)
    stats = site_stats(snapshot, ViewFilter(treatment_function_code="110"), ("provider_code",))
    removals = dict(stats.select("provider_code", "weekly_removals").iter_rows())
    declared = []
    for provider in chosen:
        if provider is not None and removals.get(provider):
            weekly = max(1, round(1.2 * removals[provider]))
            declare(engine, provider_code=provider, treatment_function_code="110", weekly_capacity=weekly,
                    note="demo: planned a fifth above recent removals", declared_by="cli:demo")
            declared.append(f"{provider} {weekly:,} a week")
    if declared:
        print(f"6. declared trauma and orthopaedics (110) capacity: {', '.join(declared)} "
              "(`ptl capacity list`)")


def _serve_demo(engine: Any, settings: Settings) -> int:
    """End the demo by serving the API with a ready-made icb key and example requests."""
    from api.serve import run
    from ptl.store.access import create_key

    _key_id, key = create_key(engine, "DEMOICB", "icb", "demo coordinator")
    base = f"http://{settings.host}:{settings.port}"
    curl = f'curl -s -H "Authorization: Bearer {key}"'
    print(f"""
7. serving the API at {base} (OpenAPI: {base}/schema); Ctrl-C stops it.
   A demo key with the icb role (whole system, identifiable; shown once):
     {key}
   Try, in another terminal:
     {curl} "{base}/api/v1/queue?treatment_function=110&limit=5"
     {curl} "{base}/api/v1/sites/stats?by=provider"
     {curl} "{base}/api/v1/sites/stats?by=provider&treatment_function=110"
     {curl} "{base}/api/v1/capacity"
     {curl} "{base}/api/v1/equity?by=imd_quintile"
     {curl} "{base}/api/v1/equity?by=ethnic_group&trend=true"
     {curl} "{base}/api/v1/equalisation?treatment_function=110"
     {curl} "{base}/api/v1/validation?kind=duplicate_pathways"
     {curl} "{base}/api/v1/data-quality"
     {curl} "{base}/api/v1/feeds"
     {curl} "{base}/api/v1/queue?format=csv" -o queue.csv
   Other roles: ptl keys create --org RZA --role provider   (or analyst, admin)
""", flush=True)
    run(settings, settings.host, settings.port)
    return 0
