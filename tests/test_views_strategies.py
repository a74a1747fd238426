"""Hypothesis-generated PTLs for the view tests, and checks that what they generate is a PTL.

`ptls()` draws a small system: a current snapshot (a few providers, sites, treatment functions,
duplicates by pathway key and by person, clock stops, unknown clock starts, every P-code) and
an older census or two per provider for the flows. Derived columns are computed with the plain
rules of `ptl.rtt` / `ptl.codes`, row by row, the way a reader would check them by hand.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ptl import codes, rtt
from ptl.views.snapshot import CURRENT_SCHEMA, HISTORY_SCHEMA, Snapshot

#: PTL_TEST_EXAMPLES=10 runs ten times as many generated PTLs per property (a deeper search).
EXAMPLES_FACTOR = int(os.environ.get("PTL_TEST_EXAMPLES", "1"))


def examples(n: int) -> int:
    return n * EXAMPLES_FACTOR


PROVIDERS = ("RA1", "RB2", "NT3")
CENSUS = {"RA1": dt.date(2025, 3, 2), "RB2": dt.date(2025, 3, 2), "NT3": dt.date(2025, 2, 23)}
TREATMENT_FUNCTIONS = ("110", "130")
PATHWAY_IDS = tuple(f"PPI{i}" for i in range(8))
LEFT_IDS = tuple(f"OLD{i}" for i in range(8))
AGE_BANDS = tuple(label for _, label in codes.AGE_BANDS)


def derived(row: dict[str, Any]) -> dict[str, Any]:
    """Fill the derived columns of one pathway row from its recorded fields."""
    census: dt.date = row["census_date"]
    is_rtt = row["waiting_list_type"] in codes.RTT_WAITING_LIST_TYPES
    start = row.get("rtt_start_date")
    days = rtt.days_waited(census, start) if (is_rtt and start is not None) else None
    category = row.get("ethnic_category")
    return {
        **row,
        "is_rtt": is_rtt,
        "days_waited": days,
        "week_band": None if days is None else rtt.week_band(days),
        "priority_rank": codes.CLINICAL_PRIORITY_RANK.get(row.get("clinical_priority") or "",
                                                          codes.UNKNOWN_PRIORITY_RANK),
        "ethnic_group": None if category is None else codes.ETHNIC_GROUP_OF_CATEGORY[category],
        "imd_decile": None if row.get("imd_quintile") is None else row["imd_quintile"] * 2,
    }


def frame_of(rows: list[dict[str, Any]], schema: dict[str, Any] = CURRENT_SCHEMA) -> pl.DataFrame:
    """Rows (dicts, derived columns filled) as a frame of exactly `schema`."""
    return pl.DataFrame([{name: r.get(name) for name in schema} for r in rows], schema=schema,
                        orient="row") if rows else pl.DataFrame(schema=schema)


@st.composite
def pathway_rows(draw: st.DrawFn, provider: str, census: dt.date,
                 pathway_ids: tuple[str, ...] = PATHWAY_IDS) -> dict[str, Any]:
    days = draw(st.one_of(st.none(), st.integers(0, 800), st.sampled_from([-3, 126, 127, 364, 365, 728, 729])))
    site = draw(st.sampled_from([None, "1", "2"]))
    return {
        "provider_code": provider,
        "census_date": census,
        "pathway_id": draw(st.sampled_from(pathway_ids)),
        "pathway_id_issuer": draw(st.sampled_from(("RA1", "RB2"))),
        "person_id": draw(st.one_of(st.none(), st.integers(1, 6))),
        "site_code": None if site is None else f"{provider}0{site}",
        "treatment_function_code": draw(st.sampled_from(TREATMENT_FUNCTIONS)),
        "waiting_list_type": draw(st.sampled_from(("IRTT", "IRTT", "ORTT", "INON"))),
        "rtt_status": draw(st.sampled_from((None, "10", "20", "21", "30"))),
        "rtt_start_date": None if days is None else census - dt.timedelta(days=days),
        "clinical_priority": draw(st.sampled_from((None, *codes.CLINICAL_PRIORITIES))),
        "procedure_code": draw(st.sampled_from((None, "W371", "C751"))),
        "tci_date": draw(st.sampled_from((None, census + dt.timedelta(days=10)))),
        "imd_quintile": draw(st.one_of(st.none(), st.integers(1, 5))),
        "ethnic_category": draw(st.sampled_from((None, "A", "B", "H", "M", "Z", "99"))),
        "sex": draw(st.sampled_from((None, "1", "2", "X"))),
        "age_band": draw(st.sampled_from((None, *AGE_BANDS))),
        "learning_disability": draw(st.sampled_from((None, True, False))),
        "lsoa11": draw(st.sampled_from((None, "E01000001"))),
        "has_nhs_number": draw(st.booleans()),
        "has_postcode": draw(st.booleans()),
        "last_validated_date": draw(st.one_of(st.none(), st.integers(0, 200).map(
            lambda d: census - dt.timedelta(days=d)))),
    }


@dataclass(frozen=True)
class GeneratedPtl:
    current: pl.DataFrame
    history: pl.DataFrame

    def snapshot(self) -> Snapshot:
        return Snapshot(version=1, current=self.current, history=self.history)


def _unique_keys(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per pathway key per provider census, as ingest guarantees."""
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for row in rows:
        key = (row["provider_code"], row["census_date"], row["pathway_id_issuer"], row["pathway_id"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


@st.composite
def ptls(draw: st.DrawFn, max_rows: int = 30) -> GeneratedPtl:
    providers = draw(st.lists(st.sampled_from(PROVIDERS), min_size=1, max_size=3, unique=True))
    rows: list[dict[str, Any]] = []
    for provider in providers:
        rows += draw(st.lists(pathway_rows(provider, CENSUS[provider]), max_size=max_rows // 2))
    rows = _unique_keys(rows)
    ids = draw(st.lists(st.integers(1, 10_000), min_size=len(rows), max_size=len(rows), unique=True))
    current = [derived({**row, "id": i, "feed_id": 100 + PROVIDERS.index(row["provider_code"])})
               for row, i in zip(rows, ids, strict=True)]
    # Older censuses: each provider's current pathways, some dropped (removals later) and some
    # not yet there (additions later), plus pathways that have since left the list.
    older: list[dict[str, Any]] = []
    for provider in providers:
        # A shrinking list (everyone already there a week ago) as well as a churning one.
        shrinking = draw(st.booleans())
        for weeks_back in range(1, draw(st.integers(0, 2)) + 1):
            census = CENSUS[provider] - dt.timedelta(weeks=weeks_back)
            for row in current:
                if row["provider_code"] == provider and (shrinking or draw(st.booleans())):
                    start = row["rtt_start_date"]
                    older.append(derived({**row, "census_date": census}) if start is None or start <= census
                                 else derived({**row, "census_date": census, "rtt_start_date": census}))
            # Pathways that have left the list since (removals), from their own identifiers.
            older += [derived(row) for row in draw(st.lists(
                pathway_rows(provider, census, LEFT_IDS), min_size=2 * shrinking,
                max_size=8 if shrinking else 4))]
    older = _unique_keys(older)
    history = frame_of(current, HISTORY_SCHEMA).vstack(frame_of(older, HISTORY_SCHEMA))
    return GeneratedPtl(current=frame_of(current), history=history)


@settings(max_examples=examples(30), deadline=None)
@given(ptls())
def test_generated_ptls_keep_the_rules_a_snapshot_keeps(ptl: GeneratedPtl) -> None:
    current = ptl.current
    assert current["id"].n_unique() == current.height
    assert current.select("provider_code", "pathway_id_issuer", "pathway_id").is_unique().all()
    assert current.filter(~pl.col("is_rtt"))["days_waited"].null_count() == current.filter(~pl.col("is_rtt")).height
    assert (current["week_band"].drop_nulls() >= 0).all()
    assert ptl.history.select("provider_code", "census_date", "pathway_id_issuer", "pathway_id").is_unique().all()
    assert ptl.history["is_rtt"].null_count() == 0
