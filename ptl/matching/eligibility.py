"""Candidates for capacity offers: who may take which offer, and for everyone else, why not.

The population of a run is every open RTT pathway on the current list whose treatment function
one of the offers is for (narrowed by the run's filters). From it:

1. pathway-level exclusions (Polars, whole columns): deferred by the patient (P5/P6), booked
   (a TCI date within 8 weeks of the run date), already in a live transfer, or a duplicate of
   the same person's pathway for the same treatment function (the earliest clock start stays);
2. candidate × offer pairs, per treatment function in blocks of a bounded number of cells
   (NumPy broadcasting; no loop over rows): every limit of the offer is checked and each failure
   sets one bit of a per-pair mask; the distance from the patient's LSOA centroid to the offer's
   site is computed from a per-run LSOA × site matrix; eligible pairs that provably cannot be in
   any optimal assignment are dropped (`_PRUNING`), which keeps the solver's graph small;
3. eligible pairs (mask 0) become arcs for the solver; a candidate with no eligible pair is
   unassigned with the failures of its *nearest-to-eligible* pair (fewest failed limits, then
   the first offer): reason ``out_of_range`` when only travel limits failed, else
   ``ineligible``, and the detail names the offer, the limit and the patient's value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import polars as pl

from ptl import codes
from ptl.matching.geography import haversine_miles
from ptl.matching.offer import Offer

#: A TCI date this close after the run date means the patient is booked (PIDMAS: 8 weeks).
BOOKED_WITHIN_DAYS: Final[int] = 56
#: Distances are compared and optimised in tenths of a mile (the solver needs integers).
DISTANCE_UNITS_PER_MILE: Final[int] = 10
#: Cells (candidates × offers) checked at once: bounds memory to ~100 MB whatever the size.
BLOCK_CELLS: Final[int] = 4_000_000
#: Refuse runs that would check more pairs than this (minutes of work, gigabytes of arcs).
MAX_PAIRS: Final[int] = 200_000_000
#: The LSOA × site distance matrix is built whole up to this many cells, else per block.
MAX_MATRIX_CELLS: Final[int] = 20_000_000

#: Priority bands of the objective, most urgent first; unknown P-code is the last band.
PRIORITY_BANDS: Final[tuple[str, ...]] = ("P1", "P2", "P3", "P4", "unknown")
_BAND_OF_PRIORITY: Final[dict[str, int]] = {"P1a": 0, "P1b": 0, "P2": 1, "P3": 2, "P4": 3}
_PATIENT_LIMIT_MILES: Final[dict[str, float]] = {"50": 50.0, "100": 100.0}

# One bit per limit a pair can fail, with the words the detail uses.
FAIL_PROCEDURE: Final[int] = 1 << 0
FAIL_OWN_PROVIDER: Final[int] = 1 << 1
FAIL_PRIORITY: Final[int] = 1 << 2
FAIL_ASA: Final[int] = 1 << 3
FAIL_BMI: Final[int] = 1 << 4
FAIL_AGE: Final[int] = 1 << 5
FAIL_DAY_CASE: Final[int] = 1 << 6
FAIL_INTERPRETER: Final[int] = 1 << 7
FAIL_OUT_OF_AREA: Final[int] = 1 << 8
FAIL_OFFER_DISTANCE: Final[int] = 1 << 9
FAIL_PATIENT_DISTANCE: Final[int] = 1 << 10
TRAVEL_FAILURES: Final[int] = FAIL_OFFER_DISTANCE | FAIL_PATIENT_DISTANCE
_POPCOUNT: Final[np.ndarray] = np.array([bin(i).count("1") for i in range(1 << 11)], dtype=np.int8)

#: Columns of the snapshot a run reads.
CANDIDATE_COLUMNS: Final[tuple[str, ...]] = (
    "id", "provider_code", "pathway_id", "pathway_id_issuer", "person_id", "source_identity_id",
    "treatment_function_code", "procedure_code", "clinical_priority", "rtt_status", "is_rtt",
    "waiting_list_type", "rtt_start_date", "days_waited", "tci_date", "asa_grade", "bmi",
    "age_years", "intended_management", "interpreter_required", "travel_willingness", "lsoa11",
    "imd_quintile", "ethnic_group", "age_band", "sex", "learning_disability",
)


class MatchingError(ValueError):
    """A matching run cannot be done as asked; the message says why and what to change."""


@dataclass(frozen=True, slots=True)
class CandidateFilter:
    """Optional narrowing of a run's population (None = no condition)."""

    #: sending providers whose patients may be matched
    provider_codes: tuple[str, ...] | None = None
    waiting_list_type: str | None = None
    min_days_waited: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in
                (("provider_codes", self.provider_codes), ("waiting_list_type", self.waiting_list_type),
                 ("min_days_waited", self.min_days_waited)) if v is not None}


@dataclass(frozen=True, slots=True)
class Geography:
    """Reference geography of a run: LSOA centroids, site coordinates, provider ICBs."""

    centroids: pl.DataFrame  # lsoa11, latitude, longitude
    sites: pl.DataFrame  # site_code, site_latitude, site_longitude
    icbs: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(
        schema={"provider_code": pl.String, "icb_code": pl.String}))


@dataclass
class CandidatePool:
    """The candidates of a run and the pairs the solver may choose from.

    `pool` has one row per candidate (index = row position) with `band` and `days` for the
    objective; `pair_*` arrays are the eligible candidate–offer pairs; `unassignable` holds
    the population rows that cannot take any offer (id, reason, detail).
    """

    population: pl.DataFrame
    pool: pl.DataFrame
    pair_candidate: np.ndarray  # int32, row of `pool`
    pair_offer: np.ndarray  # int32, position in the run's offers
    pair_distance: np.ndarray  # int32, tenths of a mile; `unknown_distance` when not known
    unknown_distance: int
    unassignable: pl.DataFrame  # id, reason, detail
    #: per pool row: eligible offers (before pruning), nearest eligible offer position (-1: none)
    #: and its distance in tenths of a mile (-1: unknown): the words of "outranked"
    eligible_offers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    nearest_offer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    nearest_units: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    #: per offer position: index of its treatment function (pairs never cross treatment functions)
    offer_group: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    pairs_checked: int = 0
    eligible_pairs: int = 0


def open_rtt(frame: pl.DataFrame) -> pl.Expr:
    """Open RTT pathway: on an RTT list, not carrying a clock-stop status."""
    return (pl.col("is_rtt").fill_null(False)
            & ~pl.col("rtt_status").is_in(sorted(codes.RTT_CLOCK_STOP_STATUSES)).fill_null(False))


def _population(current: pl.DataFrame, offers: Sequence[Offer], filters: CandidateFilter) -> pl.DataFrame:
    missing = [c for c in CANDIDATE_COLUMNS if c not in current.columns]
    if missing:
        raise MatchingError(f"the list snapshot lacks columns {', '.join(missing)}; upgrade the store")
    functions = sorted({o.treatment_function_code for o in offers})
    condition = open_rtt(current) & pl.col("treatment_function_code").is_in(functions)
    if filters.provider_codes:
        condition &= pl.col("provider_code").is_in(list(filters.provider_codes))
    if filters.waiting_list_type:
        condition &= pl.col("waiting_list_type") == filters.waiting_list_type
    if filters.min_days_waited is not None:
        condition &= pl.col("days_waited").fill_null(-1) >= filters.min_days_waited
    return current.select(CANDIDATE_COLUMNS).filter(condition).sort("id")


def _pathway_exclusions(population: pl.DataFrame, as_of: dt.date, in_transfer: pl.DataFrame) -> pl.DataFrame:
    """`id, reason, detail` of population rows excluded before any offer is considered."""
    booked_until = min(as_of, dt.date.max - dt.timedelta(days=BOOKED_WITHIN_DAYS)) + dt.timedelta(
        days=BOOKED_WITHIN_DAYS)
    # Keyed by the provider's pathway key: store row ids change with every census.
    live = in_transfer.select("pathway_id_issuer", "pathway_id", "transfer_id", "transfer_state") \
        .unique(["pathway_id_issuer", "pathway_id"], keep="last")
    keyed = population.join(live, on=["pathway_id_issuer", "pathway_id"], how="left", maintain_order="left")
    # Duplicates: same person and treatment function twice; keep the earliest clock start.
    ranked = keyed.with_columns(
        pl.when(pl.col("person_id").is_not_null())
        .then(pl.col("id").sort_by(["rtt_start_date", "days_waited", "id"], descending=[False, True, False],
                                   nulls_last=True).first().over("person_id", "treatment_function_code"))
        .alias("kept_id"),
    )
    detail = (
        pl.when(pl.col("clinical_priority").is_in(sorted(codes.DEFERRED_PRIORITIES)))
        .then(pl.lit("deferred by the patient (") + pl.col("clinical_priority")
              + pl.lit("): not waiting for capacity"))
        .when(pl.col("tci_date").is_between(as_of, booked_until))
        .then(pl.lit(f"booked: a TCI date within {BOOKED_WITHIN_DAYS // 7} weeks"))
        .when(pl.col("transfer_id").is_not_null())
        .then(pl.lit("in transfer ") + pl.col("transfer_id").cast(pl.String)
              + pl.lit(" (") + pl.col("transfer_state") + pl.lit(")"))
        .when(pl.col("kept_id").is_not_null() & (pl.col("kept_id") != pl.col("id")))
        .then(pl.lit("duplicate: the same person waits for this treatment function on pathway row ")
              + pl.col("kept_id").cast(pl.String) + pl.lit(", which is matched instead"))
    )
    return (ranked.select("id", detail.alias("detail")).filter(pl.col("detail").is_not_null())
            .with_columns(pl.lit("ineligible").alias("reason")).select("id", "reason", "detail"))


@dataclass
class _OfferArrays:
    """Offer attributes as arrays (position = offer index in the run)."""

    ids: np.ndarray
    provider: np.ndarray  # int32 code into the provider vocabulary
    icb: np.ndarray  # int32 code, -1 unknown
    site_row: np.ndarray  # int32 row in the site matrix
    max_asa: np.ndarray  # float64, inf = none
    max_bmi: np.ndarray
    min_age: np.ndarray  # float64, -inf = none
    max_age: np.ndarray
    day_case_only: np.ndarray  # bool
    no_interpreter: np.ndarray  # bool
    in_area_only: np.ndarray  # bool
    max_distance: np.ndarray  # float64, inf = none
    priority_ok: np.ndarray  # bool [offers, 5 priority codes + unknown]
    has_procedures: np.ndarray  # bool


def _codes_of(values: pl.Series, vocabulary: dict[str, int]) -> np.ndarray:
    """Integer codes of a string column in `vocabulary` (-1 for null or absent)."""
    mapping = pl.DataFrame({"value": list(vocabulary), "code": list(vocabulary.values())},
                           schema={"value": pl.String, "code": pl.Int32})
    coded = pl.DataFrame({"value": values.cast(pl.String)}).join(mapping, on="value", how="left",
                                                                    maintain_order="left")
    return coded["code"].fill_null(-1).to_numpy().astype(np.int32)


def build_pool(
    current: pl.DataFrame,
    offers: Sequence[Offer],
    geography: Geography,
    *,
    as_of: dt.date,
    filters: CandidateFilter | None = None,
    in_transfer: pl.DataFrame | None = None,
    capacities: Sequence[int] | None = None,
) -> CandidatePool:
    """Candidates, eligible pairs and reasons for everyone who cannot take any offer.

    Pairs that can never be in an optimal assignment are pruned as they are found (see
    `_PRUNING`); `eligible_offers`/`nearest_offer` still count every eligible pair.
    """
    if not offers:
        raise MatchingError("no offers to match: give at least one offer id")
    filters = filters or CandidateFilter()
    if in_transfer is None:
        in_transfer = pl.DataFrame(schema={"pathway_id_issuer": pl.String, "pathway_id": pl.String,
                                           "transfer_id": pl.Int64, "transfer_state": pl.String})
    population = _population(current, offers, filters)
    excluded = _pathway_exclusions(population, as_of, in_transfer)
    pool = (population.join(excluded.select("id"), on="id", how="anti", maintain_order="left")
            .with_columns(
                pl.col("clinical_priority").replace_strict(_BAND_OF_PRIORITY, default=len(PRIORITY_BANDS) - 1,
                                                           return_dtype=pl.Int8)
                .fill_null(len(PRIORITY_BANDS) - 1).alias("band"),
                pl.col("days_waited").fill_null(0).clip(lower_bound=0).cast(pl.Int64).alias("days"),
            )
            .join(geography.centroids.rename({"latitude": "home_latitude", "longitude": "home_longitude"}),
                  on="lsoa11", how="left", maintain_order="left")
            .join(geography.icbs.rename({"icb_code": "home_icb"}), on="provider_code", how="left",
                  maintain_order="left"))

    site_table = geography.sites.filter(pl.col("site_code").is_in([o.site_code for o in offers]))
    missing_sites = sorted({o.site_code for o in offers} - set(site_table["site_code"].to_list()))
    if missing_sites:
        raise MatchingError(f"site {', '.join(missing_sites)} has no coordinates: load sites with "
                            "`ptl refdata load sites FILE`")
    arrays, vocab = _offer_arrays(offers, site_table, geography.icbs)

    n = pool.height
    cand_provider = _codes_of(pool["provider_code"], vocab["provider"])
    cand_icb = _codes_of(pool["home_icb"], vocab["icb"])
    cand_tf = pool["treatment_function_code"].to_numpy()
    asa = pool["asa_grade"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    bmi = pool["bmi"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    age = pool["age_years"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    day_case = pool["intended_management"].is_in(sorted(codes.DAY_CASE_MANAGEMENT)).fill_null(False).to_numpy()
    interpreter = pool["interpreter_required"].fill_null(False).to_numpy()
    priority_code = _codes_of(pool["clinical_priority"], {p: i for i, p in enumerate(_PRIORITY_COLUMNS)})
    priority_code = np.where(priority_code < 0, len(_PRIORITY_COLUMNS), priority_code)
    patient_limit = (pool["travel_willingness"].replace_strict(_PATIENT_LIMIT_MILES, default=np.inf,
                                                               return_dtype=pl.Float64)
                     .fill_null(np.inf).to_numpy())
    procedure_vocab = {c: i for i, c in enumerate(sorted(set(pool["procedure_code"].drop_nulls().to_list())))}
    cand_procedure = _codes_of(pool["procedure_code"], procedure_vocab)
    # Offer × procedure acceptance table; the last column is "no procedure recorded" (never accepted).
    procedure_ok = np.zeros((len(offers), len(procedure_vocab) + 1), dtype=bool)
    for position, offer in enumerate(offers):  # offers, not rows: at most a few thousand
        if offer.procedure_codes is None:
            procedure_ok[position, :] = True
        else:
            columns = [procedure_vocab[c] for c in offer.procedure_codes if c in procedure_vocab]
            procedure_ok[position, columns] = True
    cand_procedure = np.where(cand_procedure < 0, len(procedure_vocab), cand_procedure)

    # Distances: each distinct home LSOA to each offer site, once.
    home_lat = pool["home_latitude"].fill_null(np.nan).to_numpy()
    home_lon = pool["home_longitude"].fill_null(np.nan).to_numpy()
    lsoa_code, lsoa_index = np.unique(pool["lsoa11"].fill_null("").to_numpy().astype(str), return_inverse=True)
    site_lat = site_table["site_latitude"].to_numpy()
    site_lon = site_table["site_longitude"].to_numpy()
    matrix: np.ndarray | None = None
    if len(lsoa_code) * len(site_lat) <= MAX_MATRIX_CELLS:
        first_row = np.zeros(len(lsoa_code), dtype=np.int64)
        first_row[lsoa_index[::-1]] = np.arange(n)[::-1]
        matrix = haversine_miles(home_lat[first_row][:, None], home_lon[first_row][:, None],
                                 site_lat[None, :], site_lon[None, :]).astype(np.float32)

    slots = np.asarray(capacities if capacities is not None else [o.slots for o in offers], dtype=np.int64)
    # "Goodness" of a candidate for the objective's levels 1-2: higher band first, then longer wait.
    days = pool["days"].to_numpy().astype(np.int64)
    goodness = (len(PRIORITY_BANDS) - 1 - pool["band"].to_numpy().astype(np.int64)) * (int(days.max(initial=0)) + 1) + days
    pair_candidate: list[np.ndarray] = []
    pair_offer: list[np.ndarray] = []
    pair_distance: list[np.ndarray] = []
    best_mask = np.zeros(n, dtype=np.int32)
    best_offer = np.full(n, -1, dtype=np.int32)
    best_miles = np.full(n, np.nan, dtype=np.float32)
    eligible_offers = np.zeros(n, dtype=np.int32)
    nearest_offer = np.full(n, -1, dtype=np.int32)
    nearest_miles = np.full(n, np.nan, dtype=np.float32)
    offer_tf = np.array([o.treatment_function_code for o in offers])
    functions, offer_group = np.unique(offer_tf, return_inverse=True)
    pairs_checked = eligible_pairs = 0
    longest_units = -1  # over every eligible pair, pruned or not, so pruning changes no valuation
    for group, tf in enumerate(functions):  # treatment functions, not rows
        # Best candidates first, so each offer's pruning threshold is known by the time the
        # candidates it prunes come (see _PRUNING).
        cands = np.flatnonzero(cand_tf == tf)
        cands = cands[np.argsort(-goodness[cands], kind="stable")].astype(np.int32)
        offs = np.flatnonzero(offer_group == group).astype(np.int32)
        if len(cands) == 0:
            continue
        pairs_checked += len(cands) * len(offs)
        if pairs_checked > MAX_PAIRS:
            raise MatchingError(
                f"this run would check more than {MAX_PAIRS:,} patient–offer pairs; match fewer offers "
                "at once or narrow the candidates (provider_codes, waiting_list_type, min_days_waited)")
        group_slots = int(slots[offs].sum())
        seen = np.zeros(len(offs), dtype=np.int64)  # eligible candidates so far, per offer
        threshold = np.full(len(offs), np.iinfo(np.int64).min, dtype=np.int64)
        rows_per_block = max(1, BLOCK_CELLS // len(offs))
        for start in range(0, len(cands), rows_per_block):  # blocks of rows, each fully vectorised
            c = cands[start:start + rows_per_block]
            if matrix is not None:
                miles = matrix[lsoa_index[c][:, None], arrays.site_row[offs][None, :]]
            else:
                miles = haversine_miles(home_lat[c][:, None], home_lon[c][:, None],
                                        site_lat[arrays.site_row[offs]][None, :],
                                        site_lon[arrays.site_row[offs]][None, :]).astype(np.float32)
            mask = _failures(c, offs, arrays, miles, procedure_ok=procedure_ok, cand_procedure=cand_procedure,
                             cand_provider=cand_provider, cand_icb=cand_icb, priority_code=priority_code,
                             asa=asa, bmi=bmi, age=age, day_case=day_case, interpreter=interpreter,
                             patient_limit=patient_limit)
            eligible = mask == 0
            rows_index = np.arange(len(c))
            # Tallies for reasons, over every eligible pair (pruned or not).
            eligible_offers[c] = eligible.sum(axis=1)
            # Unknown distances rank after known ones but still before ineligible offers.
            nearest = np.argmin(np.where(eligible, np.nan_to_num(miles, nan=1e9), np.inf), axis=1)
            has = eligible[rows_index, nearest]
            nearest_offer[c] = np.where(has, offs[nearest], -1)
            nearest_miles[c] = np.where(has, miles[rows_index, nearest], np.nan)
            # Pruning: an offer's threshold is the goodness of its group_slots-th eligible candidate.
            running = seen[None, :] + np.cumsum(eligible, axis=0)
            reached = (running >= group_slots) & eligible & (threshold == np.iinfo(np.int64).min)[None, :]
            newly = reached.any(axis=0)
            first = np.argmax(reached, axis=0)
            threshold[newly] = goodness[c[first[newly]]]
            seen = running[-1]
            keep = eligible & (goodness[c][:, None] >= threshold[None, :])
            rows, cols = np.nonzero(keep)
            eligible_pairs += int(eligible.sum())
            longest = np.nanmax(np.where(eligible, miles, np.nan), initial=-1.0)
            longest_units = max(longest_units, int(_distance_units(np.array([longest]))[0]))
            pair_candidate.append(c[rows])
            pair_offer.append(offs[cols])
            pair_distance.append(_distance_units(miles[rows, cols]))
            # Nearest-to-eligible pair per candidate (fewest failures; argmin takes the first offer).
            closest = np.argmin(_POPCOUNT[mask], axis=1)
            best_mask[c] = mask[rows_index, closest]
            best_offer[c] = offs[closest]
            best_miles[c] = miles[rows_index, closest]

    pc = np.concatenate(pair_candidate) if pair_candidate else np.zeros(0, np.int32)
    po = np.concatenate(pair_offer) if pair_offer else np.zeros(0, np.int32)
    pd_ = np.concatenate(pair_distance) if pair_distance else np.zeros(0, np.int32)
    # An unknown distance (no home location) counts as just beyond the longest known one: a
    # patient whose journey is known and short is preferred, all else equal.
    unknown_distance = max(longest_units, 0) + 1
    pd_ = np.where(pd_ < 0, unknown_distance, pd_).astype(np.int32)

    no_pair = best_mask != 0
    reasons = _limit_reasons(pool, no_pair, best_mask, best_offer, best_miles, arrays, patient_limit, offers)
    unassignable = pl.concat([excluded, reasons], how="vertical")
    return CandidatePool(population=population, pool=pool, pair_candidate=pc.astype(np.int32),
                         pair_offer=po.astype(np.int32), pair_distance=pd_, unknown_distance=unknown_distance,
                         unassignable=unassignable, eligible_offers=eligible_offers, nearest_offer=nearest_offer,
                         nearest_units=_distance_units(nearest_miles), offer_group=offer_group.astype(np.int32),
                         pairs_checked=pairs_checked, eligible_pairs=eligible_pairs)


_PRUNING: Final[str] = """
Pruning (exact). Let C be the slots of all offers in a treatment function (pairs never cross
treatment functions). If candidate i is assigned to offer j in an optimal assignment, every
candidate strictly better than i (more urgent band, or same band and longer wait) who is
eligible for j is assigned too — otherwise swapping them for i on j improves level 1 or 2. Those
better candidates and i all hold slots of the same treatment function, so fewer than C of them
are strictly better. Hence a pair (i, j) where at least C strictly better candidates are eligible
for j is in no optimal assignment and is dropped: j's threshold is the goodness of its C-th
eligible candidate, and pairs below it go. The greedy baseline never uses a dropped pair either
(by the time i is reached, those better candidates have filled all C slots or j was full)."""


_PRIORITY_COLUMNS: Final[tuple[str, ...]] = ("P1a", "P1b", "P2", "P3", "P4")


def _offer_arrays(offers: Sequence[Offer], sites: pl.DataFrame, icbs: pl.DataFrame
                  ) -> tuple[_OfferArrays, dict[str, dict[str, int]]]:
    providers = sorted({o.provider_code for o in offers})
    icb_of = dict(zip(icbs["provider_code"].to_list(), icbs["icb_code"].to_list(), strict=True))
    icb_names = sorted({v for v in icb_of.values() if v})
    vocab = {"provider": {p: i for i, p in enumerate(providers)}, "icb": {c: i for i, c in enumerate(icb_names)}}
    site_row = {code: i for i, code in enumerate(sites["site_code"].to_list())}

    def limit(values: list[float | int | None], empty: float) -> np.ndarray:
        return np.array([empty if v is None else float(v) for v in values], dtype=np.float64)

    priority_ok = np.zeros((len(offers), len(_PRIORITY_COLUMNS) + 1), dtype=bool)
    for position, offer in enumerate(offers):  # offers, not rows
        if offer.priorities is None:
            priority_ok[position, :] = True
        else:
            priority_ok[position, [_PRIORITY_COLUMNS.index(p) for p in offer.priorities]] = True
    arrays = _OfferArrays(
        ids=np.array([o.id if o.id is not None else -1 for o in offers], dtype=np.int64),
        provider=np.array([vocab["provider"][o.provider_code] for o in offers], dtype=np.int32),
        icb=np.array([vocab["icb"].get(icb_of.get(o.provider_code) or "", -1) for o in offers], dtype=np.int32),
        site_row=np.array([site_row[o.site_code] for o in offers], dtype=np.int32),
        max_asa=limit([o.max_asa for o in offers], np.inf),
        max_bmi=limit([o.max_bmi for o in offers], np.inf),
        min_age=limit([o.min_age for o in offers], -np.inf),
        max_age=limit([o.max_age for o in offers], np.inf),
        day_case_only=np.array([o.day_case_only for o in offers], dtype=bool),
        no_interpreter=np.array([not o.interpreter_support for o in offers], dtype=bool),
        in_area_only=np.array([not o.accepts_out_of_area for o in offers], dtype=bool),
        max_distance=limit([o.max_distance_miles for o in offers], np.inf),
        priority_ok=priority_ok,
        has_procedures=np.array([o.procedure_codes is not None for o in offers], dtype=bool),
    )
    return arrays, vocab


def _failures(c: np.ndarray, offs: np.ndarray, arrays: _OfferArrays, miles: np.ndarray, *,
              procedure_ok: np.ndarray, cand_procedure: np.ndarray, cand_provider: np.ndarray,
              cand_icb: np.ndarray, priority_code: np.ndarray, asa: np.ndarray, bmi: np.ndarray,
              age: np.ndarray, day_case: np.ndarray, interpreter: np.ndarray,
              patient_limit: np.ndarray) -> np.ndarray:
    """Failure bits of every (candidate, offer) cell of one block: shape (len(c), len(offs))."""
    mask = np.zeros((len(c), len(offs)), dtype=np.int32)

    def fail(condition: np.ndarray, bit: int) -> None:
        mask[condition] |= bit

    fail(~procedure_ok[offs][:, cand_procedure[c]].T, FAIL_PROCEDURE)
    fail(cand_provider[c][:, None] == arrays.provider[offs][None, :], FAIL_OWN_PROVIDER)
    fail(~arrays.priority_ok[offs][:, priority_code[c]].T, FAIL_PRIORITY)
    # Unknown values fail a limit that is set: NaN compares False, so test "within" and negate.
    limit_asa = arrays.max_asa[offs][None, :]
    fail(~(asa[c][:, None] <= limit_asa) & np.isfinite(limit_asa), FAIL_ASA)
    limit_bmi = arrays.max_bmi[offs][None, :]
    fail(~(bmi[c][:, None] <= limit_bmi) & np.isfinite(limit_bmi), FAIL_BMI)
    low, high = arrays.min_age[offs][None, :], arrays.max_age[offs][None, :]
    fail(~((age[c][:, None] >= low) & (age[c][:, None] <= high)) & (np.isfinite(low) | np.isfinite(high)),
         FAIL_AGE)
    fail(arrays.day_case_only[offs][None, :] & ~day_case[c][:, None], FAIL_DAY_CASE)
    fail(arrays.no_interpreter[offs][None, :] & interpreter[c][:, None], FAIL_INTERPRETER)
    home, host = cand_icb[c][:, None], arrays.icb[offs][None, :]
    fail(arrays.in_area_only[offs][None, :] & (home >= 0) & (host >= 0) & (home != host), FAIL_OUT_OF_AREA)
    limit_offer = arrays.max_distance[offs][None, :]
    fail(~(miles <= limit_offer) & np.isfinite(limit_offer), FAIL_OFFER_DISTANCE)
    limit_patient = patient_limit[c][:, None]
    fail(~(miles <= limit_patient) & np.isfinite(limit_patient), FAIL_PATIENT_DISTANCE)
    return mask


def _distance_units(miles: np.ndarray) -> np.ndarray:
    """Miles → tenths of a mile (int32); -1 where the distance is unknown."""
    units = np.rint(np.nan_to_num(miles, nan=-1.0) * DISTANCE_UNITS_PER_MILE)
    return np.where(np.isnan(miles), -1, units).astype(np.int32)


def _limit_reasons(pool: pl.DataFrame, no_pair: np.ndarray, mask: np.ndarray, offer_pos: np.ndarray,
                   miles: np.ndarray, arrays: _OfferArrays, patient_limit: np.ndarray,
                   offers: Sequence[Offer]) -> pl.DataFrame:
    """`id, reason, detail` for candidates with no eligible pair, from their closest pair."""
    rows = np.flatnonzero(no_pair)
    if rows.size == 0:
        return pl.DataFrame(schema={"id": pl.Int64, "reason": pl.String, "detail": pl.String})
    pos = offer_pos[rows]
    offer_frame = pl.DataFrame({
        "offer_position": np.arange(len(offers), dtype=np.int32),
        "offer_id": arrays.ids,
        "offer_max_asa": [o.max_asa for o in offers],
        "offer_max_bmi": [o.max_bmi for o in offers],
        "offer_min_age": [o.min_age for o in offers],
        "offer_max_age": [o.max_age for o in offers],
        "offer_max_distance": [o.max_distance_miles for o in offers],
        "offer_provider": [o.provider_code for o in offers],
    }, schema_overrides={"offer_max_asa": pl.Int64, "offer_max_bmi": pl.Float64, "offer_min_age": pl.Int64,
                         "offer_max_age": pl.Int64, "offer_max_distance": pl.Float64})
    frame = (pool[rows].select("id", "procedure_code", "clinical_priority", "asa_grade", "bmi", "age_years",
                               "travel_willingness")
             .with_columns(pl.Series("mask", mask[rows]), pl.Series("offer_position", pos),
                           pl.Series("miles", miles[rows]).fill_nan(None).round(1),
                           pl.Series("patient_limit", patient_limit[rows]))
             .join(offer_frame, on="offer_position", how="left", maintain_order="left"))

    def has(bit: int) -> pl.Expr:
        return (pl.col("mask") & bit) != 0

    def value(name: str, missing: str) -> pl.Expr:
        return pl.col(name).cast(pl.String).fill_null(missing)

    miles_text = pl.when(pl.col("miles").is_null()).then(pl.lit("distance unknown (no home LSOA location)")) \
        .otherwise(pl.col("miles").cast(pl.String) + pl.lit(" miles"))
    parts = [
        pl.when(has(FAIL_PROCEDURE)).then(pl.lit("procedure ") + value("procedure_code", "not recorded")
                                          + pl.lit(" is not one the offer takes")),
        pl.when(has(FAIL_OWN_PROVIDER)).then(pl.lit("already waiting at ") + pl.col("offer_provider")),
        pl.when(has(FAIL_PRIORITY)).then(pl.lit("priority ") + value("clinical_priority", "not recorded")
                                         + pl.lit(" not accepted")),
        pl.when(has(FAIL_ASA)).then(pl.lit("ASA grade ") + value("asa_grade", "not recorded")
                                    + pl.lit(", offer takes up to ") + value("offer_max_asa", "")),
        pl.when(has(FAIL_BMI)).then(pl.lit("BMI ") + value("bmi", "not recorded")
                                    + pl.lit(", offer takes up to ") + value("offer_max_bmi", "")),
        pl.when(has(FAIL_AGE)).then(pl.lit("age ") + value("age_years", "not recorded")
                                    + pl.lit(", offer takes ") + value("offer_min_age", "0") + pl.lit("–")
                                    + value("offer_max_age", "any")),
        pl.when(has(FAIL_DAY_CASE)).then(pl.lit("not a day case (offer is day case only)")),
        pl.when(has(FAIL_INTERPRETER)).then(pl.lit("needs an interpreter; the site has no interpreter support")),
        pl.when(has(FAIL_OUT_OF_AREA)).then(pl.lit("outside the offering provider's ICB")),
        pl.when(has(FAIL_OFFER_DISTANCE)).then(miles_text + pl.lit(" from the site, offer's limit ")
                                               + value("offer_max_distance", "") + pl.lit(" miles")),
        pl.when(has(FAIL_PATIENT_DISTANCE)).then(miles_text + pl.lit(" from the site, beyond the patient's ")
                                                 + value("travel_willingness", "") + pl.lit("-mile travel limit")),
    ]
    return frame.select(
        pl.col("id"),
        pl.when((pl.col("mask") & ~TRAVEL_FAILURES) == 0).then(pl.lit("out_of_range"))
        .otherwise(pl.lit("ineligible")).alias("reason"),
        (pl.lit("offer ") + pl.col("offer_id").cast(pl.String) + pl.lit(" (closest): ")
         + pl.concat_str(parts, separator="; ", ignore_nulls=True)).alias("detail"),
    )
