"""Who is calling: API keys from `Authorization: Bearer …` (or `X-API-Key`), then the rate limit.

Keys are checked against the store's hashed copy and remembered for a few seconds, so a busy
client costs one store lookup per `KEY_CACHE_SECONDS`, not one per request. A key revoked
through the API is forgotten at once; one revoked from the command line (another process)
stops working within `KEY_CACHE_SECONDS`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from api.problems import ProblemError
from ptl.store.access import Client, authenticate, key_digest

if TYPE_CHECKING:
    from sqlalchemy import Engine

KEY_CACHE_SECONDS = 5.0
_MISSING = (
    "send your API key as the header `Authorization: Bearer ptl_…` (an administrator creates one "
    "with `ptl keys create --org CODE --role ROLE`)"
)
_UNKNOWN = (
    "this API key is not recognised or has been revoked; ask your administrator for a new key "
    "(`ptl keys create`)"
)


class KeyRing:
    """Working keys, looked up in the store and remembered briefly by digest (never the key)."""

    def __init__(self, engine: Engine, cache_seconds: float = KEY_CACHE_SECONDS) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._known: dict[str, tuple[Client, float]] = {}

    def cached(self, presented: str) -> Client | None:
        entry = self._known.get(key_digest(presented))
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        return None

    def lookup(self, presented: str) -> Client | None:
        """Check the store (blocking: call from a worker thread)."""
        client = authenticate(self.engine, presented)
        digest = key_digest(presented)
        if client is None:
            self._known.pop(digest, None)
        elif self.cache_seconds > 0:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[digest] = (client, time.monotonic() + self.cache_seconds)
        return client

    def forget(self, key_id: str) -> None:
        """Drop a revoked key at once (its cached entries are found by key id)."""
        for digest, (client, _) in list(self._known.items()):
            if client.key_id == key_id:
                self._known.pop(digest, None)


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    api_key = connection.headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    """Sets `request.user` to the `Client`; 401 without a working key, 429 over the limit."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        context = connection.app.state["api"]
        presented = presented_key(connection)
        if presented is None:
            raise NotAuthorizedException(detail=_MISSING, headers={"WWW-Authenticate": "Bearer"})
        keys: KeyRing = context.keys
        client = keys.cached(presented)
        if client is None:
            client = await anyio.to_thread.run_sync(keys.lookup, presented)
        if client is None:
            raise NotAuthorizedException(detail=_UNKNOWN, headers={"WWW-Authenticate": "Bearer"})
        wait = context.rate_limiter.retry_after(client.key_id)
        if wait is not None:
            raise ProblemError(
                429,
                f"this key has used its {context.settings.rate_limit_per_minute} requests a minute; "
                f"try again in {wait} s (page with larger `limit`, or ask for CSV, to need fewer requests)",
                headers={"Retry-After": str(wait)},
            )
        return AuthenticationResult(user=client, auth=client.key_id)
