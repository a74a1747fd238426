"""Errors as RFC 9457 problem details (`application/problem+json`).

Every 4xx and 5xx the API sends goes through here: a `type` naming the kind of problem, a
`title`, the `status` and a `detail` a person can act on. Unexpected errors are logged with a
reference (the exception type and where it happened, never its message, which may carry patient
values) and the client gets the reference, not a stack trace.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

log = logging.getLogger("ptl.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"

#: status → (type slug, title). Types are URNs: stable names, not links to follow.
_KINDS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "The request is not valid"),
    401: ("unauthorized", "An API key is needed"),
    403: ("forbidden", "Your key may not do this"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Cannot answer in that format"),
    409: ("conflict", "Conflict"),
    413: ("too-large", "The request is too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("unprocessable", "The upload was refused"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class InvalidParam(msgspec.Struct, omit_defaults=True):
    """One request parameter that is wrong, and why."""

    name: str
    reason: str


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem detail."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    invalid_params: list[InvalidParam] | None = msgspec.field(default=None, name="invalid-params")
    #: for refused uploads: what the pipeline said (the same answer as `ptl ingest --json`)
    feed: dict[str, Any] | None = None
    reference: str | None = None


class ProblemError(HTTPException):
    """An error that already knows its problem detail (raise from controllers)."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None,
                 feed: dict[str, Any] | None = None, reference: str | None = None) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.feed = feed
        self.reference = reference


def problem_title(status: int) -> str:
    return _KINDS.get(status, ("error", "Error"))[1]


def problem_type(status: int) -> str:
    slug = _KINDS.get(status, ("error", ""))[0]
    return f"urn:ptl:problem:{slug}"


def problem_response(status: int, detail: str, *, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extensions: Any) -> Response[Problem]:
    body = Problem(type=problem_type(status), title=problem_title(status), status=status, detail=detail,
                   instance=instance, **extensions)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _invalid_params(exc: ValidationException) -> list[InvalidParam]:
    extra = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
    params: list[InvalidParam] = []
    for item in extra:
        if isinstance(item, dict):
            name = str(item.get("key") or item.get("source") or "request")
            params.append(InvalidParam(name=name, reason=str(item.get("message", "is not valid"))))
    return params


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    instance = request.url.path
    if isinstance(exc, ValidationException):
        params = _invalid_params(exc)
        named = "; ".join(f"{p.name}: {p.reason}" for p in params)
        detail = (f"{named}. See /schema for the parameters this endpoint accepts"
                  if named else "the request is not valid; see /schema for what this endpoint accepts")
        return problem_response(400, detail, instance=instance, headers=exc.headers,
                                invalid_params=params or None)
    detail = exc.detail
    if status == 404 and detail in ("", "Not Found"):
        detail = f"there is nothing at {instance}; the API is under /api/v1 (see /schema)"
    elif status == 405:
        detail = f"{request.method} is not allowed on {instance}; see /schema for the methods it takes"
    elif status >= 500 and not isinstance(exc, ProblemError):
        # Our own 5xx problems (say, the audit trail unavailable) carry a detail written here,
        # never an exception's message; anything else is reported by reference only.
        return _internal_error(request, exc)
    if isinstance(exc, ProblemError):
        return problem_response(status, detail, instance=instance, headers=exc.headers, feed=exc.feed,
                                reference=exc.reference)
    return problem_response(status, detail, instance=instance, headers=exc.headers)


def log_failure(request: Request[Any, Any, Any] | None, exc: BaseException) -> str:
    """Log an unexpected error by where it happened, never its message (which may quote patient
    values), and return the reference the client is given to quote."""
    reference = uuid.uuid4().hex[:12]
    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames))
    log.error("unhandled error %s at %s (reference %s)", type(exc).__name__, where, reference,
              extra={"reference": reference, "error": type(exc).__name__,
                     "path": request.url.path if request is not None else None, "where": where})
    return reference


def _internal_error(request: Request[Any, Any, Any], exc: BaseException) -> Response[Problem]:
    reference = log_failure(request, exc)
    return problem_response(
        500, f"the server failed to answer this request; quote reference {reference} to the "
             "service team", instance=request.url.path, reference=reference,
    )


def unexpected_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    return _internal_error(request, exc)
