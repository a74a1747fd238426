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
