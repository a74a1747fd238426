"""`/api/v1/sites/stats`: per provider and site, list size, waits, flows and queue arithmetic,
and the same against declared capacity.

Formulas and how declarations match rows: `ptl/views/sites.py` (NHS-R `NHSRwaitinglist` queue
metrics, NHS England week-band interpolation for medians). Outside the identifiable tier, counts
under `PTL_SUPPRESS_BELOW` and the figures computed from them are withheld (`suppressed` marks
the row); a declared capacity is an organisation's planning figure and is always shown.

Caching: the history-based statistics are computed once per data version and filter; the
declarations (a small table) are read at most once per data-version check interval, at once
after a declaration through this process, and joined on; each answer is cached per data
version, filter and declarations version. A declaration never waits for a feed load.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
import polars as pl
from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from api.context import api_context
from api.disclosure import must_suppress
from api.formats import FormatParam, csv_response, wants_csv
from api.guards import READERS, allow
from api.view_params import FILTER_DEPENDENCIES, cached_view
from ptl.declared_capacity import held_declarations
from ptl.store.access import Client
from ptl.views.equity import suppress
from ptl.views.filters import ViewFilter
from ptl.views.sites import site_stats, with_declared_capacity

_GROUPINGS: Final[dict[str, tuple[str, ...]]] = {
    "site": ("provider_code", "site_code"),
    "provider": ("provider_code",),
    "system": (),
}
#: Counts (of pathways) and the figures computed from each, withheld together when small.
SITE_COUNTS_DERIVED: Final[dict[str, tuple[str, ...]]] = {
    "open_pathways": (),
    "known_clock_start": ("median_weeks", "p92_weeks", "mean_weeks", "pct_within_18", "pct_over_52"),
    "within_18": ("pct_within_18",),
    "over_52": ("pct_over_52",),
    "over_65": (),
    "over_78": (),
    "over_104": (),
    "capacity_queue": ("expected_wait_weeks", "relief_capacity", "declared_expected_wait_weeks"),
}


class SiteStats(msgspec.Struct):
    provider_code: str | None
    site_code: str | None
    open_pathways: int | None
    known_clock_start: int | None
    median_weeks: float | None
    p92_weeks: float | None
    mean_weeks: float | None
    within_18: int | None
    pct_within_18: float | None
    over_52: int | None
    pct_over_52: float | None
    over_65: int | None
    over_78: int | None
    over_104: int | None
    capacity_queue: int | None
    weekly_additions: float | None
    weekly_removals: float | None
    history_weeks: float | None
    load: float | None
    expected_wait_weeks: float | None
    target_queue_size: float | None
    relief_capacity: float | None
    pressure: float | None
    #: clock stops a week declared for the row's scope, in force at the provider's census
    declared_weekly_capacity: int | None
    #: weekly additions / declared weekly capacity
    declared_load: float | None
    #: capacity queue / declared weekly capacity
    declared_expected_wait_weeks: float | None
    suppressed: bool


class SiteStatsAnswer(msgspec.Struct):
    items: list[SiteStats]
    data_version: int
    filters: dict[str, str]
    #: counts under this were withheld (null) in this answer; null when nothing was suppressed
    suppress_below: int | None


class SitesController(Controller):
    path = "/sites"
    tags = ["views"]
    guards = [allow(*READERS)]
    dependencies = FILTER_DEPENDENCIES

    @get("/stats", sync_to_thread=True, summary="Per provider/site: waits, flows, load and queue targets")
    def stats(
        self,
        request: Request[Client, Any, Any],
        filters: ViewFilter,
        by: Annotated[Literal["site", "provider", "system"], Parameter(
            description="site (default), provider, or the whole system in one row")] = "site",
        suppress_small: Annotated[bool, Parameter(
            query="suppress", description="icb keys: apply small-number suppression (others always get it)")] = False,
        output: FormatParam = None,
    ) -> Response[SiteStatsAnswer]:
        context = api_context(request)
        snapshot = context.snapshot()
        suppressed = must_suppress(request.user, suppress_small)
        threshold = context.settings.suppress_below
        grouping = _GROUPINGS[by]
        declared = held_declarations(context.engine, context.version_check_seconds)

        def build() -> Any:
            history = cached_view(context, snapshot, ("sites:history", filters, by),
                                  lambda: site_stats(snapshot, filters, grouping))
            frame = with_declared_capacity(history, snapshot, declared.frame, filters, grouping)
            for key in ("provider_code", "site_code"):
                if key not in frame.columns:
                    frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(key))
            if suppressed:
                frame = suppress(frame, list(SITE_COUNTS_DERIVED), threshold, SITE_COUNTS_DERIVED)
            else:
                frame = frame.with_columns(pl.lit(False).alias("suppressed"))
            frame = frame.select(SiteStats.__struct_fields__)
            return frame, msgspec.json.encode({
                "items": frame.to_dicts(), "data_version": snapshot.version, "filters": filters.as_dict(),
                "suppress_below": threshold if suppressed else None})

        frame, body = cached_view(context, snapshot, ("sites", filters, by, suppressed, declared.version), build)
        if wants_csv(request, output):
            return csv_response(frame, "site-stats")  # type: ignore[return-value]
        return Response(body, media_type="application/json")  # type: ignore[arg-type]

