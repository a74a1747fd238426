"""`ptl offers add|list`, `ptl match`, `ptl transfers list`: mutual aid from the command line.

Errors a user can fix (a bad offer file, an unknown offer id, a run too large) print one line
and exit 2, like every `ptl` command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from ptl.cli import cli_user
from ptl.settings import Settings


def register(subparsers: Any) -> None:
    offers = subparsers.add_parser("offers", help="mutual-aid capacity offers: add from JSON, list")
    offers_sub = offers.add_subparsers(dest="offers_command", metavar="ACTION", required=True)
    add = offers_sub.add_parser("add", help="add the offer(s) in a JSON file (an object or a list of them)")
    add.add_argument("file", type=Path)
    add.set_defaults(handler=_offers_add)
    listing = offers_sub.add_parser("list", help="list stored offers, newest first")
    listing.add_argument("--provider", help="only this offering provider (ODS code)")
    listing.add_argument("--active-on", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                         help="only offers whose window includes this date")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_offers_list)

    match = subparsers.add_parser("match", help="match waiting patients to offers optimally (saved as a run)")
    match.add_argument("--offers", required=True, help="offer ids, comma-separated (e.g. 1,2,3)")
    match.add_argument("--provider", action="append", dest="providers", metavar="CODE",
                       help="only patients of this sending provider (repeatable)")
    match.add_argument("--waiting-list-type", choices=("IRTT", "ORTT"), help="only this RTT list")
    match.add_argument("--min-days", type=int, metavar="DAYS", help="only patients waiting at least this long")
    match.add_argument("--as-of", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                       help="the run date for 'booked within 8 weeks' and offer windows (default today)")
    match.add_argument("--json", action="store_true", help="print the whole run as JSON")
    match.set_defaults(handler=_match)

    transfers = subparsers.add_parser("transfers", help="mutual-aid transfers and their state")
    transfers_sub = transfers.add_subparsers(dest="transfers_command", metavar="ACTION", required=True)
    tlist = transfers_sub.add_parser("list", help="list transfers, oldest first")
    tlist.add_argument("--state", help="proposed, offered_to_patient, accepted, declined or completed")
    tlist.add_argument("--provider", help="sending or receiving provider (ODS code)")
    tlist.add_argument("--run", type=int, help="only transfers from this matching run")
    tlist.add_argument("--limit", type=int, default=1000)
    tlist.add_argument("--json", action="store_true", help="print JSON")
    tlist.set_defaults(handler=_transfers_list)


def _command_error(exc: Exception) -> Exception:
    from ptl.cli import CommandError

    return CommandError(str(exc))


def _offers_add(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.commands.store import open_store
    from ptl.matching.offer import OfferError, add_offer, parse_offer

    if not args.file.exists():
        raise FileNotFoundError(f"{args.file} does not exist")
    try:
        data = json.loads(args.file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _command_error(ValueError(f"{args.file.name} is not JSON ({exc})")) from None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(i, dict) for i in items):
        raise _command_error(ValueError(f"{args.file.name}: expected an offer object or a list of offer objects"))
    engine = open_store(settings)
    try:
        parsed = []
        for number, item in enumerate(items, start=1):  # a file holds a handful of offers
            try:
                parsed.append(parse_offer(item))
            except OfferError as exc:
                where = f"offer {number}: " if len(items) > 1 else ""
                raise _command_error(ValueError(f"{args.file.name}: {where}{exc}")) from None
        stored = [add_offer(engine, offer, created_by=cli_user()) for offer in parsed]
    except OfferError as exc:
        raise _command_error(exc) from None
    for offer in stored:
        print(f"offer {offer.id}: {offer.provider_code} site {offer.site_code}, treatment function "
              f"{offer.treatment_function_code}, {offer.slots} slot(s) {offer.start_date}–{offer.end_date}")
    return 0


def _offers_list(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.commands.store import open_store
    from ptl.matching.offer import list_offers

    offers = list_offers(open_store(settings), provider_code=args.provider, active_on=args.active_on)
    if args.json:
        print(json.dumps([o.as_json() for o in offers], indent=2))
        return 0
    if not offers:
        print("no offers (add one with `ptl offers add FILE.json`)")
    for o in offers:
        limits = [f"{k}={v}" for k, v in (("max_asa", o.max_asa), ("max_bmi", o.max_bmi), ("min_age", o.min_age),
                                          ("max_age", o.max_age), ("max_miles", o.max_distance_miles)) if v is not None]
        limits += [flag for flag, on in (("day case only", o.day_case_only),
                                         ("no interpreter", not o.interpreter_support),
                                         ("ICB only", not o.accepts_out_of_area)) if on]
        if o.priorities:
            limits.append("priorities " + "/".join(o.priorities))
        if o.procedure_codes:
            limits.append("procedures " + "/".join(o.procedure_codes))
        print(f"{o.id:>5}  {o.provider_code:<6} {o.site_code:<8} TFC {o.treatment_function_code}  "
              f"{o.slots:>5} slots  {o.start_date}–{o.end_date}  {', '.join(limits) or 'no limits'}")
    return 0


def _parse_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise _command_error(ValueError(f"--offers '{text}' must be offer ids separated by commas, e.g. 1,2,3")) from None
    if not ids:
        raise _command_error(ValueError("--offers needs at least one offer id"))
    return ids


def _match(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.commands.store import open_store
    from ptl.matching.eligibility import CandidateFilter, MatchingError
    from ptl.matching.offer import UnknownOffer
    from ptl.matching.run import get_run, run_matching

    engine = open_store(settings)
    filters = CandidateFilter(
        provider_codes=tuple(p.upper() for p in args.providers) if args.providers else None,
        waiting_list_type=args.waiting_list_type, min_days_waited=args.min_days)
    try:
        stored = run_matching(engine, _parse_ids(args.offers), created_by=cli_user(), filters=filters,
                              as_of=args.as_of, margin_points=settings.equity_margin_points)
    except (MatchingError, UnknownOffer) as exc:
        raise _command_error(exc) from None
    if args.json:
        json.dump(get_run(engine, stored.run_id, unassigned_limit=None), sys.stdout, indent=2, default=str)
        print()
        return 0
    result = stored.result
    best, greedy = result.optimal.objective, result.baseline.objective if result.baseline else None
    print(f"matching run {stored.run_id}: {result.candidates:,} on the list, {result.eligible:,} eligible, "
          f"{best.assigned:,} assigned in {result.seconds:.2f} s ({result.optimal.solver})")
    bands = ", ".join(f"{band} {count}" for band, count in best.assigned_by_band.items())
    unknown = f" (+{best.unknown_distances} with no known distance)" if best.unknown_distances else ""
    print(f"  optimal: {bands}; {best.total_days_waited:,} days waited; {best.total_distance_miles:,.1f} miles{unknown}")
    if greedy is not None:
        bands = ", ".join(f"{band} {count}" for band, count in greedy.assigned_by_band.items())
        print(f"  greedy:  {bands}; {greedy.total_days_waited:,} days waited; "
              f"{greedy.total_distance_miles:,.1f} miles")
    reasons = result.unassigned.group_by("reason").len().sort("reason").iter_rows()
    print("  unassigned: " + (", ".join(f"{reason} {count:,}" for reason, count in reasons) or "none"))
    for flag in result.equity["flags"]:
        if flag["flagged"]:
            print(f"  EQUITY FLAG: {flag['message']}")
    if not result.equity["flagged"]:
        print(f"  equity guard: no group under-represented by more than {settings.equity_margin_points:g} points")
    print(f"  details: `ptl match … --json`, or GET /api/v1/matching/runs/{stored.run_id}")
    return 0


def _transfers_list(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.commands.store import open_store
    from ptl.matching.transfer import TransferError, list_transfers

    try:
        rows = list_transfers(open_store(settings), state=args.state, provider_code=args.provider,
                              run_id=args.run, limit=args.limit)
    except TransferError as exc:
        raise _command_error(exc) from None
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no transfers")
    for t in rows:
        print(f"{t['id']:>5}  {t['state']:<19} {t['from_provider_code']:<6} → {t['to_provider_code']:<6} "
              f"offer {t['offer_id']:<5} TFC {t['treatment_function_code']}  {t['clinical_priority'] or '-':<4} "
              f"{t['days_waited'] if t['days_waited'] is not None else '-':>5} days  "
              f"proposed {t['proposed_at']:%Y-%m-%d} by {t['proposed_by']}"
              + (f"  declined: {t['decline_reason']}" if t["state"] == "declined" else ""))
    return 0
