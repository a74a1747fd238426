"""Cross-organisation leaks: Hypothesis pairs a key of one organisation with record ids and
filters of another, across every endpoint, and checks that no identifiable value of another
provider's patient ever comes back (and that refusals are 403/404, never a silent empty list
standing in for a refusal)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import test_api_fixtures as fixtures
from tests.test_api_fixtures import PROVIDERS, ApiSystem

shared_system = fixtures.shared_system

IDENTITY_FIELDS = ("nhs_number", "family_name", "given_name", "date_of_birth", "postcode",
                   "local_patient_id", "pathway_id", "referral_id", "person_id")


@dataclass
class Secrets:
    """Identity values per provider, and the ids an attacker would try."""

    values: dict[str, set[str]]  # provider → identity values only its records carry
    persons: dict[str, list[int]]  # provider → person ids with a pathway there
    feeds: dict[str, list[int]]


def _secrets(system: ApiSystem) -> Secrets:
    with system.engine.connect() as connection:
        identities = connection.execute(sa.text(
            "SELECT si.provider_code, si.nhs_number, si.family_name, si.given_name, si.local_patient_id, "
            "CAST(si.date_of_birth AS VARCHAR(10)), il.person_id FROM source_identity si "
            "JOIN identity_link il ON il.source_identity_id = si.id")).all()
        pathway_ids = connection.execute(sa.text("SELECT provider_code, pathway_id FROM pathway")).all()
        feeds = connection.execute(sa.text("SELECT provider_code, id FROM feed")).all()
    values: dict[str, set[str]] = {p: set() for p in PROVIDERS}
    persons: dict[str, list[int]] = {p: [] for p in PROVIDERS}
    for provider, number, family, given_name, local_id, dob, person_id in identities:
        values[provider].update({number, family, given_name, local_id, str(dob)[:10]})
        persons[provider].append(int(person_id))
    for provider, pathway_id in pathway_ids:
        values[provider].add(pathway_id)
    for provider in PROVIDERS:
        # A value the caller's own records also carry (a shared NHS number, a common birth
        # date) is the caller's own data: only values unique to the other provider count.
        persons[provider].sort()
    unique = {p: {v for v in vals if v and not any(v in values[o] for o in PROVIDERS if o != p)}
              for p, vals in values.items()}
    return Secrets(values=unique, persons=persons,
                   feeds={p: [i for q, i in feeds if q == p] for p in PROVIDERS})


@pytest.fixture(scope="module")
def secrets(shared_system: ApiSystem) -> Secrets:
    return _secrets(shared_system)


def _filters(other: str) -> st.SearchStrategy[str]:
    parts = st.fixed_dictionaries({}, optional={
        "provider": st.sampled_from([other, other.lower()]),
        "site": st.sampled_from([f"{other}01", f"{other}02"]),
        "treatment_function": st.sampled_from(["110", "130", "101"]),
        "priority": st.sampled_from(["P2", "P3", "P4", "deferred", "unknown"]),
        "waiting_list_type": st.sampled_from(["IRTT", "ORTT"]),
        "format": st.sampled_from(["json", "csv"]),
    })
    return parts.map(lambda d: "&".join(f"{k}={v}" for k, v in d.items()))


@st.composite
def attacks(draw: st.DrawFn, secrets: Secrets) -> tuple[str, str, str]:
    """(key name, attacked provider, path)."""
    caller = draw(st.sampled_from([*(f"provider:{p}" for p in PROVIDERS), "analyst"]))
    own = caller.split(":")[1] if caller.startswith("provider:") else None
    other = draw(st.sampled_from([p for p in PROVIDERS if p != own]))
    query = draw(_filters(other))
    person = draw(st.sampled_from(secrets.persons[other] or [1]))
    feed = draw(st.sampled_from(secrets.feeds[other]))
    kind = draw(st.sampled_from(["duplicate_pathways", "not_validated", "clock_start", "pcode_missing",
                                 "identity_conflicts", "clock_stop_status"]))
    path = draw(st.sampled_from([
        f"/api/v1/queue?limit=500&{query}",
        f"/api/v1/validation?kind={kind}&limit=500&{query}",
        f"/api/v1/equalisation?treatment_function=110&{query}",
        f"/api/v1/persons/{person}?{query}",
        f"/api/v1/feeds/{feed}?{query}",
        f"/api/v1/feeds?provider={other}",
        f"/api/v1/sites/stats?{query}",
        f"/api/v1/equity?by=ethnic_group&{query}",
        f"/api/v1/data-quality?{query}",
    ]))
    return caller, other, path


def _rows(response: Any) -> list[dict[str, Any]]:
    if response.headers["content-type"].startswith("text/csv"):
        return [dict(r) for r in csv.DictReader(io.StringIO(response.text))]
    body = response.json()
    found: list[dict[str, Any]] = []
    for key in ("items", "pathways", "patients"):
        if isinstance(body.get(key), list):
            found.extend(r for r in body[key] if isinstance(r, dict))
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_identifiable_value_of_another_provider_ever_leaks(shared_system: ApiSystem, secrets: Secrets,
                                                             data: st.DataObject) -> None:
    caller, other, path = data.draw(attacks(secrets))
    own = caller.split(":")[1] if caller.startswith("provider:") else None
    response = shared_system.get(path, caller)
    assert response.status_code in (200, 403, 404), (caller, path, response.status_code, response.text[:300])
    if response.status_code != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
        return
    text = response.text
    leaked = sorted(v for p in PROVIDERS if p != own for v in secrets.values[p] if v in text)
    assert leaked == [], (caller, path, leaked[:5])
    for row in _rows(response):
        provider = row.get("provider_code")
        if provider and provider != own:
            exposed = {f: row[f] for f in IDENTITY_FIELDS if row.get(f) not in (None, "")}
            assert exposed == {}, (caller, path, exposed)
    if path.startswith("/api/v1/persons/"):
        assert own is not None and any(r["provider_code"] == own for r in _rows(response))


def test_a_provider_never_sees_a_person_who_waits_only_elsewhere(shared_system: ApiSystem, secrets: Secrets) -> None:
    for provider in PROVIDERS:
        elsewhere = sorted(set().union(*(secrets.persons[p] for p in PROVIDERS if p != provider))
                           - set(secrets.persons[provider]))
        assert elsewhere
        for person_id in elsewhere[:10]:
            response = shared_system.get(f"/api/v1/persons/{person_id}", f"provider:{provider}")
            assert response.status_code == 404
            assert str(person_id) in response.json()["detail"]
