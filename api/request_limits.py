"""What a request may hold, checked before any handler reads it: no NUL in the path or a query
value, and no JSON nested deeper than `MAX_JSON_DEPTH` in a body or a cursor.

JSON decoders recurse once per level of nesting: `[[[[…]]]]` a hundred thousand levels deep
ends in a `RecursionError` (a 500) before any schema is checked. Every JSON body and cursor this
API takes is a few levels deep, so anything deeper is refused as a 400 problem, counted without
recursion (strings dropped, then brackets summed over the bytes as a NumPy array).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from litestar import Request

from api.problems import ProblemError

#: The deepest JSON value accepted (the deepest the API defines is 3: an object holding a list).
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPENING = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSING = np.frombuffer(b"]}", dtype=np.uint8)
#: Bodies that are not JSON (uploads): their fields are checked where they are parsed.
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_METHODS_WITH_BODIES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def json_nesting_depth(text: bytes) -> int:
    """How deeply arrays and objects nest in JSON text (0 for a scalar). For text that is not
    JSON the count is still bounded and never raises; the decoder then refuses the text."""
    outside_strings = _JSON_STRING.sub(b'""', text)
    symbols = np.frombuffer(outside_strings, dtype=np.uint8)
    steps = np.isin(symbols, _OPENING).astype(np.int64) - np.isin(symbols, _CLOSING).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def too_deep(what: str) -> ProblemError:
    return ProblemError(400, f"{what} nests arrays or objects more than {MAX_JSON_DEPTH} levels deep; "
                             "nothing this API takes is nested like that (see /schema)")


async def refuse_malformed_requests(request: Request[Any, Any, Any]) -> None:
    """Before every handler. A NUL in the path or a query value is never a real code or id,
    and PostgreSQL refuses it in text parameters (a 500 otherwise). A JSON body nested beyond
    `MAX_JSON_DEPTH` is refused before it is decoded."""
    values = [request.url.path, *(v for _k, v in request.query_params.items())]
    if any("\x00" in value for value in values):
        raise ProblemError(400, "the request holds a NUL character; codes, ids and filters are plain text")
    if request.method in _METHODS_WITH_BODIES and not request.headers.get("content-type", "").lower().startswith(
            _FORM_TYPES):
        body = await request.body()
        if body and json_nesting_depth(body) > MAX_JSON_DEPTH:
            raise too_deep("the request body")
