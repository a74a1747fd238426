"""Validation worklists: the pathways (and rejected rows) someone must look at to keep the list true.

Kinds (`WORKLIST_KINDS`):
- `duplicate_pathways`: every member of a duplicate group (`ptl.views.duplicates`), grouped,
  with the one kept in system totals marked;
- `clock_stop_status`: open pathways carrying a clock-stop RTT status (30–36). Ingest rejects
  such rows, so the list is mostly the current feeds' rejected rows of kind
  `clock_stop_on_open_pathway` (shown by feed and row number; the raw row stays in the store);
- `clock_start`: unknown or future clock starts: loaded RTT pathways without a clock start
  (or one after their census), and the current feeds' rejected rows of kinds
  `clock_start_after_census` and `bad_date` on `rtt_start_date`;
- `not_validated`: open RTT pathways over 12, 26 or 52 weeks (week band ≥ 12/26/52, i.e. more
  than 84/182/364 days) not validated in the 12 weeks (84 days) before their census
  (`last_validated_date` empty or earlier); `wait_tier` says which threshold;
- `pcode_missing`: open admitted RTT pathways (IRTT) with no clinical priority (P-code);
- `identity_conflicts`: the identity review list (table `identity_review`, when present),
  identifying values left out.

Pathway worklists share `WORKLIST_COLUMNS`: `source` is "pathway" (a loaded pathway, `id` set)
or "rejected_row" (`feed_id` + `row_number` set, `issue` and `raw_value` from the row issue).
"""

from __future__ import annotations

from typing import Final

import polars as pl

from ptl import codes
from ptl.views.duplicates import duplicate_pathways, open_rtt_expr
from ptl.views.filters import FILTER_COLUMNS, NO_FILTER, ViewFilter
from ptl.views.order import sort_integers
from ptl.views.snapshot import Snapshot

WORKLIST_KINDS: Final[tuple[str, ...]] = (
    "duplicate_pathways", "clock_stop_status", "clock_start", "not_validated", "pcode_missing",
    "identity_conflicts",
)
#: Days without validation after which a long waiter is due (12 weeks).
VALIDATION_INTERVAL_DAYS: Final[int] = 84
#: Wait tiers for administrative validation, in weeks (highest first).
VALIDATION_TIERS: Final[tuple[int, ...]] = (52, 26, 12)

WORKLIST_COLUMNS: Final[tuple[str, ...]] = (
    "source", "id", "feed_id", "row_number", "provider_code", "site_code", "census_date",
    "pathway_id_issuer", "pathway_id", "person_id", "treatment_function_code",
    "waiting_list_type", "rtt_status", "rtt_start_date", "days_waited", "week_band",
    "clinical_priority", "last_validated_date", "issue", "raw_value",
    "duplicate_group", "keep", "wait_tier",
)
_PATHWAY_FIELDS: Final[tuple[str, ...]] = (
    "id", "feed_id", "provider_code", "site_code", "census_date", "pathway_id_issuer",
    "pathway_id", "person_id", "treatment_function_code", "waiting_list_type", "rtt_status",
    "rtt_start_date", "days_waited", "week_band", "clinical_priority", "last_validated_date",
)


def _narrow(current: pl.DataFrame) -> pl.DataFrame:
    """The columns a pathway worklist shows or filters on (filtering a narrow frame is several
    times cheaper than filtering every column)."""
    return current.select(list(dict.fromkeys((*_PATHWAY_FIELDS, *FILTER_COLUMNS, "is_rtt"))))


def _pathway_rows(frame: pl.DataFrame, issue: pl.Expr, **extra: pl.Expr) -> pl.DataFrame:
    return frame.select(
        pl.lit("pathway").alias("source"),
        *_PATHWAY_FIELDS,
        pl.lit(None, pl.Int64).alias("row_number"),
        issue.cast(pl.String).alias("issue"),
        pl.lit(None, pl.String).alias("raw_value"),
        extra.get("duplicate_group", pl.lit(None, pl.Int64)).alias("duplicate_group"),
        extra.get("keep", pl.lit(None, pl.Boolean)).alias("keep"),
        extra.get("wait_tier", pl.lit(None, pl.Int32)).cast(pl.Int32).alias("wait_tier"),
    ).select(WORKLIST_COLUMNS)


def _rejected_rows(snapshot: Snapshot, condition: pl.Expr, filters: ViewFilter) -> pl.DataFrame:
    """Rejected rows of the current feeds as worklist rows. Only the provider condition of the
    filter can apply: the other fields of a rejected row were never parsed into columns."""
    issues = snapshot.issues.filter(condition)
    if set(filters.as_dict()) - {"provider_code"}:
        # Filtered by specialty, site or priority: a rejected row cannot be placed; leave it out.
        issues = issues.clear()
    elif filters.provider_code is not None:
        issues = issues.filter(pl.col("provider_code") == filters.provider_code)
    return issues.select(
        pl.lit("rejected_row").alias("source"),
        pl.lit(None, pl.Int64).alias("id"),
        "feed_id", "row_number", "provider_code",
        pl.lit(None, pl.String).alias("site_code"),
        "census_date",
        *[pl.lit(None, dtype).alias(name) for name, dtype in (
            ("pathway_id_issuer", pl.String), ("pathway_id", pl.String), ("person_id", pl.Int64),
            ("treatment_function_code", pl.String), ("waiting_list_type", pl.String),
            ("rtt_status", pl.String), ("rtt_start_date", pl.Date), ("days_waited", pl.Int32),
            ("week_band", pl.Int32), ("clinical_priority", pl.String),
            ("last_validated_date", pl.Date))],
        pl.col("reason").alias("issue"),
        "raw_value",
        pl.lit(None, pl.Int64).alias("duplicate_group"),
        pl.lit(None, pl.Boolean).alias("keep"),
        pl.lit(None, pl.Int32).alias("wait_tier"),
    ).select(WORKLIST_COLUMNS)


def duplicate_worklist(snapshot: Snapshot, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    members = duplicate_pathways(snapshot.current)
    rows = snapshot.current.join(members, on="id", how="inner")
    # A provider filter shows whole groups that touch the provider: both sides need the call.
    selected = rows.filter(filters.expr(provider=False))
    if filters.provider_code is not None:
        touching = selected.filter(pl.col("provider_code") == filters.provider_code)["duplicate_group"]
        selected = selected.filter(pl.col("duplicate_group").is_in(touching.implode()))
    return _pathway_rows(
        selected.sort("duplicate_group", pl.col("keep").not_(), "id"),
        pl.col("reason"), duplicate_group=pl.col("duplicate_group"), keep=pl.col("keep"),
    )


def clock_stop_worklist(snapshot: Snapshot, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    loaded = snapshot.current.filter(
        pl.col("is_rtt").fill_null(False)
        & pl.col("rtt_status").is_in(sorted(codes.RTT_CLOCK_STOP_STATUSES)).fill_null(False)
        & filters.expr()
    ).sort("provider_code", "id")
    stop = pl.format("RTT status {} stops the clock but the pathway is on the open list",
                     pl.col("rtt_status"))
    return pl.concat([
        _pathway_rows(loaded, stop),
        _rejected_rows(snapshot, pl.col("kind") == "clock_stop_on_open_pathway", filters)
        .sort("provider_code", "feed_id", "row_number"),
    ])


def clock_start_worklist(snapshot: Snapshot, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    start = pl.col("rtt_start_date")
    loaded = snapshot.current.filter(
        pl.col("is_rtt").fill_null(False) & (start.is_null() | (start > pl.col("census_date")))
        & filters.expr()
    ).sort("provider_code", "id")
    issue = (pl.when(start.is_null()).then(pl.lit("no clock start on an RTT pathway"))
             .otherwise(pl.format("clock start {} is after the census date {}",
                                  start.dt.strftime("%Y-%m-%d"),
                                  pl.col("census_date").dt.strftime("%Y-%m-%d"))))
    rejected = (pl.col("kind") == "clock_start_after_census") | (
        (pl.col("kind") == "bad_date") & (pl.col("column_name") == "rtt_start_date"))
    return pl.concat([
        _pathway_rows(loaded, issue),
        _rejected_rows(snapshot, rejected, filters).sort("provider_code", "feed_id", "row_number"),
    ])


def not_validated_worklist(snapshot: Snapshot, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    band = pl.col("week_band")
    # The highest tier a wait has passed (tiers are in descending order).
    tier = pl.max_horizontal(*[pl.when(band >= weeks).then(weeks) for weeks in VALIDATION_TIERS])
    due = (pl.col("last_validated_date").is_null()
           | (pl.col("last_validated_date")
              < pl.col("census_date") - pl.duration(days=VALIDATION_INTERVAL_DAYS)))
    rows = (
        _narrow(snapshot.current).filter(open_rtt_expr() & (band >= VALIDATION_TIERS[-1]) & due
                                         & filters.expr())
        .with_columns(tier.alias("wait_tier"))
    )
    rows = sort_integers(rows, ["wait_tier", "days_waited", "id"], [True, True, False])
    last = pl.col("last_validated_date")
    issue = (pl.when(last.is_null())
             .then(pl.format("over {} weeks and not validated ever", pl.col("wait_tier")))
             .otherwise(pl.format("over {} weeks and not validated since {}", pl.col("wait_tier"),
                                  last.dt.strftime("%Y-%m-%d"))))
    return _pathway_rows(rows, issue, wait_tier=pl.col("wait_tier"))


def pcode_missing_worklist(snapshot: Snapshot, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    rows = _narrow(snapshot.current).filter(
        open_rtt_expr() & (pl.col("waiting_list_type") == "IRTT")
        & pl.col("clinical_priority").is_null() & filters.expr()
    )
    rows = sort_integers(rows, ["days_waited", "id"], [True, False], nulls_last=True)
    return _pathway_rows(rows, pl.lit("admitted pathway without a clinical priority (P-code)"))


def identity_conflicts_worklist(snapshot: Snapshot, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    """The open items of the identity review list as stored (identifying columns are excluded
    when read; values are text); a provider filter keeps items naming that provider. Empty,
    with a single `issue` column, while the identity tables do not exist."""
    review = snapshot.identity_review
    if review is None:
        return pl.DataFrame(schema={"issue": pl.String})
    if "resolved_at" in review.columns:
        review = review.filter(pl.col("resolved_at").is_null())
    if filters.provider_code is not None:
        if "provider_codes" in review.columns:
            listed = pl.col("provider_codes").str.split(",").list.eval(pl.element().str.strip_chars())
            review = review.filter(listed.list.contains(filters.provider_code).fill_null(False))
        elif "provider_code" in review.columns:
            review = review.filter(pl.col("provider_code") == filters.provider_code)
    return review


def worklist(snapshot: Snapshot, kind: str, filters: ViewFilter = NO_FILTER) -> pl.DataFrame:
    """The worklist of `kind` (one of `WORKLIST_KINDS`) for `filters`."""
    lists = {
        "duplicate_pathways": duplicate_worklist,
        "clock_stop_status": clock_stop_worklist,
        "clock_start": clock_start_worklist,
        "not_validated": not_validated_worklist,
        "pcode_missing": pcode_missing_worklist,
        "identity_conflicts": identity_conflicts_worklist,
    }
    if kind not in lists:
        raise ValueError(f"'{kind}' is not a validation worklist; use one of " + ", ".join(lists))
    return lists[kind](snapshot, filters)


def worklist_counts(snapshot: Snapshot, filters: ViewFilter = NO_FILTER) -> dict[str, int]:
    """How many items each worklist holds (for a summary page)."""
    return {kind: worklist(snapshot, kind, filters).height for kind in WORKLIST_KINDS}
