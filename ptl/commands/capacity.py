"""`ptl capacity declare|list|withdraw`: providers' declared weekly capacity.

Meanings and the in-force rule: `ptl/declared_capacity.py`. A bad value is one line naming the
option and what to give instead (exit 2), like every `ptl` command.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Final

from ptl.settings import Settings

#: The option each declaration field comes from, for messages.
_OPTIONS: Final[dict[str, str]] = {
    "provider_code": "--provider", "site_code": "--site", "treatment_function_code": "--treatment-function",
    "weekly_capacity": "--weekly", "valid_from": "--valid-from", "note": "--note",
}


def register(subparsers: Any) -> None:
    capacity = subparsers.add_parser(
        "capacity", help="declared weekly capacity (clock stops a week) per provider, site and specialty")
    sub = capacity.add_subparsers(dest="capacity_command", metavar="ACTION", required=True)
    declare = sub.add_parser("declare", help="declare capacity for a scope (supersedes the scope's earlier "
                                             "declarations from --valid-from on)")
    declare.add_argument("--provider", required=True, metavar="CODE", help="ODS code of the provider")
    declare.add_argument("--site", metavar="CODE", help="one site of the provider (default: the whole provider)")
    declare.add_argument("--treatment-function", metavar="CODE",
                         help="treatment function, e.g. 110 (default: every specialty)")
    # Text, so a bad value gets the same message as the API rather than argparse's.
    declare.add_argument("--weekly", required=True, metavar="N", help="clock stops a week the provider can deliver")
    declare.add_argument("--valid-from", metavar="YYYY-MM-DD",
                         help="in force from this date (default: the provider's current census date)")
    declare.add_argument("--note", metavar="TEXT", help="why, or what the figure includes (no patient details)")
    declare.add_argument("--json", action="store_true", help="print the stored declaration as JSON")
    declare.set_defaults(handler=_declare)

    listing = sub.add_parser("list", help="declarations with their status against each current census")
    listing.add_argument("--provider", metavar="CODE", help="only this provider")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)

    withdrawal = sub.add_parser("withdraw", help="withdraw a declaration made in error (kept, marked; what it "
                                                 "superseded counts again)")
    withdrawal.add_argument("declaration_id", type=int, metavar="ID")
    withdrawal.set_defaults(handler=_withdraw)


def _declare(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.cli import CommandError, cli_user
    from ptl.commands.store import open_store
    from ptl.declared_capacity import CapacityError, declare

    engine = open_store(settings)
    try:
        stored = declare(engine, provider_code=args.provider, site_code=args.site,
                         treatment_function_code=args.treatment_function, weekly_capacity=args.weekly,
                         valid_from=args.valid_from, note=args.note, declared_by=cli_user())
    except CapacityError as exc:
        raise CommandError("; ".join(f"{_OPTIONS.get(name, name)}: {reason}" for name, reason in exc.problems)) from None
    if args.json:
        print(json.dumps(stored.as_json(), indent=2))
        return 0
    print(f"capacity declaration {stored.id}: {stored.scope_text()}: {stored.weekly_capacity:,} clock stops "
          f"a week from {stored.valid_from.isoformat()}")
    print("  see it beside the history-based estimate: GET /api/v1/sites/stats "
          "(declared_weekly_capacity, declared_load, declared_expected_wait_weeks)")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.commands.store import open_store
    from ptl.declared_capacity import list_declarations

    declarations = list_declarations(open_store(settings), provider_code=args.provider)
    if args.json:
        print(json.dumps([d.as_json() for d in declarations], indent=2))
        return 0
    if not declarations:
        print("no capacity declared (declare some with `ptl capacity declare --provider CODE --weekly N`)")
        return 0
    print(f"{'id':>5}  {'provider':<8} {'site':<8} {'TFC':<4} {'weekly':>7}  {'valid from':<10}  "
          f"{'status':<10} declared")
    for d in declarations:
        print(f"{d.id:>5}  {d.provider_code:<8} {d.site_code or 'all':<8} {d.treatment_function_code or 'all':<4} "
              f"{d.weekly_capacity:>7,}  {d.valid_from.isoformat():<10}  {d.status or '':<10} "
              f"{d.declared_at:%Y-%m-%d %H:%M} by {d.declared_by}" + (f"  ({d.note})" if d.note else ""))
    return 0


def _withdraw(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.cli import CommandError, cli_user
    from ptl.commands.store import open_store
    from ptl.declared_capacity import AlreadyWithdrawn, UnknownDeclaration, withdraw

    try:
        withdrawn = withdraw(open_store(settings), args.declaration_id, withdrawn_by=cli_user())
    except (UnknownDeclaration, AlreadyWithdrawn) as exc:
        raise CommandError(str(exc)) from None
    print(f"capacity declaration {withdrawn.id} ({withdrawn.scope_text()}, {withdrawn.weekly_capacity:,} a week "
          f"from {withdrawn.valid_from.isoformat()}) withdrawn; it no longer counts")
    return 0
