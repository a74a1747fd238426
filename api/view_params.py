"""What every view of the list shares: the filter query parameters and the per-version cache.

Filters are one dependency (`filters: ViewFilter`) so each view documents and validates them the
same way: `treatment_function`, `provider`, `site`, `priority`, `waiting_list_type`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Annotated, TypeVar

import polars as pl
from litestar.di import Provide
from litestar.params import Parameter

from api.context import ApiContext
from api.problems import ProblemError
from ptl.views.filters import InvalidFilter, ViewFilter
from ptl.views.snapshot import Snapshot

T = TypeVar("T")


def _code(value: str | None) -> str | None:
    return value.strip().upper() if value and value.strip() else None


def view_filter(
    treatment_function: Annotated[str | None, Parameter(
        description="treatment function code, 3 characters (e.g. 110 trauma and orthopaedics)")] = None,
    provider: Annotated[str | None, Parameter(description="provider ODS code (e.g. RXX)")] = None,
    site: Annotated[str | None, Parameter(description="treatment site ODS code")] = None,
    priority: Annotated[str | None, Parameter(
        description="P1a, P1b, P2, P3, P4, P5, P6, P1 (P1a or P1b), deferred (P5/P6) or unknown")] = None,
    waiting_list_type: Annotated[str | None, Parameter(
        description="IRTT (admitted), ORTT (non-admitted), INON or ONON")] = None,
) -> ViewFilter:
    try:
        return ViewFilter(
            treatment_function_code=treatment_function.strip() if treatment_function else None,
            provider_code=_code(provider),
            site_code=_code(site),
            priority=priority.strip() if priority else None,
            waiting_list_type=_code(waiting_list_type),
        )
    except InvalidFilter as exc:
        raise ProblemError(400, str(exc)) from None


FILTER_DEPENDENCIES = {"filters": Provide(view_filter, sync_to_thread=False)}


def cached_view(context: ApiContext, snapshot: Snapshot, key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()` once per data version and key (bounded LRU; dropped when a feed loads)."""
    return context.results.get_or_compute((snapshot.version, snapshot.link_version), key, compute)


def with_record_columns(snapshot: Snapshot, rows: pl.DataFrame) -> pl.DataFrame:
    """Add the store columns disclosure needs (`source_identity_id`, and the record ids a view
    left out) to rows of pathways, matched on `id`."""
    wanted = [c for c in ("source_identity_id", "pathway_id", "referral_id") if c not in rows.columns]
    if not wanted:
        return rows
    return rows.join(snapshot.current.select("id", *wanted), on="id", how="left", maintain_order="left")
