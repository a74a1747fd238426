"""`/health` (the process answers) and `/ready` (the store answers and its schema is current)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get

from api.context import api_context
from api.problems import ProblemError


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    store: str
    revision: str | None


@get("/health", exclude_from_auth=True, tags=["health"], summary="The process is up")
async def health() -> Health:
    return Health(status="ok")


@get("/ready", exclude_from_auth=True, sync_to_thread=True, tags=["health"],
     summary="The store is reachable and its migrations are current")
def ready(request: Request[Any, Any, Any]) -> Readiness:
    from ptl.store import migrate

    engine = api_context(request).engine
    try:
        current = migrate.current_revision(engine)
        head = migrate.head_revision(engine)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the store means "not ready"
        raise ProblemError(503, f"the store cannot be reached ({type(exc).__name__}); check "
                                "PTL_DATABASE_URL and that the database is running") from None
    if current != head:
        raise ProblemError(503, f"the store's schema is at {current or 'no revision'} but this code needs "
                                f"{head}: run `ptl db upgrade`")
    return Readiness(status="ready", store=engine.dialect.name, revision=current)
