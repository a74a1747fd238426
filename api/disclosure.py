"""What each role may see of patient rows and aggregates: the one place that decides.

- Identifiable tier: `icb` keys for every row; `provider` keys for rows of their own
  organisation only. Identifiable rows carry the identity fields (read from the store for just
  the rows being sent), the pathway and referral ids and the store's `person_id`.
- Every other row is de-identified: no NHS number, name, date of birth, postcode, local patient
  id, pathway or referral id, and no `person_id`; only `person_key`, a keyed hash (HMAC-SHA256)
  of the person, stable for a given `PTL_PSEUDONYM_KEY`, so duplicates still show as one person.
- Aggregates leaving the identifiable tier (every role but `icb`, or `icb` asking for it) have
  counts under `PTL_SUPPRESS_BELOW` replaced by null with a `<column>_suppressed` flag.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl
from sqlalchemy import Connection, select

from ptl.store.access import Client
from ptl.store.models import SourceIdentity

log = logging.getLogger("ptl.api")

#: Identity fields, from `source_identity`, only ever sent on identifiable rows.
IDENTITY_FIELDS: Final[tuple[str, ...]] = (
    "local_patient_id", "nhs_number", "family_name", "given_name", "date_of_birth", "postcode",
)
#: Record ids that point back into a provider's systems: identifiable rows only.
RECORD_FIELDS: Final[tuple[str, ...]] = ("person_id", "pathway_id", "referral_id")
IDENTITY_SCHEMA: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    "source_identity_id": pl.Int64,
    "local_patient_id": pl.String,
    "nhs_number": pl.String,
    "family_name": pl.String,
    "given_name": pl.String,
    "date_of_birth": pl.Date,
    "postcode": pl.String,
}
_IDENTITY_BATCH = 5_000
_KNOWN_KEYS = 500_000


class Pseudonymiser:
    """Person keys: HMAC-SHA256 of the person id (or, before linking, of the source record)."""

    def __init__(self, secret: str) -> None:
        if not secret:
            log.warning("PTL_PSEUDONYM_KEY is not set: person keys are random per process and "
                        "change when the API restarts")
            secret = secrets.token_hex(32)
        self._secret = secret.encode("utf-8")
        # Pages repeat the same people: remember keys (bounded) rather than re-hash every time.
        self._known: dict[str, str] = {}

    def key(self, person_id: int | None, source_identity_id: int | None) -> str:
        subject = f"p{person_id}" if person_id is not None else f"s{source_identity_id}"
        known = self._known.get(subject)
        if known is None:
            if len(self._known) >= _KNOWN_KEYS:
                self._known.clear()
            known = self._known[subject] = (
                "pk_" + hmac.new(self._secret, subject.encode("ascii"), hashlib.sha256).hexdigest()[:20])
        return known

    def keys(self, frame: pl.DataFrame) -> pl.Series:
        persons = frame.get_column("person_id").to_list() if "person_id" in frame.columns else [None] * frame.height
        sources = (frame.get_column("source_identity_id").to_list()
                   if "source_identity_id" in frame.columns else [None] * frame.height)
        return pl.Series("person_key", [self.key(p, s) for p, s in zip(persons, sources, strict=True)],
                         dtype=pl.String)


def sees_identifiable(client: Client) -> bool:
    return client.role in ("icb", "provider")


def identifiable_mask(frame: pl.DataFrame, client: Client, provider_column: str = "provider_code") -> pl.Series:
    """True for the rows this client may see identifiably."""
    if client.role == "icb":
        return pl.Series("identifiable", [True] * frame.height, dtype=pl.Boolean)
    if client.role == "provider":
        return (frame.get_column(provider_column) == client.organisation_code).fill_null(False).alias("identifiable")
    return pl.Series("identifiable", [False] * frame.height, dtype=pl.Boolean)


def read_identities(connection: Connection, source_identity_ids: Sequence[int]) -> pl.DataFrame:
    """Identity fields for these source records only (never the whole table)."""
    rows: list[tuple[object, ...]] = []
    ids = sorted({int(i) for i in source_identity_ids if i is not None})
    if ids:
        for start in range(0, len(ids), _IDENTITY_BATCH):
            batch = ids[start:start + _IDENTITY_BATCH]
            rows.extend(connection.execute(
                select(SourceIdentity.id, SourceIdentity.local_patient_id, SourceIdentity.nhs_number,
                       SourceIdentity.family_name, SourceIdentity.given_name,
                       SourceIdentity.date_of_birth, SourceIdentity.postcode)
                .where(SourceIdentity.id.in_(batch))
            ).tuples().all())
    return pl.DataFrame(rows, schema=IDENTITY_SCHEMA, orient="row")


@dataclass(frozen=True, slots=True)
class Disclosed:
    """Rows ready to send, and how many of them are identifiable (for the audit trail)."""

    frame: pl.DataFrame
    identifiable_rows: int


def disclose_rows(connection: Connection | None, frame: pl.DataFrame, client: Client,
                  pseudonymiser: Pseudonymiser, *, provider_column: str = "provider_code",
                  columns: Sequence[str] | None = None) -> Disclosed:
    """Apply the client's tier to pathway rows (which carry `source_identity_id`, `person_id`
    and the provider column): identity fields joined where allowed, record ids blanked and a
    person key added everywhere; `source_identity_id` (a store id) never leaves. `columns`
    picks and orders the output (default: every column). Few frame operations: a page is
    served in well under a millisecond."""
    mask = identifiable_mask(frame, client, provider_column)
    out = frame.with_columns(mask, pseudonymiser.keys(frame))
    identifiable = int(mask.sum() or 0)
    if identifiable and "source_identity_id" in frame.columns and connection is not None:
        wanted = out.filter(pl.col("identifiable")).get_column("source_identity_id").to_list()
        identities = read_identities(connection, wanted)
        out = out.join(identities, on="source_identity_id", how="left", maintain_order="left")
    hidden = {*IDENTITY_FIELDS, *RECORD_FIELDS}
    wanted_columns = list(columns) if columns is not None else [
        *[c for c in out.columns if c != "source_identity_id"],
        *[c for c in IDENTITY_FIELDS if c not in out.columns]]
    expressions: list[pl.Expr] = []
    for name in wanted_columns:
        if name in out.columns:
            value = pl.col(name)
        elif name in IDENTITY_SCHEMA:
            value = pl.lit(None, dtype=IDENTITY_SCHEMA[name])
        else:
            raise KeyError(f"disclose_rows: no column {name}")
        # Blank by the mask as well as by what was fetched: belt and braces on the one rule that matters.
        expressions.append(pl.when(pl.col("identifiable")).then(value).otherwise(None).alias(name)
                           if name in hidden else value.alias(name))
    return Disclosed(frame=out.select(expressions), identifiable_rows=identifiable)


def must_suppress(client: Client, asked: bool) -> bool:
    """Aggregates leave the identifiable tier for every role but `icb` (who may ask for it)."""
    return asked or client.role != "icb"


def suppress_counts(frame: pl.DataFrame, count_columns: Sequence[str], threshold: int) -> pl.DataFrame:
    """Counts under `threshold` (but not zero) become null, flagged in `<column>_suppressed`.

    Zero is not disclosive and is kept. Columns derived from a suppressed count (shares, rates,
    medians of that group) are the view's business: `suppress_groups` nulls them too.
    """
    present = [c for c in count_columns if c in frame.columns]
    flags = [((pl.col(c) > 0) & (pl.col(c) < threshold)).fill_null(False).alias(f"{c}_suppressed") for c in present]
    return frame.with_columns(flags).with_columns(
        pl.when(pl.col(f"{c}_suppressed")).then(None).otherwise(pl.col(c)).alias(c) for c in present
    )
