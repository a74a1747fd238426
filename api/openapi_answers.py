"""What the OpenAPI document says each operation may answer, beyond its success: the errors
every route can give (RFC 9457 problems, never Litestar's own error shape) and CSV where a view
takes `format`. Litestar documents only the success and a 400 of its own shape; clients and the
schema-driven tests (tests/test_api_schema.py) read the document, so it must say what is sent.
"""

from __future__ import annotations

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)

from api.formats import CSV_MEDIA_TYPE
from api.problems import PROBLEM_MEDIA_TYPE, problem_title

#: Errors any operation under /api/v1 may answer (authentication, roles, validation, limits,
#: the store or audit trail unavailable, and a fault, reported by reference).
API_ERRORS = (400, 401, 403, 404, 409, 413, 422, 429, 500, 503)
#: Errors of the routes without a key (`/health`, `/ready`).
OPEN_ERRORS = (400, 500, 503)

_STRING = Schema(type=OpenAPIType.STRING)
_PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    description="An RFC 9457 problem detail",
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description="urn:ptl:problem:<kind>"),
        "title": _STRING,
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING, description="what was wrong and how to fix it"),
        "instance": _STRING,
        "invalid-params": Schema(type=OpenAPIType.ARRAY, items=Schema(
            type=OpenAPIType.OBJECT, required=["name", "reason"],
            properties={"name": _STRING, "reason": _STRING})),
        "feed": Schema(type=OpenAPIType.OBJECT, description="uploads: the same answer as `ptl ingest --json`"),
        "reference": Schema(type=OpenAPIType.STRING, description="server errors: quote it to the service team"),
    },
)
_RETRY_AFTER: dict[str, OpenAPIHeader | Reference] = {"Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER),
                                             description="seconds until the key may ask again")}


def document_answers(openapi: OpenAPI) -> None:
    """Add the problem answers to every operation and CSV to every view (in place)."""
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    openapi.components.schemas["Problem"] = _PROBLEM_SCHEMA
    problem = OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))
    for path, item in (openapi.paths or {}).items():
        for operation in _operations(item):
            responses = operation.responses if operation.responses is not None else {}
            operation.responses = responses
            for status in API_ERRORS if path.startswith("/api/") else OPEN_ERRORS:
                responses[str(status)] = OpenAPIResponse(
                    description=problem_title(status), content={PROBLEM_MEDIA_TYPE: problem},
                    headers=_RETRY_AFTER if status == 429 else None)
            if any(getattr(p, "name", None) == "format" for p in operation.parameters or []):
                _add_csv(responses)


def _operations(item: object) -> list[Operation]:
    methods = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    return [op for op in (getattr(item, m, None) for m in methods) if isinstance(op, Operation)]


def _add_csv(responses: dict[str, OpenAPIResponse | Reference]) -> None:
    for status, response in responses.items():
        if status.startswith("2") and isinstance(response, OpenAPIResponse):
            response.content = {**(response.content or {}), CSV_MEDIA_TYPE: OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.STRING, description="CSV with a header row (`format=csv` or `Accept: text/csv`)"))}
