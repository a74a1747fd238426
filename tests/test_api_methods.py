"""OPTIONS and HEAD on every route of the app, with no key and with a key of each role.

Routes are enumerated from the app itself, so a route added later is covered without editing
this file. OPTIONS is Litestar's own answer (204 and `Allow`, what a CORS preflight needs),
given before authentication; HEAD is not served by any route, so it is a 405 naming the methods
the route takes. Neither may ever be a 5xx (a guard once read the caller before authentication
had run for OPTIONS: a 500 on nine routes).
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar.routes import HTTPRoute

from tests import test_api_fixtures as fixtures
from tests.test_api_fixtures import ApiSystem

shared_system = fixtures.shared_system

KEYS = (None, "icb", "provider:RAA", "analyst", "admin")


def _concrete_path(route: HTTPRoute) -> str:
    """The route's path with every parameter filled with a value of its type."""
    values: dict[str, str] = {}
    for name, parameter in route.path_parameters.items():
        values[name] = "1" if parameter.type is int else "x"
    return route.path_format.format(**values)


def http_routes(system: ApiSystem) -> list[HTTPRoute]:
    routes = [route for route in system.app.routes if isinstance(route, HTTPRoute)]
    assert len(routes) >= 20
    return routes


def _allowed(response: Any) -> set[str]:
    return {method.strip() for method in response.headers.get("allow", "").split(",") if method.strip()}


def test_no_route_has_an_options_handler_of_its_own(shared_system: ApiSystem) -> None:
    """The role guards let OPTIONS through because Litestar's answer discloses nothing; a
    handler of our own for OPTIONS would then be unguarded."""
    for route in http_routes(shared_system):
        handler = route.route_handler_map["OPTIONS"][0]
        assert handler.fn.__name__ == "options_handler" and not handler.include_in_schema, route.path


@pytest.mark.parametrize("key", KEYS)
def test_options_on_every_route_lists_its_methods(shared_system: ApiSystem, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {shared_system.keys[key]}"} if key else {}
    for route in http_routes(shared_system):
        path = _concrete_path(route)
        response = shared_system.client.options(path, headers=headers)
        assert response.status_code == 204, (path, key, response.status_code, response.text[:200])
        assert _allowed(response) == set(route.methods), (path, key)
        # A preflight from a browser carries these and gets the same answer.
        preflight = shared_system.client.options(path, headers={
            "Origin": "https://coordinator.example", "Access-Control-Request-Method": "GET", **headers})
        assert preflight.status_code == 204, (path, key)


@pytest.mark.parametrize("key", KEYS)
def test_head_on_every_route_is_405_with_allow(shared_system: ApiSystem, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {shared_system.keys[key]}"} if key else {}
    for route in http_routes(shared_system):
        assert "HEAD" not in route.methods  # if a route ever serves HEAD, expect 200 here
        path = _concrete_path(route)
        response = shared_system.client.head(path, headers=headers)
        assert response.status_code == 405, (path, key, response.status_code)
        assert _allowed(response) == set(route.methods), (path, key)
        assert response.content == b""


def test_an_unknown_method_is_405_with_allow_not_a_5xx(shared_system: ApiSystem) -> None:
    for route in http_routes(shared_system):
        for method in ("PATCH", "PUT", "TRACE"):
            if method in route.methods:
                continue
            response = shared_system.client.request(
                method, _concrete_path(route), headers={"Authorization": f"Bearer {shared_system.keys['icb']}"})
            assert response.status_code == 405, (method, route.path, response.status_code)
            assert _allowed(response) == set(route.methods)
            assert response.headers["content-type"].startswith("application/problem+json")
