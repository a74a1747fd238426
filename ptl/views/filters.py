"""The filter every view accepts: treatment function, provider, site, priority band, list type.

One `ViewFilter` narrows pathway rows the same way in every view (queue, site stats,
equalisation, equity, validation, data quality), so a coordinator who filters one screen sees
the same population on the next. It is frozen and hashable: views are cached per data version
and filter combination, and the filter is the second half of that key.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from functools import reduce
from typing import Final

import polars as pl

from ptl import codes

#: Clinical priority bands a filter may name, and the P-codes each covers. `P1` covers both
#: emergency codes; `deferred` is the patient-chosen P5/P6; `unknown` is no P-code recorded.
PRIORITY_BANDS: Final[dict[str, tuple[str, ...]]] = {
    **{code: (code,) for code in codes.CLINICAL_PRIORITIES},
    "P1": ("P1a", "P1b"),
    "deferred": tuple(sorted(codes.DEFERRED_PRIORITIES)),
    "unknown": (),
}


class InvalidFilter(ValueError):
    """A filter value no pathway could ever have; the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class ViewFilter:
    """Optional conditions, all of which a pathway must meet (None = no condition)."""

    treatment_function_code: str | None = None
    provider_code: str | None = None
    site_code: str | None = None
    #: a P-code (P1a … P6), `P1` (P1a or P1b), `deferred` (P5 or P6) or `unknown` (none recorded)
    priority: str | None = None
    waiting_list_type: str | None = None
    #: OPCS-4 proposed procedure (used by equalisation; harmless elsewhere)
    procedure_code: str | None = None

    def __post_init__(self) -> None:
        if self.priority is not None and self.priority not in PRIORITY_BANDS:
            raise InvalidFilter(
                f"priority '{self.priority}' is not a clinical priority band; use one of "
                + ", ".join(PRIORITY_BANDS)
            )
        if self.waiting_list_type is not None and self.waiting_list_type not in codes.WAITING_LIST_TYPES:
            raise InvalidFilter(
                f"waiting list type '{self.waiting_list_type}' is not one of "
                + ", ".join(codes.WAITING_LIST_TYPES)
            )
        if (self.treatment_function_code is not None
                and self.treatment_function_code not in codes.TREATMENT_FUNCTIONS):
            raise InvalidFilter(
                f"treatment function '{self.treatment_function_code}' is not a treatment function "
                "code (3 characters, e.g. 110 trauma and orthopaedics)"
            )

    def as_dict(self) -> dict[str, str]:
        """The conditions that are set (for audit records and cache keys shown to people)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def expr(self, *, provider: bool = True, prefix: str = "") -> pl.Expr:
        """A Polars predicate over pathway columns. `provider=False` leaves the provider
        condition to the caller (the shared queue matches a need at any of its providers);
        `prefix` reads the pathway's columns under another name (e.g. `prev_site_code`, the
        same pathway at the previous census)."""
        conditions: list[pl.Expr] = []
        for name in ("treatment_function_code", "site_code", "waiting_list_type", "procedure_code"):
            value = getattr(self, name)
            if value is not None:
                conditions.append(pl.col(prefix + name) == value)
        if provider and self.provider_code is not None:
            conditions.append(pl.col("provider_code") == self.provider_code)
        if self.priority is not None:
            conditions.append(priority_band_expr(self.priority, prefix + "clinical_priority"))
        if not conditions:
            return pl.lit(True)
        # `&` rather than all_horizontal: a literal inside all_horizontal mis-broadcasts over
        # multi-chunk frames in Polars 2.1 ("predicate length of 2").
        return reduce(operator.and_, conditions).fill_null(False)

    def apply(self, frame: pl.DataFrame, *, provider: bool = True) -> pl.DataFrame:
        """The rows of `frame` (pathway columns) that meet every condition."""
        if not self.as_dict():
            return frame
        return frame.filter(self.expr(provider=provider))


#: The columns a filter reads: keep them when narrowing a frame's columns before filtering
#: (filtering a narrow frame is several times cheaper than filtering every column).
FILTER_COLUMNS: Final[tuple[str, ...]] = (
    "provider_code", "site_code", "treatment_function_code", "waiting_list_type",
    "procedure_code", "clinical_priority",
)


NO_FILTER: Final[ViewFilter] = ViewFilter()


def priority_band_expr(band: str, column: str = "clinical_priority") -> pl.Expr:
    """True where the clinical priority falls in the named band."""
    members = PRIORITY_BANDS[band]
    if not members:
        return pl.col(column).is_null()
    return pl.col(column).is_in(list(members)).fill_null(False)
