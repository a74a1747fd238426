"""`ptl db …`: the store's schema."""

from __future__ import annotations

import argparse
from typing import Any

from ptl.settings import Settings


def open_store(settings: Settings, *, require_current: bool = True) -> Any:
    """An engine on the configured store; refuses clearly when migrations are missing."""
    from ptl.cli import CommandError
    from ptl.store import migrate
    from ptl.store.engine import make_engine

    engine = make_engine(settings.database_url)
    if require_current and not migrate.is_current(engine):
        raise CommandError(
            "the store's schema is not up to date: run `ptl db upgrade` first "
            f"(store at revision {migrate.current_revision(engine) or 'none'}, "
            f"code at {migrate.head_revision(engine)})"
        )
    return engine


def register(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="create or upgrade the store's schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="apply every pending migration (safe to repeat)")
    up.set_defaults(handler=_upgrade)
    cur = db_sub.add_parser("current", help="show the store's schema revision")
    cur.set_defaults(handler=_current)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.store import migrate

    engine = open_store(settings, require_current=False)
    migrate.upgrade(engine)
    print(f"store {_redacted(settings.database_url)} is at revision {migrate.current_revision(engine)}")
    return 0


def _current(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.store import migrate

    engine = open_store(settings, require_current=False)
    current, head = migrate.current_revision(engine), migrate.head_revision(engine)
    state = "up to date" if current == head else f"behind (code is at {head}): run `ptl db upgrade`"
    print(f"{_redacted(settings.database_url)}: revision {current or 'none'}, {state}")
    return 0
