"""Stable person ids: this run's clusters mapped onto the persons of earlier runs.

Each cluster keeps the id of the existing person it shares most records with, each existing
person goes to at most one cluster (mutual best overlap, ties to the lower id), and clusters
left over get new ids. Where records change person the change is recorded: a *merge* when an
existing person is absorbed (its id retired), a *split* when an existing person keeps its id but
some of its records now belong to another person.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

_MAX_ROUNDS = 100


@dataclass(frozen=True)
class Continuity:
    """`cluster_person`: cluster → existing person id (clusters without one need a new id).
    `retired`: existing persons no cluster kept."""

    cluster_person: pl.DataFrame
    retired: pl.DataFrame


def carry_person_ids(assignment: pl.DataFrame, previous: pl.DataFrame) -> Continuity:
    """`assignment`: source_identity_id, cluster. `previous`: source_identity_id, person_id of
    the last run (records not linked before are absent)."""
    overlap = (
        assignment.join(previous, on="source_identity_id")
        .group_by("cluster", "person_id").len("records")
    )
    matched = pl.DataFrame(schema={"cluster": pl.Int64, "person_id": pl.Int64})
    open_pairs = overlap
    for _ in range(_MAX_ROUNDS):
        if open_pairs.height == 0:
            break
        best_for_cluster = open_pairs.sort(
            "records", "person_id", descending=[True, False]).unique("cluster", keep="first")
        best_for_person = open_pairs.sort(
            "records", "cluster", descending=[True, False]).unique("person_id", keep="first")
        mutual = best_for_cluster.join(best_for_person, on=["cluster", "person_id"]).select(
            "cluster", "person_id")
        matched = pl.concat([matched, mutual.cast(pl.Int64)])
        open_pairs = open_pairs.join(mutual, on="cluster", how="anti").join(
            mutual, on="person_id", how="anti")
    clusters = assignment.select("cluster").unique()
    cluster_person = clusters.join(matched, on="cluster", how="left")
    retired = previous.select("person_id").unique().join(matched, on="person_id", how="anti")
    return Continuity(cluster_person=cluster_person, retired=retired)


def person_changes(assignment: pl.DataFrame, previous: pl.DataFrame, retired: pl.DataFrame
                   ) -> pl.DataFrame:
    """Merges and splits between the previous persons and the new ones.

    `assignment`: source_identity_id → person_id (final ids). Returns kind, person_id,
    other_person_id, records.
    """
    moved = (
        assignment.join(previous.rename({"person_id": "old_person_id"}), on="source_identity_id")
        .filter(pl.col("person_id") != pl.col("old_person_id"))
        .group_by("old_person_id", "person_id").len("records")
    )
    is_retired = pl.col("old_person_id").is_in(retired["person_id"].implode())
    return moved.select(
        pl.when(is_retired).then(pl.lit("merge")).otherwise(pl.lit("split")).alias("kind"),
        # merge: the survivor absorbed the retired id; split: the old id gave records away.
        pl.when(is_retired).then("person_id").otherwise("old_person_id").alias("person_id"),
        pl.when(is_retired).then("old_person_id").otherwise("person_id").alias("other_person_id"),
        pl.col("records").cast(pl.Int32),
    ).sort("kind", "person_id", "other_person_id")
