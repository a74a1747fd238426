"""`/api/v1/equity`: who waits longer, by deprivation, ethnicity, age, sex or learning disability.

Formulas and reference groups: `ptl/views/equity.py`. Outside the identifiable tier every count
under `PTL_SUPPRESS_BELOW`, and every rate computed from it, is withheld (`suppressed` flags
the row); when the reference group is small, every rate ratio in that table is withheld.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from api.context import api_context
from api.disclosure import must_suppress
from api.formats import FormatParam, csv_response, wants_csv
from api.guards import READERS, allow
from api.view_params import FILTER_DEPENDENCIES, cached_view
from ptl.store.access import Client
from ptl.views.equity import (
    UNKNOWN,
    EquityDimension,
    equity,
    suppress_groups,
    suppress_headline,
)
from ptl.views.filters import ViewFilter


class EquityGroup(msgspec.Struct):
    group: str
    is_reference: bool
    open_pathways: int | None
    share: float | None
    known_clock_start: int | None
    median_weeks: float | None
    within_18: int | None
    pct_within_18: float | None
    over_52: int | None
    pct_over_52: float | None
    rate_ratio: float | None
    rr_ci_low: float | None
    rr_ci_high: float | None
    suppressed: bool


class EquityTrendRow(EquityGroup):
    census_date: dt.date | None = None


class Headline(msgspec.Struct):
    scope: str
    over_52_most_deprived: int | None
    known_most_deprived: int | None
    over_52_least_deprived: int | None
    known_least_deprived: int | None
    rate_ratio: float | None
    rr_ci_low: float | None
    rr_ci_high: float | None
    suppressed: bool


class EquityAnswer(msgspec.Struct):
    by: str
    reference: str
    groups: list[EquityGroup]
    #: share of records whose group is not known (data quality); null when withheld
    share_unknown: float | None
    trend: list[EquityTrendRow] | None
    #: over-52-week rate ratio, IMD quintile 1 vs 5: the system, then each provider
    headline: list[Headline]
    data_version: int
    filters: dict[str, str]
    suppress_below: int | None


def _flagged(frame: pl.DataFrame, suppressed: bool) -> pl.DataFrame:
    return frame if suppressed else frame.with_columns(pl.lit(False).alias("suppressed"))


class EquityController(Controller):
    path = "/equity"
    tags = ["views"]
    guards = [allow(*READERS)]
    dependencies = FILTER_DEPENDENCIES

    @get("/", sync_to_thread=True, summary="Waits by group, rate ratios against the reference group")
    def equity_view(
        self,
        request: Request[Client, Any, Any],
        filters: ViewFilter,
        by: Annotated[EquityDimension, Parameter(description="the grouping")] = "imd_quintile",
        trend: Annotated[bool, Parameter(description="also per census date, over the history")] = False,
        suppress_small: Annotated[bool, Parameter(
            query="suppress", description="icb keys: apply small-number suppression (others always get it)")] = False,
        output: FormatParam = None,
    ) -> Response[EquityAnswer]:
        context = api_context(request)
        snapshot = context.snapshot()
        suppressed = must_suppress(request.user, suppress_small)
        threshold = context.settings.suppress_below

        def build() -> tuple[pl.DataFrame, bytes]:
            result = equity(snapshot.current, by, filters, snapshot.history if trend else None)
            groups, headline = result.groups, result.headline
            trend_rows = result.trend
            share_unknown = result.share_unknown
            if suppressed:
                groups = suppress_groups(groups, threshold)
                headline = suppress_headline(headline, threshold)
                trend_rows = suppress_groups(trend_rows, threshold) if trend_rows is not None else None
                unknown = groups.filter(pl.col("group") == UNKNOWN)
                if unknown.height and unknown["open_pathways"][0] is None:
                    share_unknown = None
            groups = _flagged(groups, suppressed).select(EquityGroup.__struct_fields__)
            headline = _flagged(headline, suppressed).select(Headline.__struct_fields__)
            if trend_rows is not None:
                trend_rows = _flagged(trend_rows, suppressed).select(EquityTrendRow.__struct_fields__)
            body = msgspec.json.encode({
                "by": result.by, "reference": result.reference, "groups": groups.to_dicts(),
                "share_unknown": share_unknown,
                "trend": trend_rows.to_dicts() if trend_rows is not None else None,
                "headline": headline.to_dicts(), "data_version": snapshot.version,
                "filters": filters.as_dict(), "suppress_below": threshold if suppressed else None,
            })
            table = trend_rows if trend_rows is not None else groups
            return table, body

        table, body = cached_view(context, snapshot, ("equity", filters, by, trend, suppressed), build)
        if wants_csv(request, output):
            return csv_response(table, f"equity-{by}")  # type: ignore[return-value]
        return Response(body, media_type="application/json")  # type: ignore[arg-type]
