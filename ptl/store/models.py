"""The normalised store: SQLAlchemy 2 typed models.

Two tiers live here, deliberately apart:
- analytics tier: `pathway` (one row per pathway per provider census, pseudonymised: no NHS
  number, name, date of birth, postcode or local patient id; it points at its identity by id);
- identifiable tier: `source_identity` (one row per provider patient record), `row_issue.raw_row`.

Alembic (``migrations/``) owns the schema; these models are its source of truth for
autogenerate and the typed interface for code. Application code never calls ``create_all``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: 64-bit ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Organisation(Base):
    """An NHS trust, independent-sector provider or commissioner (ODS)."""

    __tablename__ = "organisation"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    #: trust | independent | icb | other
    kind: Mapped[str] = mapped_column(String(20), default="other")
    region_code: Mapped[str | None] = mapped_column(String(12))
    icb_code: Mapped[str | None] = mapped_column(String(12))
    postcode: Mapped[str | None] = mapped_column(String(10))
    open_date: Mapped[dt.date | None] = mapped_column(Date)
    close_date: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Site(Base):
    """A treatment site of a provider."""

    __tablename__ = "site"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    organisation_code: Mapped[str] = mapped_column(
        ForeignKey("organisation.code"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    postcode: Mapped[str | None] = mapped_column(String(10))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)


class DeclaredCapacity(Base):
    """Clock stops a week a provider declares it can deliver for a scope, from a date on.

    Scope: the provider, one of its sites (null = the whole provider) and one treatment function
    (null = every specialty). Rows are never deleted or changed except to mark them withdrawn:
    a new declaration for a scope supersedes earlier ones from its `valid_from` (which one is in
    force on a date: `ptl.declared_capacity`). Planning figures, not patient data.
    """

    __tablename__ = "declared_capacity"
    __table_args__ = (CheckConstraint("weekly_capacity > 0", name="weekly_capacity_positive"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider_code: Mapped[str] = mapped_column(String(12), index=True)
    site_code: Mapped[str | None] = mapped_column(String(12))
    treatment_function_code: Mapped[str | None] = mapped_column(String(3))
    weekly_capacity: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    #: API key id, or `cli:<user>` for the command line
    declared_by: Mapped[str] = mapped_column(String(64))
    #: the declaring key's organisation (null from the command line)
    declared_by_organisation: Mapped[str | None] = mapped_column(String(12))
    declared_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    note: Mapped[str | None] = mapped_column(Text)
    #: set once when the declaration is withdrawn (it then never counts again)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    withdrawn_by: Mapped[str | None] = mapped_column(String(64))


class Feed(Base):
    """One received extract file: who sent it, for which census, and what became of it."""

    __tablename__ = "feed"
    __table_args__ = (
        # The same file (sha256) for the same provider loads once; refused files may be re-sent.
        Index(
            "uq_feed_loaded_sha256",
            "provider_code",
            "sha256",
            unique=True,
            sqlite_where=text("status = 'loaded'"),
            postgresql_where=text("status = 'loaded'"),
        ),
        Index("ix_feed_provider_census", "provider_code", "census_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider_code: Mapped[str] = mapped_column(String(12))
    census_date: Mapped[dt.date | None] = mapped_column(Date)
    filename: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    file_format: Mapped[str] = mapped_column(String(10))
    profile: Mapped[str] = mapped_column(String(200))
    #: cli | api | folder | mesh
    source: Mapped[str] = mapped_column(String(20), default="cli")
    #: loaded | refused
    status: Mapped[str] = mapped_column(String(12))
    message: Mapped[str | None] = mapped_column(Text)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_loaded: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    rows_warned: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    read_seconds: Mapped[float | None] = mapped_column(Float)
    validate_seconds: Mapped[float | None] = mapped_column(Float)
    load_seconds: Mapped[float | None] = mapped_column(Float)


class CurrentSnapshot(Base):
    """Which loaded feed is each provider's current snapshot (the newest census)."""

    __tablename__ = "current_snapshot"

    provider_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feed.id"))
    census_date: Mapped[dt.date] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class RowIssue(Base):
    """A problem with one row of a feed: rejected (not loaded) or a warning (loaded, value blanked).

    `raw_row` holds the source row as JSON for rejected rows: identifiable tier.
    """

    __tablename__ = "row_issue"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feed.id", ondelete="CASCADE"), index=True)
    row_number: Mapped[int] = mapped_column(Integer)
    #: canonical field name, and the header it had in the provider's file
    column_name: Mapped[str] = mapped_column(String(100))
    source_column: Mapped[str | None] = mapped_column(String(200))
    #: rejected | warning
    severity: Mapped[str] = mapped_column(String(10))
    #: machine-readable kind, e.g. bad_code, bad_date, duplicate_pathway_key
    kind: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    raw_value: Mapped[str | None] = mapped_column(Text)
    raw_row: Mapped[str | None] = mapped_column(Text)


class SourceIdentity(Base):
    """A provider's record of a patient (identifiable tier), latest values by census."""

    __tablename__ = "source_identity"
    __table_args__ = (UniqueConstraint("provider_code", "local_patient_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Byte order on PostgreSQL (migration 0006): codes, compared with memcmp in the unique index.
    provider_code: Mapped[str] = mapped_column(String(12).with_variant(String(12, collation="C"), "postgresql"))
    local_patient_id: Mapped[str] = mapped_column(
        String(40).with_variant(String(40, collation="C"), "postgresql")
    )
    nhs_number: Mapped[str | None] = mapped_column(String(10))
    nhs_number_status: Mapped[str | None] = mapped_column(String(2))
    family_name: Mapped[str | None] = mapped_column(String(100))
    given_name: Mapped[str | None] = mapped_column(String(100))
    date_of_birth: Mapped[dt.date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(1))
    postcode: Mapped[str | None] = mapped_column(String(8))
    first_feed_id: Mapped[int] = mapped_column(BigInteger)
    #: census of the feed that last changed these values (an older census never overwrites)
    values_census_date: Mapped[dt.date] = mapped_column(Date)


class Pathway(Base):
    """One pathway on one provider's census snapshot: WLMDS fields normalised plus derived fields.

    Analytics tier: pseudonymised. The patient is reached through `source_identity_id`.
    """

    __tablename__ = "pathway"
    # One index only (see migrations 0001 and 0006): reads go through a feed; keys are unique
    # per feed because validation rejects duplicates. BRIN on PostgreSQL: the table is
    # append-only and each feed's rows are contiguous.
    __table_args__ = (Index("ix_pathway_feed_id", "feed_id", postgresql_using="brin"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The feed (no foreign key: see migration 0001; written in the feed's own transaction).
    feed_id: Mapped[int] = mapped_column(BigInteger)
    provider_code: Mapped[str] = mapped_column(String(12))
    census_date: Mapped[dt.date] = mapped_column(Date)
    source_identity_id: Mapped[int] = mapped_column(BigInteger)
    pathway_id: Mapped[str] = mapped_column(String(40))
    pathway_id_issuer: Mapped[str] = mapped_column(String(12))
    referral_id: Mapped[str | None] = mapped_column(String(40))
    site_code: Mapped[str | None] = mapped_column(String(12))
    treatment_function_code: Mapped[str] = mapped_column(String(3))
    rtt_start_date: Mapped[dt.date | None] = mapped_column(Date)
    rtt_status: Mapped[str | None] = mapped_column(String(2))
    waiting_list_type: Mapped[str] = mapped_column(String(4))
    is_rtt: Mapped[bool] = mapped_column(Boolean)
    priority_type: Mapped[str | None] = mapped_column(String(1))
    clinical_priority: Mapped[str | None] = mapped_column(String(3))
    procedure_code: Mapped[str | None] = mapped_column(String(10))
    intended_management: Mapped[str | None] = mapped_column(String(1))
    decision_to_admit_date: Mapped[dt.date | None] = mapped_column(Date)
    tci_date: Mapped[dt.date | None] = mapped_column(Date)
    asa_grade: Mapped[int | None] = mapped_column(SmallInteger)
    bmi: Mapped[float | None] = mapped_column(Float)
    learning_disability: Mapped[bool | None] = mapped_column(Boolean)
    interpreter_required: Mapped[bool | None] = mapped_column(Boolean)
    last_validated_date: Mapped[dt.date | None] = mapped_column(Date)
    last_attended_date: Mapped[dt.date | None] = mapped_column(Date)
    last_dna_date: Mapped[dt.date | None] = mapped_column(Date)
    travel_willingness: Mapped[str | None] = mapped_column(String(10))
    # Derived (pseudonymised demographics and wait arithmetic at the census).
    sex: Mapped[str | None] = mapped_column(String(1))
    ethnic_category: Mapped[str | None] = mapped_column(String(2))
    ethnic_group: Mapped[str | None] = mapped_column(String(20))
    lsoa11: Mapped[str | None] = mapped_column(String(9))
    imd_decile: Mapped[int | None] = mapped_column(SmallInteger)
    imd_quintile: Mapped[int | None] = mapped_column(SmallInteger)
    age_years: Mapped[int | None] = mapped_column(SmallInteger)
    age_band: Mapped[str | None] = mapped_column(String(6))
    days_waited: Mapped[int | None] = mapped_column(Integer)
    week_band: Mapped[int | None] = mapped_column(Integer)
    priority_rank: Mapped[int] = mapped_column(SmallInteger)


class ImdLsoa(Base):
    """English Indices of Deprivation 2019 by 2011 LSOA (GOV.UK File 1)."""

    __tablename__ = "imd_lsoa"

    lsoa11: Mapped[str] = mapped_column(String(9), primary_key=True)
    lsoa_name: Mapped[str | None] = mapped_column(String(100))
    lad_code: Mapped[str | None] = mapped_column(String(9))
    lad_name: Mapped[str | None] = mapped_column(String(100))
    imd_rank: Mapped[int] = mapped_column(Integer)
    imd_decile: Mapped[int] = mapped_column(SmallInteger)
    imd_quintile: Mapped[int] = mapped_column(SmallInteger)


class PostcodeLsoa(Base):
    """Postcode → 2011 LSOA (ONS NSPL/ONSPD), with the postcode centroid."""

    __tablename__ = "postcode_lsoa"

    postcode: Mapped[str] = mapped_column(String(8), primary_key=True)
    outward_code: Mapped[str] = mapped_column(String(4), index=True)
    lsoa11: Mapped[str | None] = mapped_column(String(9))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)


class RefdataLoad(Base):
    """Provenance of loaded reference data: which file, when, how many rows."""

    __tablename__ = "refdata_load"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_now, server_default=func.now()
    )
