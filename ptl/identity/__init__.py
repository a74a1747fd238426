"""Patient identity across providers: which source identities are one person.

The public surface (the rest of `ptl.identity` is internal):
- `link(engine, settings)`: link every source identity to a person (idempotent; the scheduler
  calls it after loads, `ptl link` from the command line) → `LinkReport`;
- `has_unlinked_identities(engine)`: whether any source identity awaits its first link;
- `person_ids(connection)`: source_identity_id → person_id for every linked identity;
- `duplicate_pathways(current)`: the same need waiting twice in the current snapshot;
- `review_items(connection)`: the identity review list;
- `pairwise_quality(linked, truth)`: precision and recall against labelled truth.
"""

from ptl.identity.duplicates import counted_once, duplicate_pathways
from ptl.identity.evaluation import PairwiseQuality, TruthError, pairwise_quality
from ptl.identity.linking import (
    LinkReport,
    has_unlinked_identities,
    identity_export,
    link,
    person_ids,
)
from ptl.identity.model import ModelError, train_model
from ptl.identity.review import review_items
from ptl.identity.scoring import PairBudgetExceeded

__all__ = [
    "LinkReport",
    "ModelError",
    "PairBudgetExceeded",
    "PairwiseQuality",
    "TruthError",
    "counted_once",
    "duplicate_pathways",
    "has_unlinked_identities",
    "identity_export",
    "link",
    "pairwise_quality",
    "person_ids",
    "review_items",
    "train_model",
]
