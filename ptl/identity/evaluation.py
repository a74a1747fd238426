"""Linkage quality against labelled truth: pairwise precision and recall.

A pair of source identities is a *predicted* match when linking gave them the same person, a
*true* match when the truth gives them the same person key. Counted in closed form from group
sizes (n·(n−1)/2), never by listing pairs. Figures are also given for the pairs involving at
least one record without a usable NHS number, where the probabilistic model does the work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import polars as pl


class TruthError(Exception):
    """A truth file a user supplied cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class PairwiseQuality:
    records: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    precision: float
    recall: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _pairs(group_sizes: pl.Expr) -> pl.Expr:
    return (group_sizes * (group_sizes - 1) // 2).sum()


def _quality(frame: pl.DataFrame) -> tuple[int, int, int]:
    """(true, predicted, correct) pair counts of a frame with person_id and person_key."""
    if frame.height == 0:
        return 0, 0, 0
    true = frame.group_by("person_key").len().select(_pairs(pl.col("len"))).item()
    predicted = frame.group_by("person_id").len().select(_pairs(pl.col("len"))).item()
    correct = frame.group_by("person_id", "person_key").len().select(_pairs(pl.col("len"))).item()
    return int(true), int(predicted), int(correct)


def _ratio(numerator: int, denominator: int) -> float:
    return 1.0 if denominator == 0 else numerator / denominator


def pairwise_quality(linked: pl.DataFrame, truth: pl.DataFrame) -> dict[str, PairwiseQuality]:
    """`linked`: provider_code, local_patient_id, person_id. `truth`: provider_code,
    local_patient_id, person_key [, nhs_number_usable]. Scored on records in both.

    Returns "all" and, when the truth says which records have a usable NHS number,
    "without_nhs_number" (pairs where at least one record has none).
    """
    missing = {"provider_code", "local_patient_id", "person_key"} - set(truth.columns)
    if missing:
        raise TruthError(f"the truth file has no column {', '.join(sorted(missing))}: it needs "
                         "provider_code, local_patient_id and person_key (optionally nhs_number_usable)")
    keys = ["provider_code", "local_patient_id"]
    truth = truth.with_columns(pl.col(k).cast(pl.String) for k in (*keys, "person_key"))
    joined = linked.filter(pl.col("person_id").is_not_null()).join(truth, on=keys)
    true, predicted, correct = _quality(joined)
    result = {"all": PairwiseQuality(joined.height, true, predicted, correct,
                                     _ratio(correct, predicted), _ratio(correct, true))}
    if "nhs_number_usable" in truth.columns:
        usable = pl.col("nhs_number_usable").cast(pl.String).str.to_lowercase().is_in(["true", "1", "yes", "y"])
        t2, p2, c2 = _quality(joined.filter(usable))
        t, p, c = true - t2, predicted - p2, correct - c2
        without = joined.filter(~usable).height
        result["without_nhs_number"] = PairwiseQuality(without, t, p, c, _ratio(c, p), _ratio(c, t))
    return result
