"""Opaque cursors: the position to continue from, as URL-safe base64 of a small JSON value.

Clients pass back `next_cursor` untouched. A cursor only says where to continue in an ordering
everyone may read; changing it by hand moves within that ordering and grants nothing.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from api.problems import ProblemError
from api.request_limits import MAX_JSON_DEPTH, json_nesting_depth, too_deep

MAX_LIMIT = 500
#: The largest id the store holds (64-bit): path ids and cursors beyond it cannot exist.
MAX_ID = 2**63 - 1
#: Cursors this API issues are well under 100 characters; longer ones are not ours.
MAX_CURSOR_CHARS = 512


def is_store_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_ID <= value <= MAX_ID


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Any:
    not_ours = ProblemError(
        400, "`cursor` is not one this API issued: pass back `next_cursor` unchanged, or leave "
             "it out to start from the first page",
    )
    if len(cursor) > MAX_CURSOR_CHARS:
        raise not_ours
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeError):
        raise not_ours from None
    if json_nesting_depth(text) > MAX_JSON_DEPTH:
        raise too_deep("`cursor`")
    try:
        return msgspec.json.decode(text)
    except (ValueError, UnicodeError, msgspec.DecodeError):
        raise not_ours from None
