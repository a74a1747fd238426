"""The equity guard of mutual aid: who is moved, compared with who could be and who waits.

For every matching run, three populations are compared group by group on IMD quintile, ethnic
group, age band, sex, ASA grade and learning disability:

- **list**: the run's population, every open RTT pathway in the offers' treatment functions
  (after the run's filters), including those that could never be eligible;
- **eligible**: candidates eligible for at least one offer (before capacity runs out);
- **moved**: the candidates the run assigns.

Three shares are guarded: the most deprived quintile (IMD quintile 1, "Core20"), minority
ethnic groups (Mixed, Asian, Black, Other: not White, and not the not-stated/known group, which
is data quality, not ethnicity) and ASA grade 3 or higher. Each share is taken among those with
the value recorded. A guard is **flagged** when the moved share is below the list share by more
than `PTL_EQUITY_MARGIN_POINTS` percentage points (default 5); the report says whether the gap
already exists in the eligible pool (the offers' limits exclude the group) or arises in the
allocation. The guard measures and reports: it never changes who is assigned (clinical
priority and waiting time decide that), in line with the public deliberation in DOMAIN.md.

Transfers are reported by group the same way: acceptance by each receiving provider over time
(the independent-sector case-mix question) and declines (two declined reasonable offers can end
a patient's clock, so they must be visible by group).
"""

from __future__ import annotations

from typing import Any, Final

import polars as pl

#: Dimensions reported for every population (column, label).
DIMENSIONS: Final[tuple[tuple[str, str], ...]] = (
    ("imd_quintile", "IMD quintile (1 = most deprived)"),
    ("ethnic_group", "ethnic group"),
    ("age_band", "age band"),
    ("sex", "sex (1 male, 2 female, 9 indeterminate, X not known)"),
    ("asa_grade", "ASA grade"),
    ("learning_disability", "learning disability"),
)
MINORITY_ETHNIC_GROUPS: Final[tuple[str, ...]] = ("Mixed", "Asian", "Black", "Other")
NOT_RECORDED: Final[str] = "not recorded"
POPULATIONS: Final[tuple[str, ...]] = ("moved", "eligible", "list")


def _guards() -> list[tuple[str, str, pl.Expr, pl.Expr]]:
    """(key, words, is-in-group, value-recorded) for each guarded share."""
    return [
        ("imd_quintile_1", "most deprived quintile (IMD quintile 1)",
         pl.col("imd_quintile") == 1, pl.col("imd_quintile").is_not_null()),
        ("minority_ethnic", "minority ethnic groups (Mixed, Asian, Black, Other)",
         pl.col("ethnic_group").is_in(list(MINORITY_ETHNIC_GROUPS)),
         pl.col("ethnic_group").is_not_null() & (pl.col("ethnic_group") != "Not stated/known")),
        ("asa_3_plus", "ASA grade 3 or higher", pl.col("asa_grade") >= 3, pl.col("asa_grade").is_not_null()),
    ]


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def equity_report(moved: pl.DataFrame, eligible: pl.DataFrame, waiting: pl.DataFrame,
                  margin_points: float) -> dict[str, Any]:
    """The equity guard for one run (see the module docstring). Frames carry the dimension columns."""
    columns = [name for name, _ in DIMENSIONS]
    frames = [f.select(columns).with_columns(pl.lit(p).alias("population"))
              for p, f in zip(POPULATIONS, (moved, eligible, waiting), strict=True)]
    combined = pl.concat([f.cast({c: pl.String for c in columns}) for f in frames], how="vertical")
    totals = {p: f.height for p, f in zip(POPULATIONS, (moved, eligible, waiting), strict=True)}
    dimensions: dict[str, Any] = {}
    for name, label in DIMENSIONS:
        counts = (combined.with_columns(pl.col(name).fill_null(NOT_RECORDED).alias("group"))
                  .group_by("group", "population").len()
                  .pivot(on="population", index="group", values="len").fill_null(0))
        for p in POPULATIONS:
            if p not in counts.columns:
                counts = counts.with_columns(pl.lit(0, dtype=pl.UInt32).alias(p))
        rows = []
        for record in counts.sort("group").iter_rows(named=True):  # a handful of groups
            rows.append({"group": record["group"],
                         **{p: int(record[p]) for p in POPULATIONS},
                         **{f"{p}_pct": _pct(int(record[p]), totals[p]) for p in POPULATIONS}})
        dimensions[name] = {"label": label, "groups": rows}
    flags = []
    for key, words, in_group, recorded in _guards():
        shares: dict[str, float | None] = {}
        known: dict[str, int] = {}
        for p, frame in zip(POPULATIONS, (moved, eligible, waiting), strict=True):
            counted = frame.select(in_group.fill_null(False).sum().alias("n"), recorded.sum().alias("known"))
            known[p] = int(counted["known"][0])
            shares[p] = _pct(int(counted["n"][0]), known[p])
        gap_list = (None if shares["moved"] is None or shares["list"] is None
                    else round(shares["list"] - shares["moved"], 1))
        gap_eligible = (None if shares["moved"] is None or shares["eligible"] is None
                        else round(shares["eligible"] - shares["moved"], 1))
        pool_gap = (None if shares["eligible"] is None or shares["list"] is None
                    else round(shares["list"] - shares["eligible"], 1))
        flagged = gap_list is not None and gap_list > margin_points
        message = None
        if flagged:
            cause = ("the offers' limits already exclude them from the eligible pool"
                     if pool_gap is not None and pool_gap > margin_points else "it arises in the allocation")
            message = (f"moves under-represent {words}: {shares['moved']}% of those moved against "
                       f"{shares['list']}% of the list ({gap_list} points, margin {margin_points:g}); {cause}")
        flags.append({"measure": key, "label": words, "moved_pct": shares["moved"],
                      "eligible_pct": shares["eligible"], "list_pct": shares["list"],
                      "recorded": known, "gap_vs_list_points": gap_list,
                      "gap_vs_eligible_points": gap_eligible, "flagged": flagged, "message": message})
    return {"margin_points": margin_points, "populations": totals, "dimensions": dimensions,
            "flags": flags, "flagged": any(f["flagged"] for f in flags)}


#: Dimensions of the receiving-provider acceptance report (the IS case-mix question).
ACCEPTANCE_DIMENSIONS: Final[tuple[str, ...]] = ("asa_grade", "imd_quintile", "ethnic_group")
_DECIDED: Final[tuple[str, ...]] = ("accepted", "declined", "completed")


def acceptance_report(transfers: pl.DataFrame, period: str = "1mo") -> pl.DataFrame:
    """Per receiving provider, period (by proposal date), dimension and group: transfers proposed,
    accepted (incl. completed), declined, completed, and the acceptance rate among decided.

    `transfers` has the transfer table's columns; `period` is a Polars duration ("1w", "1mo").
    """
    schema = {"to_provider_code": pl.String, "period_start": pl.Date, "dimension": pl.String,
              "group": pl.String, "proposed": pl.UInt32, "accepted": pl.UInt32, "declined": pl.UInt32,
              "completed": pl.UInt32, "acceptance_rate_pct": pl.Float64}
    if transfers.height == 0:
        return pl.DataFrame(schema=schema)
    base = transfers.with_columns(pl.col("proposed_at").cast(pl.Date).dt.truncate(period).alias("period_start"))
    parts = []
    for dimension in ACCEPTANCE_DIMENSIONS:  # three dimensions
        parts.append(
            base.with_columns(pl.lit(dimension).alias("dimension"),
                              pl.col(dimension).cast(pl.String).fill_null(NOT_RECORDED).alias("group"))
            .group_by("to_provider_code", "period_start", "dimension", "group")
            .agg(pl.len().cast(pl.UInt32).alias("proposed"),
                 pl.col("state").is_in(["accepted", "completed"]).sum().cast(pl.UInt32).alias("accepted"),
                 (pl.col("state") == "declined").sum().cast(pl.UInt32).alias("declined"),
                 (pl.col("state") == "completed").sum().cast(pl.UInt32).alias("completed"),
                 pl.col("state").is_in(list(_DECIDED)).sum().alias("decided"))
        )
    return (pl.concat(parts, how="vertical")
            .with_columns(pl.when(pl.col("decided") > 0)
                          .then((100.0 * pl.col("accepted") / pl.col("decided")).round(1))
                          .alias("acceptance_rate_pct"))
            .drop("decided").sort("to_provider_code", "period_start", "dimension", "group")
            .select(list(schema)))


def decline_report(transfers: pl.DataFrame) -> pl.DataFrame:
    """Declines by group, for every reported dimension: offers made to patients, declines, the
    decline rate, and patients (pathways) with two or more declines (who may be put on active
    monitoring, which stops the clock)."""
    schema = {"dimension": pl.String, "group": pl.String, "offered": pl.UInt32, "declined": pl.UInt32,
              "decline_rate_pct": pl.Float64, "pathways_declined_twice_or_more": pl.UInt32}
    offered = transfers.filter(pl.col("state").is_in(["offered_to_patient", *_DECIDED]))
    if offered.height == 0:
        return pl.DataFrame(schema=schema)
    per_pathway = (offered.group_by("pathway_id_issuer", "pathway_id")
                   .agg((pl.col("state") == "declined").sum().alias("declines")))
    offered = offered.join(per_pathway, on=["pathway_id_issuer", "pathway_id"], how="left")
    parts = []
    for dimension, _ in DIMENSIONS:
        parts.append(
            offered.with_columns(pl.lit(dimension).alias("dimension"),
                                 pl.col(dimension).cast(pl.String).fill_null(NOT_RECORDED).alias("group"))
            .group_by("dimension", "group")
            .agg(pl.len().cast(pl.UInt32).alias("offered"),
                 (pl.col("state") == "declined").sum().cast(pl.UInt32).alias("declined"),
                 pl.struct("pathway_id_issuer", "pathway_id").filter(pl.col("declines") >= 2).n_unique()
                 .cast(pl.UInt32).alias("pathways_declined_twice_or_more"))
        )
    return (pl.concat(parts, how="vertical")
            .with_columns((100.0 * pl.col("declined") / pl.col("offered")).round(1).alias("decline_rate_pct"))
            .sort("dimension", "group").select(list(schema)))
