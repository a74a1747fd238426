"""Duplicate pathways: the same need on more than one list, found so it is counted once.

The identity package (`ptl.identity.duplicate_pathways`) owns the rule when it is installed;
until then this module applies the rule DOMAIN.md states, behind the same interface:

- input: current pathways with `id, provider_code, pathway_id, pathway_id_issuer, person_id,
  treatment_function_code, rtt_start_date, days_waited, week_band, is_rtt`;
- output: one row per member of a duplicate group: `id`, `duplicate_group` (the smallest
  member id), `keep` (True for exactly one member: the earliest clock start, then the longest
  wait, then the smallest id) and `reason` (every rule that linked the group, `; `-joined).

Two open RTT pathways are duplicates when they carry the same pathway key
(`pathway_id_issuer`, `pathway_id`) at different providers, or belong to the same person and
treatment function at different providers. Groups are closed under both links (A–B by key and
B–C by person make one group A–B–C: one need, one pathway kept): computed by label propagation
over whole columns, a few passes, never a loop over rows. The identity package's groups, which
may overlap, are merged into components the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import polars as pl

log = logging.getLogger(__name__)

DUPLICATE_COLUMNS: Final[dict[str, pl.DataType]] = {
    "id": pl.Int64(),
    "duplicate_group": pl.Int64(),
    "keep": pl.Boolean(),
    "reason": pl.String(),
}
#: Group-key column names the identity package might use; normalised to `duplicate_group`.
_GROUP_NAMES: Final[tuple[str, ...]] = ("duplicate_group", "group_key", "group_id", "group")

REASON_SAME_KEY: Final[str] = "same pathway identifier at more than one provider"
REASON_SAME_PERSON: Final[str] = "same person and treatment function at more than one provider"


def open_rtt_expr(prefix: str = "") -> pl.Expr:
    """An open RTT pathway: on an RTT list and not carrying a clock-stop status."""
    from ptl.codes import RTT_CLOCK_STOP_STATUSES

    return (pl.col(prefix + "is_rtt").fill_null(False)
            & ~pl.col(prefix + "rtt_status").is_in(sorted(RTT_CLOCK_STOP_STATUSES)).fill_null(False))


def components(memberships: pl.DataFrame) -> pl.DataFrame:
    """Connected components of pathways linked through shared links.

    `memberships`: rows (`id`, `link`): pathway `id` belongs to link group `link`. Returns
    (`id`, `component`) with `component` the smallest id reachable through any chain of links.
    Label propagation: each pass gives every pathway the smallest label among the groups it
    belongs to; it stops when nothing changes (passes ≤ the longest chain of links)."""
    frame = memberships.select("id", "link").unique().with_columns(pl.col("id").alias("label"))
    while True:
        updated = frame.with_columns(pl.col("label").min().over("link").alias("label")).with_columns(
            pl.col("label").min().over("id").alias("label"))
        # Window expressions keep row order, so the columns compare row for row.
        if updated["label"].equals(frame["label"]):
            break
        frame = updated
    return frame.group_by("id").agg(pl.col("label").min().alias("component"))


def _keep_earliest(members: pl.DataFrame, current: pl.DataFrame, reasons: pl.DataFrame) -> pl.DataFrame:
    """`DUPLICATE_COLUMNS` from components: the earliest clock start (then longest wait, then
    smallest id) is kept; components left with one provider are not duplicates."""
    ordered = (
        members.join(current.select("id", "provider_code", "rtt_start_date", "days_waited"), on="id")
        .filter(pl.col("provider_code").n_unique().over("component") > 1)
        .join(reasons, on="id", how="left")
        .sort(["component", "rtt_start_date", "days_waited", "id"],
              descending=[False, False, True, False], nulls_last=True)
    )
    return ordered.select(
        pl.col("id").cast(pl.Int64),
        pl.col("component").cast(pl.Int64).alias("duplicate_group"),
        (pl.int_range(pl.len()).over("component") == 0).alias("keep"),
        pl.col("reason"),
    ).sort("duplicate_group", "id")


def _group_reasons(memberships: pl.DataFrame) -> pl.DataFrame:
    """Per pathway, every reason of its component, joined in a fixed order."""
    by_component = (
        memberships.select("component", "reason").unique()
        .group_by("component").agg(pl.col("reason").sort().str.join("; "))
    )
    return memberships.select("id", "component").unique().join(by_component, on="component").select(
        "id", "reason")


def duplicate_pathways_by_rule(current: pl.DataFrame) -> pl.DataFrame:
    """This module's rule (see the module docstring) over open RTT pathways."""
    frame = current.select(
        "id", "provider_code", "pathway_id_issuer", "pathway_id", "person_id",
        "treatment_function_code", "rtt_start_date", "days_waited", "is_rtt", "rtt_status",
    ).filter(open_rtt_expr()).drop("is_rtt", "rtt_status")
    key = ("pathway_id_issuer", "pathway_id")
    person = ("person_id", "treatment_function_code")
    # A link counts only when its members sit at two or more providers.
    by_key = frame.filter(pl.col("provider_code").n_unique().over(key) > 1).select(
        "id", pl.concat_str(pl.lit("K"), *key, separator="|").alias("link"),
        pl.lit(REASON_SAME_KEY).alias("reason"))
    by_person = frame.filter(
        pl.col("person_id").is_not_null()
        & (pl.col("provider_code").n_unique().over(person) > 1)
    ).select("id", pl.concat_str(pl.lit("P"), *[pl.col(c).cast(pl.String) for c in person],
                                 separator="|").alias("link"),
             pl.lit(REASON_SAME_PERSON).alias("reason"))
    return _from_memberships(pl.concat([by_key, by_person]), frame)


def _from_memberships(memberships: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    if memberships.height == 0:
        return pl.DataFrame(schema=DUPLICATE_COLUMNS)
    linked = memberships.join(components(memberships), on="id")
    return _keep_earliest(linked.select("id", "component").unique(), current,
                          _group_reasons(linked))


def _identity_rule() -> Callable[[pl.DataFrame], pl.DataFrame] | None:
    try:
        from ptl.identity import duplicate_pathways
    except ImportError:
        return None
    return duplicate_pathways  # type: ignore[no-any-return]


def _conform(found: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame | None:
    """The identity package's groups as one row per pathway, or None if they do not fit.

    Its groups may overlap (a pathway can be in a same-key group and a same-person group) and
    may include pathways off the open RTT list: the open RTT members are joined into connected
    components, as in this module's rule, and each component keeps one pathway."""
    group = next((n for n in _GROUP_NAMES if n in found.columns), None)
    if group is None or "id" not in found.columns:
        return None
    reason = pl.col("reason").cast(pl.String) if "reason" in found.columns else pl.lit("duplicate")
    # Narrow before filtering: filtering copies every column it keeps.
    open_rows = current.select("id", "provider_code", "rtt_start_date", "days_waited", "is_rtt",
                               "rtt_status").filter(open_rtt_expr())
    open_ids = open_rows.select("id")
    memberships = found.select(pl.col("id").cast(pl.Int64), pl.col(group).cast(pl.String).alias("link"),
                               reason.alias("reason")).join(open_ids, on="id", how="semi")
    # A group left with one open pathway links nothing.
    memberships = memberships.filter(pl.len().over("link") > 1)
    return _from_memberships(memberships, open_rows)


def duplicate_pathways(current: pl.DataFrame) -> pl.DataFrame:
    """Members of duplicate groups among the current pathways (columns `DUPLICATE_COLUMNS`),
    one row per pathway, exactly one `keep` per group.

    Groups come from `ptl.identity.duplicate_pathways` when it is installed and answers with a
    group key (normalised by `_conform`); otherwise from `duplicate_pathways_by_rule`.
    """
    from ptl.views.snapshot import once_per_frame

    return once_per_frame(current, "duplicate_pathways", lambda: _duplicate_pathways(current))


def _duplicate_pathways(current: pl.DataFrame) -> pl.DataFrame:
    rule = _identity_rule()
    if rule is not None:
        conformed = _conform(rule(current), current)
        if conformed is not None:
            return conformed
        log.warning("ptl.identity.duplicate_pathways answered without id and group columns; "
                    "using the views' own duplicate rule")
    return duplicate_pathways_by_rule(current)
