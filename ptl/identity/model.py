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
from collections.abc import Collection
from pathlib import Path
from typing import Any, Final

import polars as pl

log = logging.getLogger("ptl.identity")

#: The model shipped with the code (trained on a synthetic system; see README).
SHIPPED_MODEL: Final[Path] = Path(__file__).with_name("model.json")

#: Candidate pairs: a pair is compared when it agrees on one of these. Together they survive
#: any two of: a family-name typo, a nickname, day and month swapped, a changed or missing
#: postcode (each rule survives the corruptions the others do not); the last two also catch
#: given and family name swapped, and a wrong date of birth where both names agree (FEBRL's
#: corruptions: bench/bench_linkage_febrl.py).
BLOCKING_KEYS: Final[tuple[tuple[str, ...], ...]] = (
    ("date_of_birth", "given_key"),
    ("date_of_birth", "family_initial"),
    ("family_name", "given_key", "birth_year"),
    ("postcode", "given_key"),
    ("name_pair",),
    ("date_of_birth", "initials"),
)


#: Keys whose agreement is too little to propose a pair on its own, and the columns both
#: records must also have: two records agreeing only on their names are compared when both
#: have a date of birth to weigh (a name alone never links two records; with a wrong date of
#: birth the model decides).
KEY_ALSO_PRESENT: Final[dict[tuple[str, ...], tuple[str, ...]]] = {
    ("name_pair",): ("date_of_birth",),
}


def key_columns(key: tuple[str, ...]) -> tuple[str, ...]:
    """Every column a blocking key needs a value in (its own and `KEY_ALSO_PRESENT`)."""
    return key + KEY_ALSO_PRESENT.get(key, ())


def blocking_rule(columns: tuple[str, ...], condition: str | None = None) -> str:
    """Splink blocking rule SQL: equal on every column, both sides holding the columns the
    key also needs (`KEY_ALSO_PRESENT`), plus an optional filter condition."""
    rule = " AND ".join(
        [f"l.{c} = r.{c}" for c in columns]
        + [f"l.{c} IS NOT NULL AND r.{c} IS NOT NULL" for c in KEY_ALSO_PRESENT.get(columns, ())]
    )
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


#: Each comparison of the model (by output column) and the feature columns it reads.
COMPARISON_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "given_name": ("given_name", "given_key", "family_name", "name_pair", "initials"),
    "family_name": ("family_name", "given_name", "name_pair", "initials"),
    "date_of_birth": ("date_of_birth", "birth_day", "birth_month", "birth_year", "dob_text"),
    "postcode": ("postcode",),
    "sex": ("sex",),
    "nhs_number": ("nhs_number",),
    "provider_code": ("provider_code",),
}
#: Comparisons that can find a match on their own (blocking keys are built from them): with
#: none of them in the data, there is nothing for the probabilistic step to do.
IDENTIFYING_COMPARISONS: Final[tuple[str, ...]] = ("given_name", "family_name", "date_of_birth", "postcode")
#: Sessions of expectation maximisation, in order of preference: each estimates the comparisons
#: its key does not use, so a session is run only while it estimates one not yet estimated.
TRAINING_KEYS: Final[tuple[tuple[str, ...], ...]] = (
    ("date_of_birth",),
    ("family_name", "given_key"),
    ("postcode",),
    ("family_name",),
    ("given_key",),
)
#: Fewest candidate pairs an expectation-maximisation session is worth running on.
MIN_TRAINING_PAIRS: Final[int] = 100
#: Share of true matches assumed to agree exactly on name and date of birth, for the first
#: estimate of the prior when no NHS numbers are there (the EM sessions then replace it).
EXACT_DEMOGRAPHICS_RECALL: Final[float] = 0.6


def model_settings(comparisons: Collection[str] | None = None) -> Any:
    """The untrained Splink settings: what is compared and how finely (`comparisons`: only
    those, by output column name, in the model's order; default all)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator

    def swapped() -> Any:  # given and family name recorded the wrong way round at one provider
        return cll.CustomLevel("given_name_l = family_name_r AND family_name_l = given_name_r",
                               label_for_charts="given and family name swapped")

    given = cl.CustomComparison(
        output_column_name="given_name",
        comparison_levels=[
            cll.NullLevel("given_name"),
            cll.ExactMatchLevel("given_name").configure(tf_adjustment_column="given_name"),
            swapped(),
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
            swapped(),
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
    every = {
        "given_name": given,
        "family_name": family,
        "date_of_birth": birth,
        "postcode": cl.PostcodeComparison("postcode"),
        "sex": cl.ExactMatch("sex"),
        "nhs_number": cl.ExactMatch("nhs_number"),
        # Two local patients of one provider are usually two people (a provider's own
        # duplicate registrations are rarer than patients seen at two providers).
        "provider_code": cl.ExactMatch("provider_code"),
    }
    wanted = set(COMPARISON_COLUMNS if comparisons is None else comparisons)
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        comparisons=[comparison for name, comparison in every.items() if name in wanted],
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


def smoothed(model: dict[str, Any], u_pairs: float | None = None) -> dict[str, Any]:
    """Floor every trained m probability at `M_FLOOR` (renormalised). A level no random pair
    showed (no u) but matches did (given and family name swapped) gets u = 1/`u_pairs`, the
    most its absence from that many random pairs allows; a level neither showed is neutral."""
    for comparison in model["comparisons"]:
        levels = [level for level in comparison["comparison_levels"] if not level.get("is_null_level")]
        learnt = [float(level.get("m_probability") or 0.0) for level in levels]
        floored = [max(m, M_FLOOR) for m in learnt]
        total = sum(floored)
        for level, raw, m in zip(levels, learnt, floored, strict=True):
            level["m_probability"] = m / total
            if level.get("u_probability") is None:
                seen = u_pairs is not None and raw > M_FLOOR
                level["u_probability"] = min(level["m_probability"], 1 / u_pairs) if seen and u_pairs \
                    else level["m_probability"]
    return model


def model_version(path: Path) -> str:
    """Short content hash of the model file: a new model means a full re-link."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        raise ModelError(f"the linkage model {path} does not exist: run `ptl link train`") from None


def trainable_comparisons(features: pl.DataFrame) -> list[str]:
    """Comparisons the data can teach: their main column holds at least two distinct values
    (agreement and disagreement both possible). The others keep the shipped parameters."""
    distinct = features.select(
        pl.col(columns[0]).drop_nulls().n_unique().alias(name) for name, columns in COMPARISON_COLUMNS.items()
    ).row(0, named=True)
    return [name for name, count in distinct.items() if count >= 2]


def _candidate_pairs(features: pl.DataFrame, key: tuple[str, ...], *, one_side_without_number: bool) -> int:
    """Pairs of records equal on every `key` column (nulls never equal), optionally only those
    where at least one side has no deterministic NHS number: n(n−1)/2 − k(k−1)/2 per group."""
    groups = features.drop_nulls(list(key)).group_by(list(key)).agg(
        pl.len().cast(pl.Int64).alias("n"), pl.col("nhs_key").is_not_null().sum().cast(pl.Int64).alias("k"))
    pairs = pl.col("n") * (pl.col("n") - 1) // 2
    if one_side_without_number:
        pairs = pairs - pl.col("k") * (pl.col("k") - 1) // 2
    return int(groups.select(pairs.sum()).item() or 0)


def _prior_rule(features: pl.DataFrame, trainable: list[str],
                deterministic_recall: float) -> tuple[str, float]:
    """The deterministic rule the prior is estimated from, and the share of true matches it
    is assumed to find: shared NHS numbers where there are any, else exact name and date of
    birth."""
    if _candidate_pairs(features, ("nhs_key",), one_side_without_number=False) > 0:
        return "l.nhs_key = r.nhs_key", deterministic_recall
    exact = [c for c in ("given_name", "family_name", "date_of_birth") if c in trainable]
    if len(exact) >= 2 and _candidate_pairs(features, tuple(exact), one_side_without_number=False) > 0:
        return blocking_rule(tuple(exact)), EXACT_DEMOGRAPHICS_RECALL
    raise ModelError(
        "training cannot estimate how often two records are one person: no two source identities "
        "share a usable NHS number, nor a name and date of birth. Train on a store that holds "
        "those fields for some patients, or keep the shipped model"
    )


def _training_sessions(features: pl.DataFrame, trainable: list[str]) -> list[tuple[str, set[str]]]:
    """Candidate EM sessions in `TRAINING_KEYS` order: each blocking rule with enough pairs,
    and the comparisons it estimates (those its key does not use). Pairs where both sides
    have a deterministic NHS number are left out when enough others remain (linking never
    scores them)."""
    sessions: list[tuple[str, set[str]]] = []
    for key in TRAINING_KEYS:
        teaches = {name for name in trainable if not set(COMPARISON_COLUMNS[name]) & set(key)}
        if not teaches:
            continue
        if _candidate_pairs(features, key, one_side_without_number=True) >= MIN_TRAINING_PAIRS:
            sessions.append((blocking_rule(key, "l.nhs_key IS NULL OR r.nhs_key IS NULL"), teaches))
        elif _candidate_pairs(features, key, one_side_without_number=False) >= MIN_TRAINING_PAIRS:
            sessions.append((blocking_rule(key), teaches))
    if not sessions:
        raise ModelError(
            f"training needs at least {MIN_TRAINING_PAIRS} pairs of records sharing a date of birth, "
            "a name or a postcode; the store has fewer. Keep the shipped model"
        )
    return sessions


def _expectation_maximisation(table: Any, model: dict[str, Any], sessions: list[tuple[str, set[str]]],
                              max_pairs: float, *, prior_from_sessions: bool) -> dict[str, Any]:
    """`model` after each session that estimates a comparison no earlier one did. Splink 5.0
    refuses an m probability EM drives below 1e-300 (a level almost no match shows, on sparse
    data) midway, with the linker half updated: such a session is discarded whole and a later
    one estimates what it would have.

    `prior_from_sessions`: replace the prior by the one the sessions imply (each session's
    share of matches among its pairs, scaled back by how many matches its blocking keeps;
    Splink's own derivation, combined as Splink combines sessions). Used where no NHS numbers
    give a deterministic estimate: exact name and date of birth find 94% of the synthetic
    system's matches but 30% of FEBRL's, so any fixed assumption is wrong somewhere.
    """
    from splink import Linker

    estimated: set[str] = set()
    reciprocals: list[float] = []
    for rule, teaches in sessions:
        if not teaches - estimated:
            continue
        linker = Linker(table, model, log_level=logging.WARNING)
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True, max_pairs=max_pairs,
                populate_probability_two_random_records_match_from_trained_values=prior_from_sessions,
            )
        except ValueError as exc:
            if "below the minimum allowed" not in str(exc):
                raise
            log.warning("an expectation-maximisation session did not converge; discarded",
                        extra={"blocking_rule": rule})
            continue
        trained: dict[str, Any] = linker.misc.save_model_to_json()
        if prior_from_sessions:
            reciprocals.append(1 / float(trained["probability_two_random_records_match"]))
            trained["probability_two_random_records_match"] = model["probability_two_random_records_match"]
        model = trained
        estimated |= teaches
    if reciprocals:
        model["probability_two_random_records_match"] = len(reciprocals) / sum(reciprocals)
    return model


def _untrained(comparison: dict[str, Any]) -> bool:
    levels = [level for level in comparison["comparison_levels"] if not level.get("is_null_level")]
    return all(level.get("m_probability") is None for level in levels)


def _with_shipped_parameters(trained: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every comparison of the model, in its order: trained where the data taught it, else
    the shipped model's (a store without postcodes learns nothing about postcodes, and a
    model used where postcodes exist must still weigh them)."""
    shipped = {c["output_column_name"]: c for c in json.loads(SHIPPED_MODEL.read_text("utf-8"))["comparisons"]}
    learnt = {c["output_column_name"]: c for c in trained["comparisons"] if not _untrained(c)}
    carried = [name for name in COMPARISON_COLUMNS if name not in learnt]
    trained["comparisons"] = [learnt.get(name) or shipped[name] for name in COMPARISON_COLUMNS]
    return trained, carried


def train_model(features: pl.DataFrame, out: Path, *, max_pairs_for_u: float = 5e6,
                deterministic_recall: float = 0.7, em_max_pairs: float = 3e6) -> dict[str, Any]:
    """Train m/u parameters on `features` (from `linkage_features`) and write the model JSON.

    Only comparisons the data holds values for are trained; the others keep the shipped
    model's parameters. u from random pairs; the prior from pairs sharing a deterministic NHS
    number (which find about `deterministic_recall` of true matches), or, with no NHS numbers,
    as the EM sessions imply it; m by expectation maximisation in as many sessions as it
    takes to estimate every comparison (blocked on date of birth, then on names, …) over the
    pairs linking will score.
    """
    import duckdb
    from splink import DuckDBAPI, Linker

    if features.height < 1000:
        raise ModelError(f"training needs at least 1,000 source identities; the store has "
                         f"{features.height:,}")
    trainable = trainable_comparisons(features)
    if not set(trainable) & set(IDENTIFYING_COMPARISONS):
        raise ModelError("training needs names, dates of birth or postcodes, and no source identity in "
                         "the store carries any: keep the shipped model")
    numbered = _candidate_pairs(features, ("nhs_key",), one_side_without_number=False) > 0
    prior_rule, prior_recall = _prior_rule(features, trainable, deterministic_recall)
    sessions = _training_sessions(features, trainable)
    connection = duckdb.connect()
    try:
        db_api = DuckDBAPI(connection=connection)
        table = db_api.register(features.to_arrow(), dataset_display_name="identities")
        linker = Linker(table, model_settings(trainable), log_level=logging.WARNING)
        linker.training.estimate_probability_two_random_records_match([prior_rule], recall=prior_recall)
        linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs_for_u, seed=1)
        # m is learnt on the pairs linking will score (at least one side without a
        # deterministic NHS number), whose error rates are higher than the population's.
        trained = _expectation_maximisation(table, linker.misc.save_model_to_json(), sessions, em_max_pairs,
                                            prior_from_sessions=not numbered)
        model, carried = _with_shipped_parameters(trained)
        model = smoothed(model, u_pairs=max_pairs_for_u)
    finally:
        connection.close()
    model[METADATA_KEY] = {
        "trained_on_identities": features.height,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "shipped_parameters": carried,
        "note": "Trained by `ptl link train`. Blocking rules are code (ptl/identity/model.py) and "
                "replace the ones saved here; the prior is rescaled to each run's population. "
                "Comparisons in shipped_parameters had no data to learn from and keep the shipped "
                "model's parameters.",
    }
    out.write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
    log.info("trained linkage model", extra={"identities": features.height, "model": str(out),
                                             "shipped_parameters": len(carried)})
    return model
