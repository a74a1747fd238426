"""The `ptl` command.

Each area registers its own subcommands (`register(subparsers)` in the modules listed in
`COMMAND_MODULES`) and imports its heavy dependencies inside the handlers, so `ptl --help`
stays fast. User errors (`IngestError`, `RefdataError`, `CommandError`) print one clear line
and exit 2; nothing a user did wrong ends in a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import sys
from collections.abc import Sequence

#: Modules that add subcommands. Each defines `register(subparsers) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "ptl.commands.store",
    "ptl.commands.refdata",
    "ingest.commands",
    "ptl.commands.synth",
    "ptl.identity.commands",
    "ingest.sources.commands",
    "api.commands",
    "ptl.matching.commands",
    "ptl.commands.capacity",
)


class CommandError(Exception):
    """A command cannot do what was asked; the message says why and what to do."""


def cli_user() -> str:
    """Who made a decision from the command line, as recorded beside it (`cli:<login>`)."""
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli:unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptl",
        description="System-wide shared patient tracking list (PTL) for an integrated care board.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ptl.logs import configure_logging
    from ptl.settings import Settings

    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    user_errors = _user_error_types()
    from sqlalchemy.exc import OperationalError

    from ingest.sqlite_writer import WriterFailed

    try:
        return int(args.handler(args, settings) or 0)
    except (OperationalError, WriterFailed) as exc:
        # The store is down or misconfigured: say which store (no password) and why, briefly.
        from sqlalchemy.engine import make_url

        store = make_url(settings.database_url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        print(f"ptl {args.command}: cannot use the store {store}: {reason}", file=sys.stderr)
        return 2
    except user_errors as exc:
        print(f"ptl {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _user_error_types() -> tuple[type[BaseException], ...]:
    from ingest.errors import IngestError
    from ptl.refdata.provenance import RefdataError

    return (CommandError, IngestError, RefdataError, FileNotFoundError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
