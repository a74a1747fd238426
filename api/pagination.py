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

MAX_LIMIT = 500
#: The largest id the store holds (64-bit): path ids and cursors beyond it cannot exist.
MAX_ID = 2**63 - 1


def is_store_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_ID <= value <= MAX_ID


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return msgspec.json.decode(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError, msgspec.DecodeError):
        raise ProblemError(
            400, "`cursor` is not one this API issued: pass back `next_cursor` unchanged, or leave "
                 "it out to start from the first page",
        ) from None
