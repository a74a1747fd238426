"""`/api/v1/keys`: API keys for admins (create shows the key once; revoke keeps the row)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.context import api_context
from api.formats import stored_time
from api.guards import allow
from api.problems import ProblemError
from ptl.store.access import AccessError, Client, create_key, list_keys, revoke_key


class KeyRequest(msgspec.Struct):
    organisation_code: str
    role: Literal["icb", "provider", "analyst", "admin"]
    name: str | None = None


class KeyCreated(msgspec.Struct):
    key_id: str
    #: shown once: store it now, it cannot be shown again
    key: str
    organisation_code: str
    role: str
    name: str | None


class KeyListing(msgspec.Struct):
    key_id: str
    organisation_code: str
    role: str
    name: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class KeyList(msgspec.Struct):
    items: list[KeyListing]


class KeysController(Controller):
    path = "/keys"
    tags = ["access"]
    guards = [allow("admin")]

    @get("/", sync_to_thread=True, summary="Every API key (never the secret)")
    def list_keys(self, request: Request[Client, Any, Any]) -> KeyList:
        keys = list_keys(api_context(request).engine)
        return KeyList(items=[KeyListing(k.key_id, k.organisation_code, k.role, k.name,
                                         stored_time(k.created_at), stored_time(k.revoked_at))
                              for k in keys])

    @post("/", sync_to_thread=True, status_code=HTTP_201_CREATED,
          summary="Create a key (the response is the only time the key is shown)")
    def create(self, request: Request[Client, Any, Any], data: KeyRequest) -> KeyCreated:
        context = api_context(request)
        try:
            key_id, key = create_key(context.engine, data.organisation_code, data.role, data.name)
        except AccessError as exc:
            raise ProblemError(400, str(exc)) from None
        context.audit(request, rows=0, action="key_created", status_code=201,
                      filters={"key_id": key_id, "organisation_code": data.organisation_code.upper(),
                               "role": data.role})
        return KeyCreated(key_id=key_id, key=key, organisation_code=data.organisation_code.strip().upper(),
                          role=data.role, name=data.name)

    @delete("/{key_id:str}", sync_to_thread=True, status_code=HTTP_204_NO_CONTENT,
            summary="Revoke a key (it stops working at once in this process)")
    def revoke(self, request: Request[Client, Any, Any], key_id: str) -> None:
        context = api_context(request)
        if not revoke_key(context.engine, key_id):
            raise ProblemError(404, f"there is no working key {key_id}: see GET /api/v1/keys")
        context.keys.forget(key_id)
        context.audit(request, rows=0, action="key_revoked", status_code=204, filters={"key_id": key_id})
