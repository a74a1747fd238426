"""Mutual-aid capacity matching: offers, optimal assignment, equity guard, transfer workflow.

Public surface (internals live in the modules named):

- offers (`ptl.matching.offer`): `parse_offer`, `add_offer`, `list_offers`, `get_offers`,
  `Offer`, `OfferError`;
- matching (`ptl.matching.run`): `run_matching` (store in, run saved), `plan_matching` (frames
  in, result out), `get_run`, `list_runs`; `CandidateFilter`, `Geography`, `MatchingError`;
- the objective and solvers (`ptl.matching.assignment`): `solve_optimal`, `solve_greedy`;
- the equity guard (`ptl.matching.equity`): `equity_report`, `acceptance_report`, `decline_report`;
- transfers (`ptl.matching.transfer`): `propose_transfers`, `advance_transfer`, `list_transfers`,
  `get_transfer`, `Actor`, `TransferError`, `TransferForbidden`;
- pathway moves (`ptl.matching.move`): `load_moves`, `link_moved_pathways`.
"""

from ptl.matching.assignment import MatchingTooLarge, Objective, solve_greedy, solve_optimal
from ptl.matching.eligibility import CandidateFilter, Geography, MatchingError, build_pool
from ptl.matching.equity import acceptance_report, decline_report, equity_report
from ptl.matching.move import link_moved_pathways, load_moves
from ptl.matching.offer import (
    Offer,
    OfferError,
    UnknownOffer,
    add_offer,
    get_offers,
    list_offers,
    parse_offer,
)
from ptl.matching.run import (
    MatchingResult,
    UnknownRun,
    get_run,
    list_runs,
    plan_matching,
    run_matching,
)
from ptl.matching.transfer import (
    Actor,
    TransferError,
    TransferForbidden,
    UnknownTransfer,
    advance_transfer,
    get_transfer,
    list_transfers,
    propose_transfers,
)

__all__ = [
    "Actor", "CandidateFilter", "Geography", "MatchingError", "MatchingResult", "MatchingTooLarge",
    "Objective", "Offer", "OfferError", "TransferError", "TransferForbidden", "UnknownOffer", "UnknownRun",
    "UnknownTransfer", "acceptance_report", "add_offer", "advance_transfer", "build_pool", "decline_report",
    "equity_report", "get_offers", "get_run", "get_transfer", "link_moved_pathways", "list_offers",
    "list_runs", "list_transfers", "load_moves", "parse_offer", "plan_matching", "propose_transfers",
    "run_matching", "solve_greedy", "solve_optimal",
]
