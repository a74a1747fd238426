"""`/api/v1/data-quality`: per provider, completeness, rejected and duplicate shares, staleness.

Measures: `ptl/views/data_quality.py`. Outside the identifiable tier, pathway counts under
`PTL_SUPPRESS_BELOW` and the shares computed from them are withheld; feed row counts describe
files, not people, and are shown.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final

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
from ptl.views.data_quality import data_quality
from ptl.views.equity import suppress
from ptl.views.filters import ViewFilter

_DERIVED: Final[dict[str, tuple[str, ...]]] = {
    "pathways": ("ethnicity_known_share", "nhs_number_share", "postcode_share", "lsoa_share", "imd_share"),
    "open_rtt_pathways": ("duplicate_share",),
}


class ProviderDataQuality(msgspec.Struct):
    provider_code: str
    current_feed_id: int | None
    census_date: dt.date | None
    pathways: int | None
    open_rtt_pathways: int | None
    ethnicity_known_share: float | None
    nhs_number_share: float | None
    postcode_share: float | None
    lsoa_share: float | None
    imd_share: float | None
    duplicate_share: float | None
    last_feed_id: int | None
    last_feed_status: str | None
    last_feed_census_date: dt.date | None
    last_feed_rows_read: int | None
    last_feed_rows_rejected: int | None
    rejected_share: float | None
    staleness_days: int | None
    suppressed: bool


class DataQualityAnswer(msgspec.Struct):
    items: list[ProviderDataQuality]
    data_version: int
    filters: dict[str, str]
    suppress_below: int | None


class DataQualityController(Controller):
    path = "/data-quality"
    tags = ["views"]
    guards = [allow(*READERS)]
    dependencies = FILTER_DEPENDENCIES

    @get("/", sync_to_thread=True, summary="Per provider: completeness, rejected and duplicate shares, staleness")
    def data_quality_view(
        self,
        request: Request[Client, Any, Any],
        filters: ViewFilter,
        suppress_small: Annotated[bool, Parameter(
            query="suppress", description="icb keys: apply small-number suppression (others always get it)")] = False,
        output: FormatParam = None,
    ) -> Response[DataQualityAnswer]:
        context = api_context(request)
        snapshot = context.snapshot()
        suppressed = must_suppress(request.user, suppress_small)
        threshold = context.settings.suppress_below
        today = dt.date.today()

        def build() -> tuple[pl.DataFrame, bytes]:
            frame = data_quality(snapshot, filters, today)
            frame = (suppress(frame, list(_DERIVED), threshold, _DERIVED) if suppressed
                     else frame.with_columns(pl.lit(False).alias("suppressed")))
            frame = frame.select(ProviderDataQuality.__struct_fields__)
            return frame, msgspec.json.encode({
                "items": frame.to_dicts(), "data_version": snapshot.version, "filters": filters.as_dict(),
                "suppress_below": threshold if suppressed else None})

        # Staleness counts days to today: the day is part of the key.
        frame, body = cached_view(context, snapshot, ("data-quality", filters, suppressed, today), build)
        if wants_csv(request, output):
            return csv_response(frame, "data-quality")  # type: ignore[return-value]
        return Response(body, media_type="application/json")  # type: ignore[arg-type]
