"""`ptl serve` (the HTTP API) and `ptl keys create|list|revoke` (API keys)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ptl.settings import Settings


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="serve the HTTP API (uvicorn, uvloop, httptools)")
    serve.add_argument("--host", help="address to listen on (default PTL_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default PTL_PORT, 8000)")
    serve.set_defaults(handler=_serve)

    keys = subparsers.add_parser("keys", help="create, list or revoke API keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a key (shown once)")
    create.add_argument("--org", required=True, help="ODS code of the organisation holding the key")
    create.add_argument("--role", required=True, choices=("icb", "provider", "analyst", "admin"),
                        help="icb: whole system, identifiable; provider: identifiable for its own "
                             "organisation; analyst: aggregates and pseudonymised rows; admin: keys, "
                             "feeds and audit")
    create.add_argument("--name", help="who or what the key is for (e.g. 'RXX PTL team')")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=_create)
    listing = sub.add_parser("list", help="every key (never the secret)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    revoke = sub.add_parser("revoke", help="revoke a key by its id (it stops working within seconds)")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_revoke)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from api.serve import run
    from ptl.commands.store import open_store

    open_store(settings).dispose()  # refuses clearly when the schema is behind
    host, port = args.host or settings.host, args.port or settings.port
    print(f"serving the shared PTL API on http://{host}:{port} (OpenAPI at /schema); Ctrl-C stops")
    run(settings, host, port)
    return 0


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.cli import CommandError
    from ptl.commands.store import open_store
    from ptl.store.access import AccessError, create_key

    engine = open_store(settings)
    try:
        key_id, key = create_key(engine, args.org, args.role, args.name)
    except AccessError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps({"key_id": key_id, "key": key, "organisation_code": args.org.upper(),
                          "role": args.role, "name": args.name}))
        return 0
    print(f"key {key_id} for {args.org.upper()} ({args.role}) created. It is shown only now; store it safely:")
    print(f"  {key}")
    print(f"use it as: curl -H 'Authorization: Bearer {key}' http://{settings.host}:{settings.port}/api/v1/queue")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.commands.store import open_store
    from ptl.store.access import list_keys

    keys = list_keys(open_store(settings))
    if args.json:
        print(json.dumps([{"key_id": k.key_id, "organisation_code": k.organisation_code, "role": k.role,
                           "name": k.name, "created_at": k.created_at.isoformat(),
                           "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in keys]))
        return 0
    if not keys:
        print("no keys yet: create one with `ptl keys create --org CODE --role ROLE`")
        return 0
    print(f"{'key id':<13} {'org':<8} {'role':<9} {'created':<20} {'state':<22} name")
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "working"
        print(f"{k.key_id:<13} {k.organisation_code:<8} {k.role:<9} {k.created_at:%Y-%m-%d %H:%M:%S}  "
              f"{state:<22} {k.name or ''}")
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.cli import CommandError
    from ptl.commands.store import open_store
    from ptl.store.access import revoke_key

    if not revoke_key(open_store(settings), args.key_id):
        raise CommandError(f"there is no working key {args.key_id}: see `ptl keys list`")
    print(f"key {args.key_id} revoked: it stops working within a few seconds")
    return 0
