"""Role guards: which roles may call a route at all. What each role then sees is decided in
`api/disclosure.py`."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from ptl.store.access import Client

#: The roles that may read views of the waiting list (admins manage, they do not read patients).
READERS = ("icb", "provider", "analyst")
#: Roles that may see identifiable rows at all (providers only for their own organisation).
IDENTIFIABLE_READERS = ("icb", "provider")


def allow(*roles: str) -> Guard:
    """A guard letting only keys of these roles through (403 with the reason otherwise)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        if connection.scope.get("method") == "OPTIONS":
            # Litestar's own answer to OPTIONS (204 and the route's `Allow`, for CORS
            # preflights) discloses nothing, and authentication lets OPTIONS through without a
            # key, so there is no caller to judge. The API defines no OPTIONS handler of its
            # own (tests/test_api_methods.py holds it to that).
            return
        client: Client = connection.user
        if client.role not in roles:
            raise PermissionDeniedException(
                detail=f"{connection.url.path} is for {', '.join(roles)} keys; your key "
                f"({client.key_id}) has the {client.role} role"
            )

    return guard
