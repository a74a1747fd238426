"""Pathway moves: a completed transfer, so the receiving provider's census continues a wait.

When a transfer completes, `pathway_move` records the person, treatment function and
**original clock start** (RTT rules: an inter-provider transfer keeps the clock; the receiving
provider reports it with status 21, "transfer to another provider: clock continues"), and the
sending provider's pathway key. `link_moved_pathways` then finds, in any current snapshot:

- ``moved_in``: the receiving provider's pathway for that move: same person and treatment
  function at the receiving provider (or, before identity linking, the sending provider's
  pathway key carried over). It is the same wait, not a new one: `clock_start_kept` says whether
  the receiving provider kept the original clock start (False is a validation item: the
  receiving provider must correct it, and the wait is the original one);
- ``moved_out``: the sending provider's pathway still on its list after the move (extracts lag a
  week or two). It is superseded: the queue and duplicate logic count the ``moved_in`` row and
  drop this one.

The key (person, treatment function, original clock start) is indexed on `pathway_move`.
"""

from __future__ import annotations

from typing import Final

import polars as pl
from sqlalchemy import Engine

from ptl.store.bulk import read_frame

MOVE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "move_id": pl.Int64(), "transfer_id": pl.Int64(), "person_id": pl.Int64(),
    "treatment_function_code": pl.String(), "original_clock_start": pl.Date(),
    "from_provider_code": pl.String(), "from_pathway_id": pl.String(),
    "from_pathway_id_issuer": pl.String(), "to_provider_code": pl.String(), "to_site_code": pl.String(),
}
LINK_SCHEMA: Final[dict[str, pl.DataType]] = {
    "id": pl.Int64(), "move_id": pl.Int64(), "transfer_id": pl.Int64(), "role": pl.String(),
    "original_clock_start": pl.Date(), "clock_start_kept": pl.Boolean(),
}


def load_moves(engine: Engine) -> pl.DataFrame:
    """Every recorded pathway move."""
    with engine.connect() as connection:
        return read_frame(connection,
                          "SELECT id AS move_id, transfer_id, person_id, treatment_function_code, "
                          "original_clock_start, from_provider_code, from_pathway_id, from_pathway_id_issuer, "
                          "to_provider_code, to_site_code FROM pathway_move",
                          schema=dict(MOVE_SCHEMA))


def link_moved_pathways(current: pl.DataFrame, moves: pl.DataFrame) -> pl.DataFrame:
    """`id, move_id, transfer_id, role, original_clock_start, clock_start_kept` for current
    pathways that are the receiving (`moved_in`) or stale sending (`moved_out`) side of a move.

    `current` needs `id, provider_code, person_id, treatment_function_code, pathway_id_issuer,
    pathway_id, rtt_start_date`.
    """
    if moves.height == 0 or current.height == 0:
        return pl.DataFrame(schema=dict(LINK_SCHEMA))
    rows = current.select("id", "provider_code", "person_id", "treatment_function_code",
                          "pathway_id_issuer", "pathway_id", "rtt_start_date")
    by_person = rows.filter(pl.col("person_id").is_not_null()).join(
        moves.filter(pl.col("person_id").is_not_null()),
        left_on=["person_id", "treatment_function_code", "provider_code"],
        right_on=["person_id", "treatment_function_code", "to_provider_code"], how="inner")
    by_key = rows.join(
        moves, left_on=["pathway_id_issuer", "pathway_id", "provider_code"],
        right_on=["from_pathway_id_issuer", "from_pathway_id", "to_provider_code"], how="inner")
    moved_in = (pl.concat([by_person.select("id", "move_id", "transfer_id", "original_clock_start",
                                            "rtt_start_date"),
                           by_key.select("id", "move_id", "transfer_id", "original_clock_start",
                                         "rtt_start_date")], how="vertical")
                .unique(["id", "move_id"], keep="first").with_columns(pl.lit("moved_in").alias("role")))
    moved_out = (rows.join(moves, left_on=["pathway_id_issuer", "pathway_id", "provider_code"],
                           right_on=["from_pathway_id_issuer", "from_pathway_id", "from_provider_code"],
                           how="inner")
                 .select("id", "move_id", "transfer_id", "original_clock_start", "rtt_start_date")
                 .with_columns(pl.lit("moved_out").alias("role")))
    return (pl.concat([moved_in, moved_out], how="vertical")
            .with_columns((pl.col("rtt_start_date") == pl.col("original_clock_start")).fill_null(False)
                          .alias("clock_start_kept"))
            .select(list(LINK_SCHEMA)).cast(dict(LINK_SCHEMA)).sort("id", "move_id"))  # type: ignore[arg-type]


def continue_moved_waits(current: pl.DataFrame, moves: pl.DataFrame) -> pl.DataFrame:
    """The current pathways with completed moves applied, as the RTT rules count them.

    A receiving provider's pathway of a move keeps the **original** clock start (its wait
    continues, whatever start it reported: a different one is its validation item), and the
    sending provider's stale copy is dropped once the receiving provider lists the pathway, so
    the need is counted once. Until then the sending copy stands: nobody drops off the list.
    `current` needs the `link_moved_pathways` columns plus `census_date`, `is_rtt`,
    `days_waited` and `week_band`.
    """
    links = link_moved_pathways(current, moves)
    if links.height == 0:
        return current
    from ptl import rtt

    received = links.filter(pl.col("role") == "moved_in")
    original = received.group_by("id").agg(pl.col("original_clock_start").min().alias("__original"))
    stale = links.filter((pl.col("role") == "moved_out")
                         & pl.col("move_id").is_in(received.get_column("move_id").implode()))
    start = pl.coalesce("__original", "rtt_start_date")
    days = rtt.days_waited_expr(pl.col("census_date"), pl.col("rtt_start_date"))
    return (
        current.filter(~pl.col("id").is_in(stale.get_column("id").implode()))
        .join(original, on="id", how="left", maintain_order="left")
        .with_columns(start.alias("rtt_start_date"))
        .with_columns(pl.when(pl.col("is_rtt")).then(days).otherwise(pl.col("days_waited"))
                      .cast(current.schema["days_waited"]).alias("days_waited"))
        .with_columns(rtt.week_band_expr(pl.col("days_waited")).cast(current.schema["week_band"])
                      .alias("week_band"))
        .drop("__original")
    )
