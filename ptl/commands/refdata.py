"""`ptl refdata load imd|postcodes|ods FILE`: reference data users download themselves."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ptl.settings import Settings

KINDS = {
    "imd": "IMD 2019 by 2011 LSOA (GOV.UK File 1, CSV or XLSX)",
    "postcodes": "postcode → LSOA (ONS NSPL or ONSPD CSV)",
    "ods": "NHS trusts (ODS etr.csv, headerless)",
    "sites": "treatment sites with coordinates (CSV: site_code, provider_code, name, postcode, lat, long)",
}


def register(subparsers: Any) -> None:
    refdata = subparsers.add_parser("refdata", help="load reference data (IMD, postcodes, ODS)")
    sub = refdata.add_subparsers(dest="refdata_command", metavar="ACTION", required=True)
    load = sub.add_parser("load", help="load a reference file, replacing the previous one")
    load.add_argument("kind", choices=sorted(KINDS), help="; ".join(f"{k}: {v}" for k, v in KINDS.items()))
    load.add_argument("file", type=Path)
    load.set_defaults(handler=_load)


def _load(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.commands.store import open_store

    engine = open_store(settings)
    if not args.file.exists():
        raise FileNotFoundError(f"{args.file} does not exist")
    if args.kind == "imd":
        from ptl.refdata.imd import load_imd

        rows = load_imd(engine, args.file)
    elif args.kind == "postcodes":
        from ptl.refdata.postcodes import load_postcodes

        rows = load_postcodes(engine, args.file)
    elif args.kind == "sites":
        from ptl.refdata.sites import load_sites

        rows = load_sites(engine, args.file)
    else:
        from ptl.refdata.ods import load_ods

        rows = load_ods(engine, args.file)
    print(f"loaded {rows:,} {args.kind} rows from {args.file.name}")
    return 0
