"""Scoring candidate pairs with Splink 5 in an in-memory DuckDB, inside a pair budget.

Only pairs that can change an answer are compared: at least one side has no deterministic NHS
number (two records with different verified numbers are two people), and in an incremental
run at least one side is pending (new or changed). Before predicting, Splink's blocking
analysis estimates the pair count; past `link_pair_budget` the run is refused, not attempted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import polars as pl

from ptl.identity.model import (
    BLOCKING_KEYS,
    COMPARISON_COLUMNS,
    IDENTIFYING_COMPARISONS,
    TERM_FREQUENCY_COLUMNS,
    UNIQUE_ID,
    blocking_rule,
    calibrated,
    key_columns,
    term_frequencies,
)

log = logging.getLogger("ptl.identity")

#: Records sampled on each side when estimating the pair count of a large input.
_BUDGET_SAMPLE_RECORDS = 200_000

EDGE_SCHEMA: dict[str, Any] = {
    "source_identity_id_l": pl.Int64, "source_identity_id_r": pl.Int64, "match_probability": pl.Float64,
}


class PairBudgetExceeded(Exception):
    """Blocking would compare more pairs than the configured budget allows."""


@dataclass(frozen=True)
class Scored:
    """Pairs at or above the threshold, how many pairs blocking compared (estimated), and
    why no pair was scored when the data left nothing to compare."""

    edges: pl.DataFrame
    pairs_estimated: int
    records_compared: int
    skipped: str | None = None


def candidate_records(features: pl.DataFrame, keys: list[tuple[str, ...]]) -> pl.DataFrame:
    """The pending records plus every record sharing a blocking key with one: nothing outside
    this set can be paired with a pending record, so it need not be handed to Splink."""
    pending = features.filter(pl.col("pending"))
    if pending.height == features.height:
        return features
    indexed = features.with_row_index("_row")
    hits = [
        indexed.join(pending.select(key).drop_nulls().unique(), on=list(key), how="semi")
        .select("_row")
        for key in keys
    ]
    rows = pl.concat(hits).unique() if hits else pl.DataFrame(schema={"_row": pl.UInt32})
    keep = indexed.join(rows, on="_row", how="semi")
    return pl.concat([keep.drop("_row"), pending]).unique(UNIQUE_ID, keep="first")


def usable_blocking_keys(features: pl.DataFrame) -> list[tuple[str, ...]]:
    """The blocking keys whose every column holds a value somewhere: a key over a field no
    provider sends can pair nothing (and would have Splink scan for nothing)."""
    empty = {name for name in features.columns if features[name].null_count() == features.height}
    return [key for key in BLOCKING_KEYS if not empty & set(key_columns(key))]


def skipped_because(features: pl.DataFrame) -> str:
    """Why the probabilistic step had nothing to compare (field names only, never values)."""
    missing = [name.replace("_", " ") for name in IDENTIFYING_COMPARISONS
               if features[COMPARISON_COLUMNS[name][0]].null_count() == features.height]
    lacking = " or ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
    return ("probabilistic matching skipped: it compares records sharing a date of birth and a name, "
            "or a postcode and given name, and no source identity carries a "
            + (lacking or "value for enough of those fields") + "; records were linked on NHS number only")


def _rules(keys: list[tuple[str, ...]], incremental: bool) -> list[str]:
    condition = "l.nhs_key IS NULL OR r.nhs_key IS NULL"
    if incremental:
        condition = f"({condition}) AND (l.pending OR r.pending)"
    return [blocking_rule(key, condition) for key in keys]


def score_pairs(features: pl.DataFrame, model: dict[str, Any], *, threshold: float,
                pair_budget: int) -> Scored:
    """Pairs of `features` (with a boolean `pending`) scoring at least `threshold`."""
    import duckdb
    from splink import DuckDBAPI, Linker
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    keys = usable_blocking_keys(features)
    if not keys:
        return Scored(pl.DataFrame(schema=EDGE_SCHEMA), 0, 0, skipped=skipped_because(features))
    incremental = not bool(features["pending"].all())
    records = candidate_records(features, keys) if incremental else features
    if records.height < 2 or not records["pending"].any():
        return Scored(pl.DataFrame(schema=EDGE_SCHEMA), 0, records.height)
    rules = _rules(keys, incremental)
    connection = duckdb.connect()
    try:
        db_api = DuckDBAPI(connection=connection)
        table = db_api.register(records.to_arrow(), dataset_display_name="source_identities")
        sample = min(1.0, _BUDGET_SAMPLE_RECORDS / records.height)
        counts = count_comparisons_from_blocking_rules(
            table, blocking_rules=rules, link_type="dedupe_only", unique_id_column_name=UNIQUE_ID,
            record_sample_proportion=sample,
        )
        estimated = int(counts[-1]["cumulative_comparison_count"]) if counts else 0
        if estimated > pair_budget:
            raise PairBudgetExceeded(
                f"blocking would compare about {estimated:,} pairs of records, more than the budget "
                f"of {pair_budget:,} (PTL_LINK_PAIR_BUDGET). Nothing was linked. Raise the budget if "
                "the machine has the memory for it (about 1 GiB per 10 million pairs), or look for "
                "a value shared by very many records (a default date of birth or postcode) with "
                "`ptl link review` and fix it at source"
            )
        settings = calibrated(model, features.height)
        settings["blocking_rules_to_generate_predictions"] = rules
        linker = Linker(table, settings, log_level=logging.WARNING)
        # Frequencies of the whole population, not of the candidates: an incremental run
        # scores a pair exactly as a full run would.
        for column in TERM_FREQUENCY_COLUMNS:
            lookup = db_api.register(term_frequencies(features, column).to_arrow(),
                                     dataset_display_name=f"tf_lookup_{column}")
            linker.table_management.register_term_frequency_lookup(lookup, column)
        predictions = linker.inference.predict(threshold_match_probability=threshold,
                                               warning_mode="never")
        edges = (
            predictions.as_duckdbpyrelation()
            .select(f"{UNIQUE_ID}_l, {UNIQUE_ID}_r, match_probability")
            .pl()
        )
    finally:
        connection.close()
    edges = edges.select(
        pl.col(f"{UNIQUE_ID}_l").cast(pl.Int64).alias("source_identity_id_l"),
        pl.col(f"{UNIQUE_ID}_r").cast(pl.Int64).alias("source_identity_id_r"),
        pl.col("match_probability").cast(pl.Float64),
    )
    log.info("scored candidate pairs", extra={"records": records.height, "pairs_estimated": estimated,
                                              "pairs_at_threshold": edges.height})
    return Scored(edges, estimated, records.height)
