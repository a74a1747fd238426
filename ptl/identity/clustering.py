"""Clustering records into persons from NHS numbers, existing persons and scored pairs.

A run starts from *units* that must stay whole: an existing person (its records that are not
being re-linked), the pending records sharing a deterministic NHS number (joined to the
person already holding that number, if any), and each other pending record on its own. Pairs
scoring at or above the threshold join units into connected components.

A component may hold at most one existing person and at most one NHS number. One that would
hold more is a conflict (a record scoring above threshold against two different persons, or
a chain of records bridging two NHS numbers): its existing persons and NHS-number groups stay
apart, each free record joins the unit it scores best against (directly, else through its
best-scoring neighbour), and the component goes to the review list. Vectorised: the loops run
over propagation rounds, never over records.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

#: Bound on label-propagation rounds (pointer jumping converges in O(log diameter)).
_MAX_ROUNDS = 200


@dataclass(frozen=True)
class Clusters:
    """`assignment`: source_identity_id → cluster (a record id naming the cluster).
    `conflicts`: source_identity_id → component, for records of conflicting components."""

    assignment: pl.DataFrame
    conflicts: pl.DataFrame


def connected_components(edges: pl.DataFrame) -> pl.DataFrame:
    """node → component (the smallest node id in it) for every node of `edges` (columns a, b)."""
    if edges.height == 0:
        return pl.DataFrame(schema={"node": pl.Int64, "component": pl.Int64})
    both = pl.concat([
        edges.select(pl.col("a").alias("node"), pl.col("b").alias("other")),
        edges.select(pl.col("b").alias("node"), pl.col("a").alias("other")),
    ])
    labels = both.group_by("node").agg(pl.min_horizontal(pl.col("other").min(), pl.col("node").first())
                                       .alias("component"))
    for _ in range(_MAX_ROUNDS):
        neighbour = (
            both.join(labels, left_on="other", right_on="node")
            .group_by("node").agg(pl.col("component").min().alias("neighbour"))
        )
        step = labels.join(neighbour, on="node", how="left").select(
            "node", pl.min_horizontal("component", "neighbour").alias("component")
        )
        # Pointer jumping: take the label of one's label, so long chains converge fast.
        step = step.join(step.rename({"node": "component", "component": "jump"}), on="component",
                         how="left").select("node", pl.min_horizontal("component", "jump").alias("component"))
        if step.sort("node").equals(labels.sort("node")):
            return step
        labels = step
    return labels


def _units(records: pl.DataFrame) -> pl.DataFrame:
    """Each record's unit (a record id) and the existing person the unit carries, if any.

    `records`: source_identity_id, nhs_key, pending, old_person_id.
    """
    settled = records.filter(~pl.col("pending") & pl.col("old_person_id").is_not_null())
    person_unit = settled.group_by("old_person_id").agg(
        pl.col("source_identity_id").min().alias("unit")
    )
    # The person already holding a number (the one with most such records, then lowest id).
    held = (
        settled.filter(pl.col("nhs_key").is_not_null())
        .group_by("nhs_key", "old_person_id").len()
        .sort("len", "old_person_id", descending=[True, False])
        .unique("nhs_key", keep="first")
        .select("nhs_key", pl.col("old_person_id").alias("holder"))
    )
    pending = records.filter(pl.col("pending")).join(held, on="nhs_key", how="left")
    new_number_unit = (
        pending.filter(pl.col("nhs_key").is_not_null() & pl.col("holder").is_null())
        .group_by("nhs_key").agg(pl.col("source_identity_id").min().alias("number_unit"))
    )
    pending = pending.join(new_number_unit, on="nhs_key", how="left").join(
        person_unit.rename({"old_person_id": "holder", "unit": "holder_unit"}), on="holder", how="left"
    )
    pending_units = pending.select(
        "source_identity_id",
        pl.coalesce("holder_unit", "number_unit", "source_identity_id").alias("unit"),
        pl.col("holder").alias("unit_person"),
    )
    settled_units = settled.join(person_unit, on="old_person_id").select(
        "source_identity_id", "unit", pl.col("old_person_id").alias("unit_person")
    )
    unsettled = records.filter(~pl.col("pending") & pl.col("old_person_id").is_null()).select(
        "source_identity_id", pl.col("source_identity_id").alias("unit"),
        pl.lit(None, dtype=pl.Int64).alias("unit_person"),
    )
    return pl.concat([settled_units, pending_units, unsettled]).join(
        records.select("source_identity_id", "nhs_key"), on="source_identity_id"
    )


def cluster(records: pl.DataFrame, edges: pl.DataFrame) -> Clusters:
    """Assign every record to a cluster. `edges`: source_identity_id_l/_r, match_probability
    (pairs at or above the threshold)."""
    units = _units(records)
    unit_of = units.select("source_identity_id", "unit")
    unit_edges = (
        edges.join(unit_of.rename({"source_identity_id": "source_identity_id_l", "unit": "ul"}),
                   on="source_identity_id_l")
        .join(unit_of.rename({"source_identity_id": "source_identity_id_r", "unit": "ur"}),
              on="source_identity_id_r")
        .filter(pl.col("ul") != pl.col("ur"))
        .select(pl.min_horizontal("ul", "ur").alias("a"), pl.max_horizontal("ul", "ur").alias("b"),
                "match_probability")
        .group_by("a", "b").agg(pl.col("match_probability").max())
    )
    components = connected_components(unit_edges.select("a", "b"))
    units = units.join(components.rename({"node": "unit"}), on="unit", how="left").with_columns(
        pl.coalesce("component", "unit").alias("component")
    )
    verdict = units.group_by("component").agg(
        ((pl.col("unit_person").n_unique() - pl.col("unit_person").null_count().clip(0, 1)) > 1)
        .alias("many_persons"),
        ((pl.col("nhs_key").n_unique() - pl.col("nhs_key").null_count().clip(0, 1)) > 1)
        .alias("many_numbers"),
    ).filter(pl.col("many_persons") | pl.col("many_numbers")).select("component")
    calm = units.join(verdict, on="component", how="anti").select(
        "source_identity_id", pl.col("component").alias("cluster")
    )
    troubled = units.join(verdict, on="component", how="semi")
    resolved = _resolve_conflicts(troubled, unit_edges)
    assignment = pl.concat([calm, resolved]).with_columns(pl.col("cluster").cast(pl.Int64))
    return Clusters(assignment=assignment,
                    conflicts=troubled.select("source_identity_id", "component"))


def _resolve_conflicts(troubled: pl.DataFrame, unit_edges: pl.DataFrame) -> pl.DataFrame:
    """Keep the persons and NHS-number groups of conflicting components apart; attach each
    free record to the unit it scores best against."""
    if troubled.height == 0:
        return pl.DataFrame(schema={"source_identity_id": pl.Int64, "cluster": pl.Int64})
    unit_kind = troubled.group_by("unit").agg(
        (pl.col("unit_person").is_not_null().any() | pl.col("nhs_key").is_not_null().any()).alias("hard")
    )
    hard = unit_kind.filter(pl.col("hard")).select("unit", pl.col("unit").alias("cluster"))
    free = unit_kind.filter(~pl.col("hard")).select("unit")
    both = pl.concat([
        unit_edges.select(pl.col("a").alias("unit"), pl.col("b").alias("other"), "match_probability"),
        unit_edges.select(pl.col("b").alias("unit"), pl.col("a").alias("other"), "match_probability"),
    ]).join(free, on="unit", how="semi")
    assigned = hard
    waiting = free
    for _ in range(_MAX_ROUNDS):
        best = (
            both.join(waiting, on="unit", how="semi")
            .join(assigned.rename({"unit": "other"}), on="other")
            .sort("match_probability", "cluster", descending=[True, False])
            .unique("unit", keep="first")
            .select("unit", "cluster")
        )
        if best.height == 0:
            break
        assigned = pl.concat([assigned, best])
        waiting = waiting.join(best, on="unit", how="anti")
    # Free records reaching no person or number stay together as their own cluster(s).
    leftover_edges = both.join(waiting, on="unit", how="semi").join(
        waiting.rename({"unit": "other"}), on="other", how="semi"
    ).select(pl.col("unit").alias("a"), pl.col("other").alias("b"))
    leftover = waiting.join(connected_components(leftover_edges).rename({"node": "unit"}), on="unit",
                            how="left").select("unit", pl.coalesce("component", "unit").alias("cluster"))
    return troubled.join(pl.concat([assigned, leftover]), on="unit").select("source_identity_id", "cluster")
