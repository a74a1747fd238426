"""Store models for persons, identity links, the identity review list and the link history.

Identifiable tier: these tables say which provider records are one human. `person` ids are the
stable pseudonymous key the analytics tier joins on; `identity_link` has exactly one row per
linked `source_identity`. Written only by `ptl.identity` (bulk, in one transaction per run).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ptl.store.models import Base, BigId


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Person(Base):
    """One human across every provider. Ids are never reused; a person absorbed by a merge is
    retired (``retired_at`` set, ``merged_into_id`` the survivor) rather than deleted."""

    __tablename__ = "person"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    created_by_run_id: Mapped[int | None] = mapped_column(BigInteger)
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    merged_into_id: Mapped[int | None] = mapped_column(BigInteger)


class IdentityLink(Base):
    """Which person a provider record belongs to, how that was decided, and with what probability."""

    __tablename__ = "identity_link"

    #: `source_identity.id`, without a foreign key: on PostgreSQL `source_identity` is
    #: partitioned by provider and its keys include the provider (migration 0009).
    source_identity_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    person_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("person.id"), index=True)
    #: nhs_number | probabilistic | singleton
    method: Mapped[str] = mapped_column(String(13))
    #: Splink match probability of the record's best link inside its person (probabilistic only)
    match_probability: Mapped[float | None] = mapped_column(Float)
    linked_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    #: digest of the identifying values the link was decided on: a change re-links the record
    values_digest: Mapped[str | None] = mapped_column(String(16))


class IdentityReview(Base):
    """A linkage conflict a person must look at (never merged silently), with its evidence.

    ``subject_key`` (kind + the source identity ids involved) makes detection idempotent: a
    conflict already listed, open or resolved, is not listed again.
    """

    __tablename__ = "identity_review"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: nhs_number_dob_conflict | nhs_number_shared_in_provider | ambiguous_match
    kind: Mapped[str] = mapped_column(String(40))
    #: open | resolved
    status: Mapped[str] = mapped_column(String(10), default="open")
    subject_key: Mapped[str] = mapped_column(String(200), unique=True)
    #: comma-separated, ascending
    source_identity_ids: Mapped[str] = mapped_column(Text)
    provider_codes: Mapped[str] = mapped_column(Text)
    person_ids: Mapped[str | None] = mapped_column(Text)
    #: JSON: the records, the comparison and the probabilities that raised the item
    evidence: Mapped[str] = mapped_column(Text)
    link_run_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: why it was closed: a reviewer's note, or "no longer detected"
    resolution: Mapped[str | None] = mapped_column(Text)


class LinkRun(Base):
    """One run of identity linking: what it was asked to do and what it changed."""

    __tablename__ = "link_run"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: incremental | full
    mode: Mapped[str] = mapped_column(String(12))
    model_version: Mapped[str] = mapped_column(String(64))
    match_threshold: Mapped[float] = mapped_column(Float)
    identities: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    pairs_scored: Mapped[int] = mapped_column(BigInteger, default=0)
    links_changed: Mapped[int] = mapped_column(Integer, default=0)
    persons_created: Mapped[int] = mapped_column(Integer, default=0)
    persons_merged: Mapped[int] = mapped_column(Integer, default=0)
    persons_split: Mapped[int] = mapped_column(Integer, default=0)
    reviews_opened: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float | None] = mapped_column(Float)


class PersonChange(Base):
    """A merge or split of persons, recorded when a run moves records between person ids.

    merge: ``other_person_id`` was retired and its records joined ``person_id``.
    split: ``person_id`` kept its id and ``records`` of its records now belong to ``other_person_id``.
    """

    __tablename__ = "person_change"
    __table_args__ = (Index("ix_person_change_person_id", "person_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    link_run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("link_run.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    person_id: Mapped[int] = mapped_column(BigInteger)
    other_person_id: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
