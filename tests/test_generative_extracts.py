"""Any column set, any representation: load → link → every view, against plain references.

Our synthetic generator always sends every column, as text, filled. Real providers do not: an
independent-sector extract may carry only what WLMDS requires and the NHS number; a trust's
PAS export may send a column empty in every row; Excel types dates and numbers; Parquet types
everything. Hypothesis draws, per provider, which optional fields are sent and how (absent,
present but empty in every row, or filled), and a file format (CSV text, XLSX with typed date
and number cells, Parquet with typed columns). Each drawn system is loaded through
`ingest_file` on each store (every load links its identities, as in production), then every
view is computed and compared with what the drawn data says (a plain count of needs written
out here) and with the views' plain reference implementations.

The oracle needs no probabilistic judgement: a person waiting at two providers for the same
treatment function is one need exactly when both providers send the NHS number (a valid,
verified one, so linking is deterministic); when either does not, the person's second pathway
is for another treatment function, so whatever Splink decides, the needs stay distinct.
Different people never share a name, a date of birth or an NHS number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from sqlalchemy import Engine

from api.app import create_app
from ingest.pipeline import ingest_file
from ptl.fields import FIELDS, REQUIRED_COLUMNS
from ptl.settings import Settings
from ptl.store import migrate
from ptl.store.access import create_key
from ptl.store.engine import make_engine
from ptl.views.data_quality import data_quality
from ptl.views.equalisation import equalisation
from ptl.views.equity import REFERENCE_GROUPS, equity
from ptl.views.filters import ViewFilter
from ptl.views.queue import shared_queue
from ptl.views.sites import site_stats
from ptl.views.snapshot import invalidate_snapshot, load_snapshot
from ptl.views.validation import WORKLIST_KINDS, worklist
from tests.conftest import _temporary_postgres_url
from tests.test_api_fixtures import nhs_number
from tests.test_views_queue import QUEUE_COLUMNS, reference_queue
from tests.test_views_sites import assert_rows_equal, reference_site_stats
from tests.test_views_strategies import examples

CENSUS = dt.date(2025, 3, 2)  # a Sunday
PROVIDERS = ("RAA", "RBB", "NCC")
TREATMENT_FUNCTIONS = ("110", "130")
#: Optional fields, each drawn per provider as absent, empty in every row, or filled.
OPTIONAL = tuple(f.name for f in FIELDS if f.name not in REQUIRED_COLUMNS)
DATE_FIELDS = frozenset(f.name for f in FIELDS if f.kind == "date")
#: Fields Excel and Parquet would hold as numbers.
NUMBER_FIELDS = frozenset({"asa_grade", "bmi", "priority_type", "intended_management", "sex"})
_GIVEN = ("Aoife", "Bartholomew", "Ceridwen", "Dafydd", "Eilidh", "Fionnuala", "Gethin", "Hywel",
          "Iolo", "Jocasta", "Kezia", "Lorcan", "Morwenna", "Niamh", "Oisin", "Peregrine",
          "Quilla", "Rhiannon", "Seren", "Tamsin", "Ulick", "Vashti", "Wendeline", "Xanthe")
_FAMILY = ("Abernethy", "Blenkinsop", "Cattermole", "Dunwoody", "Entwistle", "Fothergill",
           "Gathercole", "Heseltine", "Illingworth", "Jowett", "Kettlewell", "Lumsden",
           "Mottershead", "Nuttall", "Ormerod", "Pilkington", "Quarmby", "Rushworth",
           "Sowerby", "Tattersall", "Unsworth", "Vavasour", "Whitworth", "Yeadon")
_POSTCODES = ("LS1 4AP", "BD7 1DP", "HX1 1UJ", "WF1 2EB", "HD1 2TA", "YO1 7HH")


@dataclass(frozen=True)
class ProviderExtract:
    code: str
    file_format: str  # csv | xlsx | parquet
    fields: dict[str, str]  # optional field → "empty" | "filled" (absent fields are not keys)
    rows: list[dict[str, Any]]  # every field's value, typed (dates as dt.date)


@dataclass(frozen=True)
class DrawnSystem:
    extracts: list[ProviderExtract]
    expected_needs: int
    #: provider → needs held there (under its own pathway or a duplicate's)
    needs_at: dict[str, int]
    shared_needs: int


def _value(field: str, person: dict[str, Any], pathway: dict[str, Any], provider: str) -> Any:
    """A valid value of an optional field for one pathway."""
    values: dict[str, Any] = {
        "site_code": f"{provider}01", "pathway_id_issuer": provider,
        "referral_id": f"REF{pathway['n']}", "nhs_number": person["nhs_number"],
        "nhs_number_status": "01", "family_name": person["family_name"],
        "given_name": person["given_name"], "date_of_birth": person["date_of_birth"],
        "sex": person["sex"], "postcode": person["postcode"], "lsoa11": "E01011365",
        "ethnic_category": person["ethnic_category"], "rtt_status": "20", "priority_type": "1",
        "clinical_priority": pathway["priority"], "procedure_code": "W371",
        "intended_management": "1", "decision_to_admit_date": CENSUS - dt.timedelta(days=30),
        "tci_date": CENSUS + dt.timedelta(days=21), "asa_grade": "2", "bmi": "27.5",
        "learning_disability": "N", "interpreter_required": "N",
        "last_validated_date": CENSUS - dt.timedelta(days=10),
        "last_attended_date": CENSUS - dt.timedelta(days=40),
        "last_dna_date": CENSUS - dt.timedelta(days=90), "travel_willingness": "50",
    }
    return values[field]


@st.composite
def systems(draw: st.DrawFn) -> DrawnSystem:
    providers = draw(st.lists(st.sampled_from(PROVIDERS), min_size=2, max_size=3, unique=True))
    formats = {p: draw(st.sampled_from(("csv", "xlsx", "parquet"))) for p in providers}
    sent: dict[str, dict[str, str]] = {}
    for p in providers:
        # Sparse (required fields and the NHS number only), full, or any mixture.
        shape = draw(st.sampled_from(("sparse", "full", "mixed")))
        if shape == "sparse":
            sent[p] = {"nhs_number": "filled"}
        elif shape == "full":
            sent[p] = dict.fromkeys(OPTIONAL, "filled")
        else:
            sent[p] = {f: how for f in OPTIONAL
                       if (how := draw(st.sampled_from(("absent", "empty", "filled")))) != "absent"}
    clock_start_empty = {p: draw(st.booleans()) and draw(st.booleans()) for p in providers}
    count = draw(st.integers(4, 12))
    people = [{
        "nhs_number": nhs_number(1000 + 10 * i), "given_name": _GIVEN[i], "family_name": _FAMILY[i],
        "date_of_birth": dt.date(1940 + 2 * i, 1 + i % 12, 1 + i % 27), "sex": "12"[i % 2],
        "postcode": _POSTCODES[i % len(_POSTCODES)], "ethnic_category": "ABHMNZ"[i % 6],
    } for i in range(count)]
    pathways: dict[str, list[dict[str, Any]]] = {p: [] for p in providers}
    expected = 0
    shared = 0
    needs_at = dict.fromkeys(providers, 0)
    n = 0
    for i in range(count):
        home = draw(st.sampled_from(providers))
        tfc = draw(st.sampled_from(TREATMENT_FUNCTIONS))
        priority = draw(st.sampled_from(("P2", "P3", "P4")))
        days = draw(st.integers(0, 800))
        n += 1
        pathways[home].append({"n": n, "person": i, "tfc": tfc, "priority": priority, "days": days})
        expected += 1
        needs_at[home] += 1
        if draw(st.booleans()):
            other = draw(st.sampled_from([p for p in providers if p != home]))
            both_send_number = all(sent[q].get("nhs_number") == "filled" for q in (home, other))
            same_need = both_send_number
            n += 1
            pathways[other].append({
                "n": n, "person": i, "priority": priority, "days": draw(st.integers(0, 800)),
                "tfc": tfc if same_need else next(t for t in TREATMENT_FUNCTIONS if t != tfc)})
            if same_need:
                shared += 1
                needs_at[other] += 1
            else:
                expected += 1
                needs_at[other] += 1
    extracts = []
    for p in providers:
        rows = []
        for pathway in pathways[p]:
            person = people[pathway["person"]]
            row: dict[str, Any] = {
                "pathway_id": f"{p}-PPI{pathway['n']}", "local_patient_id": f"{p}-{pathway['person']:04d}",
                "rtt_start_date": None if clock_start_empty[p] else CENSUS - dt.timedelta(days=pathway["days"]),
                "waiting_list_type": "IRTT", "treatment_function_code": pathway["tfc"],
                "census_date": CENSUS, "provider_code": p,
            }
            for field, how in sent[p].items():
                row[field] = _value(field, person, pathway, p) if how == "filled" else None
            rows.append(row)
        if rows:
            extracts.append(ProviderExtract(p, formats[p], sent[p], rows))
    return DrawnSystem(extracts, expected, {p: k for p, k in needs_at.items() if k}, shared)


def _columns(extract: ProviderExtract) -> list[str]:
    return [*REQUIRED_COLUMNS, *extract.fields]


def write_extract(extract: ProviderExtract, folder: Path) -> Path:
    """The extract as its provider would send it: CSV text, XLSX with typed cells, Parquet typed."""
    columns = _columns(extract)
    path = folder / f"{extract.code}.{extract.file_format}"
    if extract.file_format == "csv":
        text = {c: [None if r.get(c) is None else (r[c].isoformat() if isinstance(r[c], dt.date) else str(r[c]))
                    for r in extract.rows] for c in columns}
        pl.DataFrame(text, schema=dict.fromkeys(columns, pl.String)).write_csv(path)
    elif extract.file_format == "parquet":
        schema = {c: pl.Date if c in DATE_FIELDS else pl.Float64 if c == "bmi"
                  else pl.Int64 if c in NUMBER_FIELDS and c != "sex" else pl.String for c in columns}
        data = {c: [r.get(c) if schema[c] == pl.Date or r.get(c) is None
                    else (float(r[c]) if schema[c] == pl.Float64 else int(r[c]) if schema[c] == pl.Int64 else str(r[c]))
                    for r in extract.rows] for c in columns}
        pl.DataFrame(data, schema=schema).write_parquet(path)
    else:
        workbook = xlsxwriter.Workbook(str(path))
        sheet = workbook.add_worksheet("PTL")
        date_cell = workbook.add_format({"num_format": "dd/mm/yyyy"})
        for j, column in enumerate(columns):
            sheet.write_string(0, j, column)
        for i, row in enumerate(extract.rows, start=1):
            for j, column in enumerate(columns):
                value = row.get(column)
                if value is None:
                    continue  # an empty cell
                if isinstance(value, dt.date):
                    sheet.write_datetime(i, j, dt.datetime.combine(value, dt.time()), date_cell)
                elif column in NUMBER_FIELDS or column == "nhs_number":
                    sheet.write_number(i, j, float(value))  # Excel holds codes and NHS numbers as numbers
                else:
                    sheet.write_string(i, j, str(value))
        workbook.close()
    return path


def _fresh_store(backend: str, folder: Path) -> Iterator[Engine]:
    urls = iter([f"sqlite:///{folder / 'ptl.sqlite3'}"]) if backend == "sqlite" else _temporary_postgres_url()
    engine = make_engine(next(urls))
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        invalidate_snapshot(engine)
        engine.dispose()
        for _ in urls:  # drops the PostgreSQL database
            pass


def check_system(system: DrawnSystem, engine: Engine, folder: Path) -> None:
    settings_ = Settings(database_url=engine.url.render_as_string(hide_password=False), var_dir=folder,
                         rate_limit_per_minute=100_000, pseudonym_key="generative")
    for extract in system.extracts:
        result = ingest_file(engine, write_extract(extract, folder), provider_code=extract.code,
                             profile="canonical", settings=settings_)
        assert result.status == "loaded", result.message
        assert result.rows_loaded == len(extract.rows), (result.rejections, extract.fields)
        assert result.linking is not None and result.linking.status == "linked", result.linking

    snapshot = load_snapshot(engine)
    current = snapshot.current
    assert current.height == sum(len(e.rows) for e in system.extracts)

    # The shared queue: one row per need, for the whole system and for each provider.
    queue = shared_queue(current)
    assert queue.height == system.expected_needs
    expected_rows = [{c: r[c] for c in QUEUE_COLUMNS} for r in reference_queue(current, ViewFilter())]
    assert queue.to_dicts() == expected_rows
    for provider, held in system.needs_at.items():
        assert shared_queue(current, ViewFilter(provider_code=provider)).height == held

    # Site statistics count the same needs, at every grouping.
    for by in ((), ("provider_code",), ("provider_code", "site_code")):
        stats = site_stats(snapshot, ViewFilter(), by)
        assert int(stats["open_pathways"].sum() or 0) == system.expected_needs
    for provider in system.needs_at:
        f = ViewFilter(provider_code=provider)
        assert int(site_stats(snapshot, f, ())["open_pathways"].sum() or 0) == system.needs_at[provider]

    class _Generated:  # what reference_site_stats reads
        def __init__(self) -> None:
            self.current, self.history = current, snapshot.history

    assert_rows_equal(site_stats(snapshot, ViewFilter(), ("provider_code",)).to_dicts(),
                      reference_site_stats(_Generated(), ViewFilter(), ("provider_code",)))  # type: ignore[arg-type]

    # Equity: every dimension runs and counts each need once; absent fields are `Unknown`.
    for by in REFERENCE_GROUPS:
        groups = equity(current, by).groups
        assert int(groups["open_pathways"].sum()) == system.expected_needs

    # Validation: every worklist runs; the duplicate list holds exactly the shared needs.
    for kind in WORKLIST_KINDS:
        worklist(snapshot, kind)
    duplicates = worklist(snapshot, "duplicate_pathways")
    assert duplicates.height == 2 * system.shared_needs

    # Data quality: a share of NHS numbers is 1 where sent filled, 0 where absent or empty.
    quality = {r["provider_code"]: r for r in data_quality(snapshot).to_dicts()}
    for extract in system.extracts:
        sent = extract.fields.get("nhs_number") == "filled"
        assert quality[extract.code]["nhs_number_share"] == (1.0 if sent else 0.0)

    for tfc in set(current["treatment_function_code"].to_list()):
        equalisation(snapshot, ViewFilter(treatment_function_code=tfc))

    # Every endpoint, as JSON and as CSV, answers for a coordinator.
    key = create_key(engine, "QWO", "icb", "generative")[1]
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(app=create_app(settings_, engine)) as client:
        paths = ["/api/v1/queue", "/api/v1/sites/stats?by=site", "/api/v1/sites/stats?by=system",
                 "/api/v1/data-quality", "/api/v1/equalisation?treatment_function=110",
                 *[f"/api/v1/equity?by={by}&trend=true" for by in REFERENCE_GROUPS],
                 *[f"/api/v1/validation?kind={kind}" for kind in WORKLIST_KINDS]]
        for path in paths:
            for output in ("json", "csv"):
                separator = "&" if "?" in path else "?"
                answer = client.get(f"{path}{separator}format={output}" if output == "csv" else path,
                                    headers=headers)
                assert answer.status_code == 200, (path, output, answer.text[:300])
        system_row = client.get("/api/v1/sites/stats?by=system", headers=headers).json()
        assert sum(r["open_pathways"] or 0 for r in system_row["items"]) == system.expected_needs


@pytest.mark.parametrize("backend", [pytest.param("sqlite", marks=pytest.mark.sqlite),
                                     pytest.param("postgres", marks=pytest.mark.postgres)])
@settings(max_examples=examples(6), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(system=systems())
def test_any_column_set_loads_links_and_counts_each_need_once(
        backend: str, system: DrawnSystem, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("generative")
    for engine in _fresh_store(backend, folder):
        check_system(system, engine, folder)


def test_a_sparse_system_of_required_fields_and_nhs_numbers_only(tmp_path: Path) -> None:
    """The commonest independent-sector shape, every provider alike: no demographics at all."""
    people = range(6)
    extracts = [ProviderExtract(p, "csv", {"nhs_number": "filled"}, [
        {"pathway_id": f"{p}-PPI{i}", "local_patient_id": f"{p}-{i}", "nhs_number": nhs_number(2000 + 10 * i),
         "rtt_start_date": CENSUS - dt.timedelta(days=30 * i + k), "waiting_list_type": "IRTT",
         "treatment_function_code": "110", "census_date": CENSUS, "provider_code": p}
        for i in people]) for k, p in enumerate(("RAA", "NCC"))]
    system = DrawnSystem(extracts, expected_needs=6, needs_at={"RAA": 6, "NCC": 6}, shared_needs=6)
    for engine in _fresh_store("sqlite", tmp_path):
        check_system(system, engine, tmp_path)
