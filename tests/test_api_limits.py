"""Nesting depth is bounded wherever a client sends structured text: every JSON body (the
operations are read from the OpenAPI document), cursors, and uploaded profiles (in
tests/test_api_uploads.py). Deep nesting is a 400 problem that says so, never a
RecursionError 500; ordinary nesting and strings full of brackets still pass."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from api.request_limits import MAX_JSON_DEPTH, json_nesting_depth
from tests import test_api_fixtures as fixtures
from tests.test_api_fixtures import ApiSystem

shared_system = fixtures.shared_system

DEEP_BODIES = {
    "arrays": b"[" * 100_000 + b"]" * 100_000,
    "objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "in a field": b'{"provider_code": "RAA", "procedure_codes": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    "just past the limit": b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    "unclosed": b"[" * 100_000,
}


def json_operations(system: ApiSystem) -> list[tuple[str, str]]:
    """(method, path) of every operation whose body is JSON, path ids filled."""
    document = system.client.get("/schema/openapi.json").json()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found.append((method.upper(), path.replace("{transfer_id}", "1")))
    assert len(found) >= 5  # offers, capacity, matching runs, transfers (+ transitions), keys
    return found


def _key_for(path: str) -> str:
    return "admin" if path.startswith("/api/v1/keys") else "icb"


def assert_too_deep(response: Any, what: str) -> None:
    assert response.status_code == 400, (what, response.status_code, response.text[:200])
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "levels deep" in response.json()["detail"], what


@pytest.mark.parametrize("shape", DEEP_BODIES)
def test_a_deeply_nested_json_body_is_a_400_on_every_operation(shared_system: ApiSystem, shape: str) -> None:
    for method, path in json_operations(shared_system):
        for content_type in ("application/json", "text/plain"):
            response = shared_system.client.request(
                method, path, content=DEEP_BODIES[shape],
                headers={"Authorization": f"Bearer {shared_system.keys[_key_for(path)]}",
                         "Content-Type": content_type})
            assert_too_deep(response, f"{method} {path} {shape} as {content_type}")


def test_brackets_inside_strings_do_not_count(shared_system: ApiSystem) -> None:
    body = b'{"organisation_code": "' + b"[" * 1000 + b'\\"[[", "role": "icb"}'
    assert json_nesting_depth(body) == 1
    response = shared_system.client.post("/api/v1/keys", content=body, headers={
        "Authorization": f"Bearer {shared_system.keys['admin']}", "Content-Type": "application/json"})
    assert response.status_code == 400 and "levels deep" not in response.text  # refused for its code


@pytest.mark.parametrize("text", [b"", b"1", b'"[[["', b"[]", b"[[1],{}]", b'{"a": [{"b": []}]}', b"\xff[\x00"])
def test_nesting_depth_counts_levels(text: bytes) -> None:
    import json

    expected = {b"": 0, b"1": 0, b'"[[["': 0, b"[]": 1, b"[[1],{}]": 2, b'{"a": [{"b": []}]}': 4, b"\xff[\x00": 1}
    assert json_nesting_depth(text) == expected[text]
    if expected[text] and text != b"\xff[\x00":
        assert json.loads(text) is not None


@pytest.mark.parametrize(("path", "key"), [("/api/v1/queue", "icb"), ("/api/v1/audit", "admin")])
def test_a_deeply_nested_or_huge_cursor_is_a_400(shared_system: ApiSystem, path: str, key: str) -> None:
    deep = base64.urlsafe_b64encode(b"[" * 100 + b"]" * 100).decode().rstrip("=")
    assert_too_deep(shared_system.get(path, key, params={"cursor": deep}), f"{path} deep cursor")
    huge = base64.urlsafe_b64encode(b"[" * 10_000 + b"]" * 10_000).decode().rstrip("=")
    response = shared_system.get(path, key, params={"cursor": huge})
    assert response.status_code == 400 and "next_cursor" in response.json()["detail"]
    # A cursor the API issued still works.
    first = shared_system.get(path, key, params={"limit": 1}).json()
    assert first["next_cursor"]
    assert shared_system.get(path, key, params={"limit": 1, "cursor": first["next_cursor"]}).status_code == 200
