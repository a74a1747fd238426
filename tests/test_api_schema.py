"""Schemathesis against `/schema`, every phase, as its command line runs it: examples from the
document, coverage (boundary and negative values, and methods the document does not list),
fuzzing, and stateful sequences that feed one answer's ids into the next request. Once with a
key of each role (icb, provider, analyst, admin), the rate limit raised so the run is not
throttled. No answer may be a 5xx, and every answer must be one the document describes: its
status, media type (problems as `application/problem+json`, CSV where `format` is taken),
headers and body schema, 405 with `Allow` for a method a route does not take.

Deterministic by default (a fixed seed, no example database) so CI judges the code, not the
dice; `PTL_TEST_EXPLORE=1` searches afresh, `PTL_TEST_EXAMPLES_PER_OPERATION` (default 6) sets
the fuzzing and stateful budget. About 2,000 requests a role, 30 s a backend on two cores.
Every fault it has found is fixed at its cause.

Two checks stay off: `positive_data_acceptance` and `negative_data_rejection` judge whether
the document states every validation rule (ODS code shapes, which treatment function a view
needs), not whether the service fails or misdescribes its answers.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from tests import test_api_fixtures as fixtures
from tests.test_api_fixtures import ApiSystem

shared_system = fixtures.shared_system

EXPLORE = bool(os.environ.get("PTL_TEST_EXPLORE"))
EXAMPLES_PER_OPERATION = int(os.environ.get("PTL_TEST_EXAMPLES_PER_OPERATION", "6"))
PHASES = ("examples", "coverage", "fuzzing", "stateful")
ROLES = ("icb", "provider:RAA", "analyst", "admin")


def run_config(key: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        **({} if EXPLORE else {"seed": 20250105}),
        "headers": {"Authorization": f"Bearer {key}"},
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": not EXPLORE,
                       "database": "none"},
        "phases": {phase: {"enabled": True} for phase in PHASES},
        "checks": {"enabled": True, "positive_data_acceptance": {"enabled": False},
                   "negative_data_rejection": {"enabled": False}},
        "workers": 1,
    })


def run_every_phase(system: ApiSystem, key: str) -> tuple[dict[str, int], list[str]]:
    """Requests sent per phase, and one line per distinct failed check."""
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", system.app, config=run_config(key))
    sent: collections.Counter[str] = collections.Counter()
    failures: dict[tuple[str, str, int | None], str] = {}
    for event in from_schema(schema).execute():
        if isinstance(event, events.FatalError | events.NonFatalError):
            failures[("error", str(event), None)] = f"schemathesis could not run: {event}"
        if not isinstance(event, events.ScenarioFinished):
            continue
        sent[event.phase.value] += len(event.recorder.interactions)
        for case_id, checks in event.recorder.checks.items():
            for check in checks:
                if check.status != Status.FAILURE:
                    continue
                case = event.recorder.cases[case_id].value
                interaction = event.recorder.interactions.get(case_id)
                response = interaction.response if interaction is not None else None
                status = response.status_code if response is not None else None
                body = response.content[:300] if response is not None and response.content else b""
                failures.setdefault((check.name, case.operation.label, status), (
                    f"{check.name}: {case.method} {case.formatted_path} query={case.query!r} "
                    f"body={str(case.body)[:120]} -> {status} {body!r}"))
    return dict(sent), sorted(failures.values())


@pytest.mark.parametrize("role", ROLES)
def test_every_phase_finds_no_server_error_and_no_answer_outside_the_document(
        shared_system: ApiSystem, role: str) -> None:
    assert shared_system.settings.rate_limit_per_minute >= 100_000  # the run is not throttled
    started = time.perf_counter()
    sent, failures = run_every_phase(shared_system, shared_system.keys[role])
    assert failures == []
    for phase in PHASES:
        assert sent.get(phase, 0) > 0, f"the {phase} phase sent nothing ({sent})"
    print(f"schemathesis as {role}: {sent} in {time.perf_counter() - started:.1f} s")


def test_the_document_describes_problems_and_csv(shared_system: ApiSystem) -> None:
    document: dict[str, Any] = shared_system.client.get("/schema/openapi.json").json()
    assert "Problem" in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            errors = ("400", "401", "403", "429", "500") if path.startswith("/api/") else ("500",)
            for status in errors:
                assert "application/problem+json" in responses[status]["content"], (method, path, status)
            if any(p["name"] == "format" for p in operation.get("parameters", [])):
                assert "text/csv" in responses["200"]["content"], (method, path)
