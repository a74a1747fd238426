"""Domain views over the analytics snapshot: the shared queue, site statistics, wait
equalisation, equity, validation worklists and data quality.

The public surface is re-exported here; each module owns one view (its docstring holds the
formulas). Views are pure functions of a `Snapshot` (or its `current` frame) and a `ViewFilter`;
`Snapshot.cached(key, compute)` memoises a result for the snapshot's data version.
"""

from ptl.views.data_quality import DATA_QUALITY_COLUMNS, data_quality
from ptl.views.duplicates import DUPLICATE_COLUMNS, duplicate_pathways
from ptl.views.equalisation import EqualisationProposal, equalisation
from ptl.views.equity import (
    EQUITY_COLUMNS,
    HEADLINE_COLUMNS,
    REFERENCE_GROUPS,
    EquityResult,
    equity,
    headline,
    suppress,
    suppress_groups,
    suppress_headline,
)
from ptl.views.filters import NO_FILTER, InvalidFilter, ViewFilter
from ptl.views.queue import (
    QUEUE_COLUMNS,
    Cursor,
    cursor_of,
    position_after,
    queue_page,
    shared_queue,
)
from ptl.views.sites import SITE_STATS_COLUMNS, site_stats, weekly_flows
from ptl.views.snapshot import Snapshot, invalidate_snapshot, load_snapshot, read_snapshot
from ptl.views.validation import WORKLIST_COLUMNS, WORKLIST_KINDS, worklist, worklist_counts

__all__ = [
    "DATA_QUALITY_COLUMNS", "DUPLICATE_COLUMNS", "EQUITY_COLUMNS", "HEADLINE_COLUMNS", "NO_FILTER",
    "QUEUE_COLUMNS", "REFERENCE_GROUPS", "SITE_STATS_COLUMNS", "WORKLIST_COLUMNS", "WORKLIST_KINDS",
    "Cursor", "EqualisationProposal", "EquityResult", "InvalidFilter", "Snapshot", "ViewFilter",
    "cursor_of", "data_quality", "duplicate_pathways", "equalisation", "equity", "headline",
    "invalidate_snapshot", "load_snapshot", "position_after", "queue_page", "read_snapshot",
    "shared_queue", "site_stats", "suppress", "suppress_groups", "suppress_headline",
    "weekly_flows", "worklist", "worklist_counts",
]
