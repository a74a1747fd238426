"""The probabilistic linkage model: its comparisons, blocking rules, training and the JSON file.

The trained model (m and u probabilities, prior) is a reviewed, versioned JSON file in the
repository (`ptl/identity/model.json`); scheduled runs load it and never train. `ptl link train`
is the only way to retrain. The blocking rules are code, not model: they are re-applied to
whatever model is loaded, with the per-run filters `ptl.identity.scoring` adds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Final

import polars as pl

log = logging.getLogger("ptl.identity")

#: The model shipped with the code (trained on a synthetic system; see README).
SHIPPED_MODEL: Final[Path] = Path(__file__).with_name("model.json")

#: Candidate pairs: a pair is compared when it agrees on one of these. Together they survive
#: any two of: a family-name typo, a nickname, day and month swapped, a changed or missing
#: postcode (each rule survives the corruptions the others do not).
BLOCKING_KEYS: Final[tuple[tuple[str, ...], ...]] = (
    ("date_of_birth", "given_key"),
    ("date_of_birth", "family_initial"),
    ("family_name", "given_key", "birth_year"),
    ("postcode", "given_key"),
)


def blocking_rule(columns: tuple[str, ...], condition: str | None = None) -> str:
    """Splink blocking rule SQL: equal on every column, plus an optional filter condition."""
    rule = " AND ".join(f"l.{c} = r.{c}" for c in columns)
    return f"{rule} AND ({condition})" if condition else rule


BLOCKING_RULES: Final[tuple[str, ...]] = tuple(blocking_rule(k) for k in BLOCKING_KEYS)

UNIQUE_ID: Final[str] = "source_identity_id"
#: Columns whose exact agreement is weighted by how common the value is (Smith < Öztürk).
TERM_FREQUENCY_COLUMNS: Final[tuple[str, ...]] = ("given_name", "family_name")
#: Top-level key of the model file holding our metadata (removed before Splink reads it).
METADATA_KEY: Final[str] = "ptl"
#: Smallest m probability a level keeps after training: a disagreement the training data never
#: showed (a one-digit typo in a date of birth) weakens a match instead of vetoing it.
M_FLOOR: Final[float] = 1e-3


class ModelError(Exception):
    """The linkage model file is missing, unreadable or not a Splink model."""


def model_settings() -> Any:
    """The untrained Splink settings: what is compared and how finely."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator

    given = cl.CustomComparison(
        output_column_name="given_name",
        comparison_levels=[
            cll.NullLevel("given_name"),
            cll.ExactMatchLevel("given_name").configure(tf_adjustment_column="given_name"),
            cll.ExactMatchLevel("given_key").configure(label_for_charts="same name or nickname"),
            cll.JaroWinklerLevel("given_name", 0.9),
            cll.JaroWinklerLevel("given_name", 0.75),
            cll.ElseLevel(),
        ],
    )
    family = cl.CustomComparison(
        output_column_name="family_name",
        comparison_levels=[
            cll.NullLevel("family_name"),
            cll.ExactMatchLevel("family_name").configure(tf_adjustment_column="family_name"),
            cll.JaroWinklerLevel("family_name", 0.92),
            cll.JaroWinklerLevel("family_name", 0.8),
            cll.ElseLevel(),
        ],
    )
    birth = cl.CustomComparison(
        output_column_name="date_of_birth",
        comparison_levels=[
            cll.NullLevel("date_of_birth"),
            cll.ExactMatchLevel("date_of_birth"),
            cll.CustomLevel(
                "birth_day_l = birth_month_r AND birth_month_l = birth_day_r "
                "AND birth_year_l = birth_year_r",
                label_for_charts="day and month swapped",
            ),
            cll.DamerauLevenshteinLevel("dob_text", 1),
            cll.AbsoluteDateDifferenceLevel("date_of_birth", threshold=1, metric="year",
                                            input_is_string=False),
            cll.ElseLevel(),
        ],
    )
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        comparisons=[
            given,
            family,
            birth,
            cl.PostcodeComparison("postcode"),
            cl.ExactMatch("sex"),
            cl.ExactMatch("nhs_number"),
            # Two local patients of one provider are usually two people (a provider's own
            # duplicate registrations are rarer than patients seen at two providers).
            cl.ExactMatch("provider_code"),
        ],
        blocking_rules_to_generate_predictions=[*BLOCKING_RULES],  # type: ignore[list-item]
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        max_iterations=25,
        em_convergence=0.0001,
    )


def model_path(configured: str | Path | None) -> Path:
    """The model in use: the configured file (`PTL_LINK_MODEL`) or the shipped one."""
    return Path(configured) if configured else SHIPPED_MODEL


def load_model(path: Path) -> dict[str, Any]:
    """The saved Splink model as a settings dict, with the code's blocking rules."""
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"the linkage model {path} does not exist: set PTL_LINK_MODEL to a model written by "
            "`ptl link train`, or unset it to use the shipped model"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"the linkage model {path} cannot be read as JSON ({type(exc).__name__}): "
                         "retrain it with `ptl link train`") from None
    if not isinstance(model, dict) or "comparisons" not in model:
        raise ModelError(f"{path} is not a Splink model: retrain it with `ptl link train`")
    model["blocking_rules_to_generate_predictions"] = list(BLOCKING_RULES)
    return model


def term_frequencies(features: pl.DataFrame, column: str) -> pl.DataFrame:
    """Share of records carrying each value of `column` (Splink's `tf_<column>` lookup)."""
    values = features.select(column).drop_nulls()
    return values.group_by(column).len().select(
        column, (pl.col("len") / max(values.height, 1)).alias(f"tf_{column}"))


def calibrated(model: dict[str, Any], identities: int) -> dict[str, Any]:
    """The Splink settings for a population of `identities` records.

    The prior (probability that two random records match) falls as the population grows:
    with a similar number of records per person it scales as 1/(n−1). Rescaling it from the
    training population keeps a match probability, and so the threshold, meaning the same
    whether 10 thousand or 10 million records are linked.
    """
    settings = {k: v for k, v in model.items() if k != METADATA_KEY}
    trained_on = int(model.get(METADATA_KEY, {}).get("trained_on_identities", 0))
    if trained_on > 1 and identities > 1:
        prior = float(settings["probability_two_random_records_match"]) * (trained_on - 1) / (identities - 1)
        settings["probability_two_random_records_match"] = min(prior, 0.5)
    return settings


def smoothed(model: dict[str, Any]) -> dict[str, Any]:
    """Floor every trained m probability at `M_FLOOR` (renormalised); a level never observed
    in training (no m or u) becomes neutral."""
    for comparison in model["comparisons"]:
        levels = [level for level in comparison["comparison_levels"] if not level.get("is_null_level")]
        floored = [max(float(level.get("m_probability") or 0.0), M_FLOOR) for level in levels]
        total = sum(floored)
        for level, m in zip(levels, floored, strict=True):
            level["m_probability"] = m / total
            if level.get("u_probability") is None:
                level["u_probability"] = level["m_probability"]
    return model


def model_version(path: Path) -> str:
    """Short content hash of the model file: a new model means a full re-link."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        raise ModelError(f"the linkage model {path} does not exist: run `ptl link train`") from None


def train_model(features: pl.DataFrame, out: Path, *, max_pairs_for_u: float = 5e6,
                deterministic_recall: float = 0.7, em_max_pairs: float = 3e6) -> dict[str, Any]:
    """Train m/u parameters on `features` (from `linkage_features`) and write the model JSON.

    u from random pairs; the prior from pairs sharing a deterministic NHS number (which find
    about `deterministic_recall` of true matches); m by expectation maximisation in two
    sessions (blocked on date of birth, then on names, so every comparison is estimated) over
    the pairs linking will score.
    """
    import duckdb
    from splink import DuckDBAPI, Linker

    if features.height < 1000:
        raise ModelError(f"training needs at least 1,000 source identities; the store has "
                         f"{features.height:,}")
    connection = duckdb.connect()
    try:
        db_api = DuckDBAPI(connection=connection)
        table = db_api.register(features.to_arrow(), dataset_display_name="identities")
        linker = Linker(table, model_settings(), log_level=logging.WARNING)
        linker.training.estimate_probability_two_random_records_match(
            ["l.nhs_key = r.nhs_key"], recall=deterministic_recall
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs_for_u, seed=1)
        # m is learnt on the pairs linking will score (at least one side without a
        # deterministic NHS number), whose error rates are higher than the population's.
        for training_key in (("date_of_birth",), ("family_name", "given_key")):
            linker.training.estimate_parameters_using_expectation_maximisation(
                blocking_rule(training_key, "l.nhs_key IS NULL OR r.nhs_key IS NULL"),
                estimate_without_term_frequencies=True, max_pairs=em_max_pairs,
            )
        model: dict[str, Any] = smoothed(linker.misc.save_model_to_json())
    finally:
        connection.close()
    model[METADATA_KEY] = {
        "trained_on_identities": features.height,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "note": "Trained by `ptl link train`. Blocking rules are code (ptl/identity/model.py) and "
                "replace the ones saved here; the prior is rescaled to each run's population.",
    }
    out.write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
    log.info("trained linkage model", extra={"identities": features.height, "model": str(out)})
    return model
