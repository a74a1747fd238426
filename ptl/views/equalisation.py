"""Wait equalisation for one treatment function: where waits differ, and a proposal to even them.

A proposal for people to review, never an action: nothing here writes to the store.

Per site (provider + site), on the capacity queue (open RTT, not P5/P6; `ptl.views.sites`):
queue Q, weekly removals R (throughput, from the census history), weekly additions A, and the
expected wait of a new addition W = Q / R. Sites with no measured throughput (R null or 0) take
no part in the proposal (`role` = "unmeasured").

Convergence point: the pooled wait W* = ΣQ / ΣR over the measured sites, the wait every site
would have if the same patients were spread in proportion to throughput. A site's target queue
is W*·R. Sites above it send, sites below it receive:

- a sender offers min(⌊Q − W*·R⌋, eligible patients at the site);
- a receiver takes at most min(⌊W*·R − Q⌋, ⌊spare × horizon_weeks⌋) where spare = max(R − A, 0)
  is the weekly capacity it has beyond its own demand (horizon: 1 week by default, i.e. the
  moves its spare capacity absorbs in a week);
- senders (longest expected wait first) are matched to receivers (shortest expected wait first)
  in order, each taking as much as both sides allow (the north-west-corner rule over cumulative
  totals; one vectorised interval overlap, no loops).

Patients who would move first, per sender: eligible = on the shared queue (one row per need),
a known clock start, not booked (no TCI date), not deferred (not P5/P6); longest wait first,
then pathway id. Clinical eligibility for a particular receiver (ASA, BMI, day case…) belongs to
capacity matching (`ptl.matching`), which turns accepted proposals into offers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import polars as pl

from ptl.views.filters import FILTER_COLUMNS, ViewFilter
from ptl.views.order import sort_integers
from ptl.views.queue import provider_rows, shared_queue
from ptl.views.sites import site_stats
from ptl.views.snapshot import Snapshot

DEFAULT_HORIZON_WEEKS: Final[float] = 1.0

SITE_COLUMNS: Final[tuple[str, ...]] = (
    "provider_code", "site_code", "role", "capacity_queue", "weekly_additions",
    "weekly_removals", "expected_wait_weeks", "spare_per_week", "target_queue",
    "eligible_to_move", "patients_out", "patients_in", "expected_wait_after_weeks",
)
MOVE_COLUMNS: Final[tuple[str, ...]] = (
    "from_provider_code", "from_site_code", "to_provider_code", "to_site_code", "patients",
)
PATIENT_COLUMNS: Final[tuple[str, ...]] = (
    "move_order", "id", "person_id", "provider_code", "site_code", "to_provider_code",
    "to_site_code", "clinical_priority", "procedure_code", "rtt_start_date", "days_waited",
    "weeks_waited", "imd_quintile", "ethnic_group", "age_band",
)


@dataclass(frozen=True)
class EqualisationProposal:
    """Spread of expected waits, the per-site picture, the moves and who would move first."""

    filters: ViewFilter
    pooled_wait_weeks: float | None
    #: min / max / range / median expected wait now, and min / max / range after the moves
    spread: dict[str, float | None]
    sites: pl.DataFrame
    moves: pl.DataFrame
    patients: pl.DataFrame


def _site_key() -> pl.Expr:
    return pl.concat_str(pl.col("provider_code"), pl.lit("|"),
                         pl.col("site_code").fill_null("")).alias("site_key")


def _spread(values: pl.Series) -> dict[str, float | None]:
    known = values.drop_nulls()
    if known.len() == 0:
        return {"min": None, "max": None, "range": None, "median": None}
    low, high = float(known.min()), float(known.max())  # type: ignore[arg-type]
    return {"min": low, "max": high, "range": high - low, "median": float(known.median())}  # type: ignore[arg-type]


def _eligible(current: pl.DataFrame, filters: ViewFilter) -> pl.DataFrame:
    """The shared queue's rows for `filters` that could move (`PATIENT_COLUMNS` it has, and
    `site_key`): known clock start, no TCI date, not deferred. The whole queue's eligible rows
    are narrowed once per frame (what a filter reads included), then filtered as
    `shared_queue` filters: the same rows."""
    from ptl.views.snapshot import once_per_frame

    def narrow() -> pl.DataFrame:
        whole = shared_queue(current)
        kept = list(dict.fromkeys([c for c in PATIENT_COLUMNS if c in whole.columns]
                                  + [*FILTER_COLUMNS, "also_at"]))
        return whole.filter(~pl.col("deferred") & pl.col("tci_date").is_null()
                            & pl.col("days_waited").is_not_null()).select(*kept, _site_key())

    rows = filters.apply(once_per_frame(current, "equalisation_eligible", narrow), provider=False)
    if filters.provider_code is not None:
        rows = rows.filter(provider_rows(filters.provider_code))
    return rows.select(*[c for c in PATIENT_COLUMNS if c in rows.columns], "site_key")


def equalisation(snapshot: Snapshot, filters: ViewFilter,
                 horizon_weeks: float = DEFAULT_HORIZON_WEEKS) -> EqualisationProposal:
    """The proposal for `filters` (treatment function required; procedure, priority band and
    list type optional). Columns: `sites` `SITE_COLUMNS`, `moves` `MOVE_COLUMNS`, `patients`
    `PATIENT_COLUMNS`. Formulas: the module docstring."""
    if filters.treatment_function_code is None:
        raise ValueError("equalisation compares sites for one treatment function: give "
                         "treatment_function_code")
    stats = site_stats(snapshot, filters).with_columns(_site_key())
    # Each site's patients ranked by longest wait, then id: sorted by those two keys, the rows
    # of a site come in that order, and the rank counts them per site.
    eligible = (
        sort_integers(_eligible(snapshot.current, filters), ["days_waited", "id"], [True, False])
        .with_columns(pl.int_range(pl.len()).over("site_key").alias("rank"))
    )
    eligible_counts = eligible.group_by("site_key").agg(pl.len().cast(pl.Int64).alias("eligible_to_move"))
    measured = pl.col("weekly_removals").fill_null(0) > 0
    totals = stats.filter(measured).select(
        pl.col("capacity_queue").sum().alias("q"), pl.col("weekly_removals").sum().alias("r"))
    pooled = (float(totals["q"][0]) / float(totals["r"][0])
              if totals.height and totals["r"][0] else None)

    sites = (
        stats.join(eligible_counts, on="site_key", how="left")
        .with_columns(pl.col("eligible_to_move").fill_null(0))
        .with_columns(
            pl.when(measured).then(pl.lit(pooled, pl.Float64) * pl.col("weekly_removals"))
            .alias("target_queue"),
            pl.when(measured).then(
                (pl.col("weekly_removals") - pl.col("weekly_additions").fill_null(0)).clip(0)
            ).alias("spare_per_week"),
        )
        .with_columns(
            pl.when(measured & (pl.col("capacity_queue") > pl.col("target_queue")))
            .then(pl.min_horizontal((pl.col("capacity_queue") - pl.col("target_queue")).floor(),
                                    pl.col("eligible_to_move")))
            .otherwise(0).cast(pl.Int64).alias("supply"),
            pl.when(measured & (pl.col("capacity_queue") < pl.col("target_queue")))
            .then(pl.min_horizontal((pl.col("target_queue") - pl.col("capacity_queue")).floor(),
                                    (pl.col("spare_per_week") * horizon_weeks).floor()))
            .otherwise(0).cast(pl.Int64).alias("demand"),
        )
    )
    senders = (sites.filter(pl.col("supply") > 0)
               .sort(["expected_wait_weeks", "site_key"], descending=[True, False])
               .select("site_key", "provider_code", "site_code",
                       (pl.col("supply").cum_sum() - pl.col("supply")).alias("s_from"),
                       pl.col("supply").cum_sum().alias("s_to")))
    receivers = (sites.filter(pl.col("demand") > 0)
                 .sort(["expected_wait_weeks", "site_key"])
                 .select(pl.col("site_key").alias("to_site_key"),
                         pl.col("provider_code").alias("to_provider_code"),
                         pl.col("site_code").alias("to_site_code"),
                         (pl.col("demand").cum_sum() - pl.col("demand")).alias("r_from"),
                         pl.col("demand").cum_sum().alias("r_to")))
    # North-west corner: the flow between a sender and a receiver is the overlap of their
    # intervals on the cumulative scale (senders' supply vs receivers' room).
    pairs = (
        senders.join(receivers, how="cross")
        .with_columns((pl.min_horizontal("s_to", "r_to") - pl.max_horizontal("s_from", "r_from"))
                      .alias("patients"))
        .filter(pl.col("patients") > 0)
        .sort("s_from", "r_from")
    )
    moves = pairs.select(
        pl.col("provider_code").alias("from_provider_code"),
        pl.col("site_code").alias("from_site_code"),
        "to_provider_code", "to_site_code", pl.col("patients").cast(pl.Int64),
    )
    out = pairs.group_by("site_key").agg(pl.col("patients").sum().alias("patients_out"))
    into = pairs.group_by("to_site_key").agg(pl.col("patients").sum().alias("patients_in"))
    sites = (
        sites.join(out, on="site_key", how="left")
        .join(into, left_on="site_key", right_on="to_site_key", how="left")
        .with_columns(pl.col("patients_out", "patients_in").fill_null(0).cast(pl.Int64))
        .with_columns(
            pl.when(~measured).then(pl.lit("unmeasured"))
            .when(pl.col("supply") > 0).then(pl.lit("sends"))
            .when(pl.col("demand") > 0).then(pl.lit("receives"))
            .otherwise(pl.lit("balanced")).alias("role"),
            pl.when(measured).then(
                (pl.col("capacity_queue") - pl.col("patients_out") + pl.col("patients_in"))
                / pl.col("weekly_removals")).alias("expected_wait_after_weeks"),
        )
        .sort("provider_code", "site_code", nulls_last=True)
    )

    # Each sender's patients, longest wait first, are dealt to its receivers in move order:
    # patient rank k goes to the move whose cumulative interval [start, end) holds k.
    sender_moves = pairs.with_columns(
        (pl.col("patients").cum_sum().over("site_key") - pl.col("patients")).alias("start"),
    ).select("site_key", "start", "to_provider_code", "to_site_code",
             (pl.col("start") + pl.col("patients")).alias("end"))
    patients = (
        eligible.join(out, on="site_key", how="inner")
        .filter(pl.col("rank") < pl.col("patients_out"))
        .sort("rank")
        .join_asof(sender_moves.sort("start"), left_on="rank", right_on="start", by="site_key", check_sortedness=False,
                   strategy="backward")
        .sort(["site_key", "rank"])
        .with_columns((pl.col("rank") + 1).cast(pl.Int64).alias("move_order"))
        .sort(["provider_code", "site_code", "move_order"], nulls_last=True)
        .select(PATIENT_COLUMNS)
    )
    spread = {f"expected_wait_{k}": v for k, v in _spread(sites["expected_wait_weeks"]).items()}
    after = _spread(sites["expected_wait_after_weeks"])
    spread.update({f"after_{k}": after[k] for k in ("min", "max", "range")})
    return EqualisationProposal(
        filters=filters,
        pooled_wait_weeks=pooled,
        spread=spread,
        sites=sites.select(SITE_COLUMNS),
        moves=moves,
        patients=patients,
    )
