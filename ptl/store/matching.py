"""Mutual-aid capacity: offers, matching runs and their proposals, transfers and pathway moves.

Tables (migration ``0005_matching``):

- ``capacity_offer``: slots a provider offers at a site, with the eligibility limits;
- ``matching_run``: one optimal assignment of waiting patients to offers (solver, objective,
  seconds, equity report as JSON), with child rows ``matching_proposal`` (who would go where)
  and ``matching_unassigned`` (every candidate not assigned, and why). Child tables rather than
  JSON because a run over a large list has tens of thousands of unassigned candidates and the
  API pages through them;
- ``transfer`` and ``transfer_event``: the workflow ``proposed → offered_to_patient →
  accepted | declined → completed``; the transfer row holds the current state and who/when of
  each step, the event rows the full audit trail;
- ``pathway_move``: a completed transfer, keyed by person, treatment function and original clock
  start, so the receiving provider's next census is linked to the moved pathway instead of being
  counted as a new wait (see `ptl.matching.move`).

Analytics tier: pathways are referenced by store id and provider pathway id, demographics are
the pseudonymised analytics columns; no NHS number, name, date of birth or postcode.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ptl.store.models import Base, BigId


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CapacityOffer(Base):
    """Capacity one provider offers for mutual aid, with the patients it can take."""

    __tablename__ = "capacity_offer"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider_code: Mapped[str] = mapped_column(String(12), index=True)
    site_code: Mapped[str] = mapped_column(String(12))
    treatment_function_code: Mapped[str] = mapped_column(String(3))
    #: JSON list of OPCS-4 codes, or null for any procedure in the treatment function
    procedure_codes: Mapped[str | None] = mapped_column(Text)
    slots: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    max_asa: Mapped[int | None] = mapped_column(SmallInteger)
    max_bmi: Mapped[float | None] = mapped_column(Float)
    min_age: Mapped[int | None] = mapped_column(SmallInteger)
    max_age: Mapped[int | None] = mapped_column(SmallInteger)
    day_case_only: Mapped[bool] = mapped_column(Boolean)
    interpreter_support: Mapped[bool] = mapped_column(Boolean)
    #: JSON list of accepted P-codes, or null for any (P1a–P4 or none recorded)
    priorities: Mapped[str | None] = mapped_column(Text)
    accepts_out_of_area: Mapped[bool] = mapped_column(Boolean)
    max_distance_miles: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    #: API key id, or `cli:<user>` for the command line
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_organisation: Mapped[str | None] = mapped_column(String(12))


class MatchingRun(Base):
    """One optimal assignment of candidates to offers, and how it was reached."""

    __tablename__ = "matching_run"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_organisation: Mapped[str | None] = mapped_column(String(12))
    #: JSON list of offer ids, and JSON object of the optional candidate filters
    offer_ids: Mapped[str] = mapped_column(Text)
    filters: Mapped[str | None] = mapped_column(Text)
    as_of: Mapped[dt.date] = mapped_column(Date)
    #: newest loaded feed id when the run read the list
    data_version: Mapped[int] = mapped_column(BigInteger)
    solver: Mapped[str] = mapped_column(String(80))
    seconds: Mapped[float] = mapped_column(Float)
    candidates: Mapped[int] = mapped_column(Integer)
    eligible: Mapped[int] = mapped_column(Integer)
    assigned: Mapped[int] = mapped_column(Integer)
    #: JSON: the lexicographic objective values, the cost scaling and the solver's own cost
    objective: Mapped[str] = mapped_column(Text)
    #: JSON: the greedy baseline's objective on the same candidates, for comparison
    baseline: Mapped[str | None] = mapped_column(Text)
    #: JSON: the equity guard's report (moved vs eligible vs list, and flags)
    equity: Mapped[str] = mapped_column(Text)
    #: JSON: seconds per stage (candidates, distances, solve, equity)
    timings: Mapped[str | None] = mapped_column(Text)


class MatchingProposal(Base):
    """One assignment in a run: this pathway to this offer (becomes a transfer when proposed)."""

    __tablename__ = "matching_proposal"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("matching_run.id", ondelete="CASCADE"), index=True)
    offer_id: Mapped[int] = mapped_column(BigInteger)
    #: `pathway.id` of the row in the snapshot the run read
    pathway_row_id: Mapped[int] = mapped_column(BigInteger)
    provider_code: Mapped[str] = mapped_column(String(12))
    pathway_id: Mapped[str] = mapped_column(String(40))
    pathway_id_issuer: Mapped[str] = mapped_column(String(12))
    person_id: Mapped[int | None] = mapped_column(BigInteger)
    source_identity_id: Mapped[int] = mapped_column(BigInteger)
    treatment_function_code: Mapped[str] = mapped_column(String(3))
    rtt_start_date: Mapped[dt.date | None] = mapped_column(Date)
    clinical_priority: Mapped[str | None] = mapped_column(String(3))
    days_waited: Mapped[int | None] = mapped_column(Integer)
    distance_miles: Mapped[float | None] = mapped_column(Float)
    asa_grade: Mapped[int | None] = mapped_column(SmallInteger)
    imd_quintile: Mapped[int | None] = mapped_column(SmallInteger)
    ethnic_group: Mapped[str | None] = mapped_column(String(20))
    age_band: Mapped[str | None] = mapped_column(String(6))
    sex: Mapped[str | None] = mapped_column(String(1))
    learning_disability: Mapped[bool | None] = mapped_column(Boolean)


class MatchingUnassigned(Base):
    """A candidate a run did not assign, and why (ineligible, out_of_range or outranked)."""

    __tablename__ = "matching_unassigned"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("matching_run.id", ondelete="CASCADE"), index=True)
    pathway_row_id: Mapped[int] = mapped_column(BigInteger)
    provider_code: Mapped[str] = mapped_column(String(12))
    pathway_id: Mapped[str] = mapped_column(String(40))
    person_id: Mapped[int | None] = mapped_column(BigInteger)
    clinical_priority: Mapped[str | None] = mapped_column(String(3))
    days_waited: Mapped[int | None] = mapped_column(Integer)
    #: ineligible | out_of_range | outranked
    reason: Mapped[str] = mapped_column(String(16))
    #: which limit (and offer), in words
    detail: Mapped[str] = mapped_column(Text)


class Transfer(Base):
    """A proposed move of one pathway to an offer, through to completion or decline."""

    __tablename__ = "transfer"
    __table_args__ = (
        Index("ix_transfer_state", "state"),
        Index("ix_transfer_from_provider_code", "from_provider_code"),
        Index("ix_transfer_to_provider_code", "to_provider_code"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigInteger)
    proposal_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    offer_id: Mapped[int] = mapped_column(BigInteger, index=True)
    #: proposed | offered_to_patient | accepted | declined | completed
    state: Mapped[str] = mapped_column(String(20))
    pathway_row_id: Mapped[int] = mapped_column(BigInteger)
    pathway_id: Mapped[str] = mapped_column(String(40))
    pathway_id_issuer: Mapped[str] = mapped_column(String(12))
    person_id: Mapped[int | None] = mapped_column(BigInteger)
    source_identity_id: Mapped[int] = mapped_column(BigInteger)
    treatment_function_code: Mapped[str] = mapped_column(String(3))
    rtt_start_date: Mapped[dt.date | None] = mapped_column(Date)
    from_provider_code: Mapped[str] = mapped_column(String(12))
    to_provider_code: Mapped[str] = mapped_column(String(12))
    to_site_code: Mapped[str] = mapped_column(String(12))
    clinical_priority: Mapped[str | None] = mapped_column(String(3))
    days_waited: Mapped[int | None] = mapped_column(Integer)
    distance_miles: Mapped[float | None] = mapped_column(Float)
    asa_grade: Mapped[int | None] = mapped_column(SmallInteger)
    imd_quintile: Mapped[int | None] = mapped_column(SmallInteger)
    ethnic_group: Mapped[str | None] = mapped_column(String(20))
    age_band: Mapped[str | None] = mapped_column(String(6))
    sex: Mapped[str | None] = mapped_column(String(1))
    learning_disability: Mapped[bool | None] = mapped_column(Boolean)
    proposed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    proposed_by: Mapped[str] = mapped_column(String(64))
    offered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    offered_by: Mapped[str | None] = mapped_column(String(64))
    #: when and by whom the patient's answer (accepted or declined) was recorded
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decline_reason: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class TransferEvent(Base):
    """One step of a transfer: from which state to which, by whom (key and organisation), when."""

    __tablename__ = "transfer_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfer.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    actor: Mapped[str] = mapped_column(String(64))
    actor_organisation: Mapped[str | None] = mapped_column(String(12))
    actor_role: Mapped[str] = mapped_column(String(12))
    note: Mapped[str | None] = mapped_column(Text)


class PathwayMove(Base):
    """A pathway that moved provider through a completed transfer, original clock start kept.

    Keyed by (person, treatment function, original clock start): the receiving provider's next
    census carries the same person waiting for the same treatment function with that clock start
    (RTT status 21, clock continues), and `ptl.matching.move.link_moved_pathways` pairs them.
    Before identity linking (`person_id` null) the sending provider's pathway key is the key.
    """

    __tablename__ = "pathway_move"
    __table_args__ = (
        Index("ix_pathway_move_person_tfc_start", "person_id", "treatment_function_code",
              "original_clock_start"),
        Index("ix_pathway_move_from_key", "from_pathway_id_issuer", "from_pathway_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfer.id"), unique=True)
    person_id: Mapped[int | None] = mapped_column(BigInteger)
    source_identity_id: Mapped[int] = mapped_column(BigInteger)
    treatment_function_code: Mapped[str] = mapped_column(String(3))
    original_clock_start: Mapped[dt.date | None] = mapped_column(Date)
    from_provider_code: Mapped[str] = mapped_column(String(12))
    from_pathway_id: Mapped[str] = mapped_column(String(40))
    from_pathway_id_issuer: Mapped[str] = mapped_column(String(12))
    to_provider_code: Mapped[str] = mapped_column(String(12))
    to_site_code: Mapped[str] = mapped_column(String(12))
    moved_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    moved_by: Mapped[str] = mapped_column(String(64))
