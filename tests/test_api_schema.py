"""Schemathesis against `/schema`: requests generated from the OpenAPI document for every
operation, sent with a key of the role that operation serves. No answer may be a 5xx, and every
4xx must be problem+json. Bounded (a few examples per operation) to stay well under a minute."""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import test_api_fixtures as fixtures
from tests.test_api_fixtures import ApiSystem

shared_system = fixtures.shared_system

#: Deterministic by default so CI judges the code, not the dice; set PTL_TEST_EXPLORE=1 (and
#: more examples) to search afresh — every 500 it has found so far is now a regression test.
EXPLORE = bool(os.environ.get("PTL_TEST_EXPLORE"))
EXAMPLES_PER_OPERATION = int(os.environ.get("PTL_TEST_EXAMPLES_PER_OPERATION", "12"))


def _key_for(method: str, path: str) -> str:
    if path.startswith(("/api/v1/keys", "/api/v1/audit")):
        return "admin"
    if path.startswith("/api/v1/feeds") and method == "POST":
        return "provider:RAA"
    if path.startswith("/api/v1/feeds"):
        return "admin"
    return "icb"


def _content_type(response: Any) -> str:
    value = response.headers.get("content-type") or response.headers.get("Content-Type") or ""
    return str(value[0] if isinstance(value, list) and value else value)


def exercise(key: str, operation: Any, problems: list[str]) -> None:
    """Send generated requests for one operation; note any 5xx or 4xx without problem+json."""

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              derandomize=not EXPLORE, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(), authorised=st.booleans() | st.just(True))
    def send(case: Any, authorised: bool) -> None:
        headers = {"Authorization": f"Bearer {key}"} if authorised else {}
        response = case.call(headers=headers)
        where = f"{case.method} {case.formatted_path} {case.query or ''}"
        if response.status_code >= 500:
            problems.append(f"{response.status_code} on {where}: {response.text[:200]}")
        elif response.status_code >= 400 and not _content_type(response).startswith("application/problem+json"):
            problems.append(f"{response.status_code} without problem+json on {where}")

    send()


def test_generated_requests_never_fail_the_server(shared_system: ApiSystem) -> None:
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", shared_system.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    problems: list[str] = []
    for operation in operations:
        exercise(shared_system.keys[_key_for(operation.method.upper(), operation.path)], operation, problems)
    assert problems == []
