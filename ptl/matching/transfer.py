"""The mutual-aid transfer workflow: a proposal becomes a move, one authorised step at a time.

    proposed ──► offered_to_patient ──► accepted ──► completed
                                   └──► declined

============================  =================================  ==============================
step (to state)               from                               who
============================  =================================  ==============================
``proposed``                  a proposal of a matching run       an ``icb`` key (coordinator)
``offered_to_patient``        ``proposed``                       the sending provider
``accepted`` / ``declined``   ``offered_to_patient``             the sending provider (records
                                                                 the patient's answer; a decline
                                                                 needs a reason)
``completed``                 ``accepted``                       the receiving provider
============================  =================================  ==============================

Every step writes who (key id and organisation) and when on the transfer row and a
`transfer_event`; an illegal step is refused with a message saying what state the transfer is
in and what may happen next. Updates are conditional on the state read (``UPDATE … WHERE state
= :expected``) so two people acting at once cannot both succeed.

Completing a transfer records a `pathway_move` (original clock start kept; see
`ptl.matching.move`). A transfer in any state but ``declined`` holds one slot of its offer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl
from sqlalchemy import Engine, func, insert, select, update

from ptl.store.bulk import read_frame
from ptl.store.matching import CapacityOffer, MatchingProposal, PathwayMove, Transfer, TransferEvent

STATES: Final[tuple[str, ...]] = ("proposed", "offered_to_patient", "accepted", "declined", "completed")
#: States in which the pathway is spoken for (not matched again).
LIVE_STATES: Final[tuple[str, ...]] = ("proposed", "offered_to_patient", "accepted")
#: States that hold a slot of the offer.
SLOT_STATES: Final[tuple[str, ...]] = (*LIVE_STATES, "completed")
#: to_state → (states it may follow, whose step it is)
TRANSITIONS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "offered_to_patient": (("proposed",), "sending"),
    "accepted": (("offered_to_patient",), "sending"),
    "declined": (("offered_to_patient",), "sending"),
    "completed": (("accepted",), "receiving"),
}
MAX_REASON_CHARS: Final[int] = 500


class TransferError(ValueError):
    """A transfer step is not allowed now (wrong state, missing reason, slot taken…)."""


class TransferForbidden(PermissionError):
    """The actor may not take this step (wrong role or organisation)."""


class UnknownTransfer(LookupError):
    """No transfer (or run, or proposal) with that id."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who takes a step: an API key (id, organisation, role) or a command-line user."""

    name: str
    role: str
    organisation_code: str | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_step(transfer_id: int, state: str, to_state: str, actor: Actor, *, from_provider: str,
               to_provider: str, reason: str | None) -> None:
    """Refuse an illegal step with a message a person can act on (pure: no store)."""
    if to_state not in TRANSITIONS:
        raise TransferError(f"'{to_state}' is not a step; a transfer moves to one of "
                            + ", ".join(TRANSITIONS))
    allowed_from, whose = TRANSITIONS[to_state]
    if state not in allowed_from:
        following = [s for s, (froms, _) in TRANSITIONS.items() if state in froms]
        nxt = f"it can next be {' or '.join(following)}" if following else "it is finished"
        raise TransferError(f"transfer {transfer_id} is {state}, so it cannot become {to_state}; {nxt}")
    provider = from_provider if whose == "sending" else to_provider
    if actor.role != "provider" or actor.organisation_code != provider:
        raise TransferForbidden(
            f"moving transfer {transfer_id} to {to_state} is the {whose} provider's step ({provider}); "
            f"you act for {actor.organisation_code or 'no organisation'} as {actor.role}")
    if to_state == "declined" and not (reason and reason.strip()):
        raise TransferError(f"declining transfer {transfer_id} needs the patient's reason (e.g. "
                            "'too far to travel', 'prefers to wait for current hospital')")
    if reason and len(reason) > MAX_REASON_CHARS:
        raise TransferError(f"the reason is {len(reason)} characters; keep it under {MAX_REASON_CHARS}")


def propose_transfers(engine: Engine, run_id: int, actor: Actor,
                      proposal_ids: Sequence[int] | None = None) -> list[int]:
    """Turn proposals of a run (all when `proposal_ids` is None) into transfers; returns their ids.

    Refuses (nothing is written) when a proposal is already a transfer, its pathway is already
    in a live transfer, or its offer has no slot left.
    """
    if actor.role != "icb":
        raise TransferForbidden(f"proposing transfers is an ICB coordinator's step; you act as {actor.role}")
    now = _now()
    with engine.begin() as connection:
        statement = select(MatchingProposal).where(MatchingProposal.run_id == run_id)
        if proposal_ids is not None:
            statement = statement.where(MatchingProposal.id.in_(list(proposal_ids)))
        proposals = connection.execute(statement.order_by(MatchingProposal.id)).all()
        if proposal_ids is not None:
            found = {p.id for p in proposals}
            missing = [i for i in proposal_ids if i not in found]
            if missing:
                raise UnknownTransfer(f"run {run_id} has no proposal {', '.join(map(str, missing))}")
        if not proposals:
            raise UnknownTransfer(f"run {run_id} has no proposals (or does not exist)")
        taken = connection.execute(select(Transfer.proposal_id, Transfer.id).where(
            Transfer.proposal_id.in_([p.id for p in proposals]))).all()
        if taken:
            raise TransferError(f"proposal {taken[0][0]} is already transfer {taken[0][1]}")
        keys = {(p.pathway_id_issuer, p.pathway_id) for p in proposals}
        live = connection.execute(select(Transfer.id, Transfer.pathway_id_issuer, Transfer.pathway_id,
                                         Transfer.state).where(Transfer.state.in_(LIVE_STATES))).all()
        clash = [t for t in live if (t.pathway_id_issuer, t.pathway_id) in keys]
        if clash:
            raise TransferError(f"a pathway of these proposals is already in transfer {clash[0].id} "
                                f"({clash[0].state}); run matching again for current proposals")
        wanted: dict[int, int] = {}
        for p in proposals:
            wanted[p.offer_id] = wanted.get(p.offer_id, 0) + 1
        slots = dict(connection.execute(select(CapacityOffer.id, CapacityOffer.slots)
                                        .where(CapacityOffer.id.in_(list(wanted)))).tuples().all())
        used = dict(connection.execute(
            select(Transfer.offer_id, func.count()).where(Transfer.offer_id.in_(list(wanted)),
                                                          Transfer.state.in_(SLOT_STATES))
            .group_by(Transfer.offer_id)).tuples().all())
        for offer_id, count in wanted.items():
            left = slots.get(offer_id, 0) - used.get(offer_id, 0)
            if count > left:
                raise TransferError(f"offer {offer_id} has {max(left, 0)} slot(s) left but {count} proposal(s) "
                                    "need one; run matching again")
        offers = {row.id: row for row in connection.execute(
            select(CapacityOffer.id, CapacityOffer.provider_code, CapacityOffer.site_code)
            .where(CapacityOffer.id.in_(list(wanted)))).all()}
        created: list[int] = []
        for p in proposals:  # one per proposal a coordinator confirms: tens, not the whole list
            transfer_id = connection.execute(insert(Transfer).values(
                run_id=run_id, proposal_id=p.id, offer_id=p.offer_id, state="proposed",
                pathway_row_id=p.pathway_row_id, pathway_id=p.pathway_id,
                pathway_id_issuer=p.pathway_id_issuer, person_id=p.person_id,
                source_identity_id=p.source_identity_id, treatment_function_code=p.treatment_function_code,
                rtt_start_date=p.rtt_start_date, from_provider_code=p.provider_code,
                to_provider_code=offers[p.offer_id].provider_code, to_site_code=offers[p.offer_id].site_code,
                clinical_priority=p.clinical_priority, days_waited=p.days_waited,
                distance_miles=p.distance_miles, asa_grade=p.asa_grade, imd_quintile=p.imd_quintile,
                ethnic_group=p.ethnic_group, age_band=p.age_band, sex=p.sex,
                learning_disability=p.learning_disability, proposed_at=now, proposed_by=actor.name,
                updated_at=now,
            ).returning(Transfer.id)).scalar_one()
            connection.execute(insert(TransferEvent).values(
                transfer_id=transfer_id, from_state=None, to_state="proposed", occurred_at=now,
                actor=actor.name, actor_organisation=actor.organisation_code, actor_role=actor.role))
            created.append(int(transfer_id))
    return created


def advance_transfer(engine: Engine, transfer_id: int, to_state: str, actor: Actor,
                     reason: str | None = None) -> dict[str, Any]:
    """Take one step of the workflow; returns the transfer as `get_transfer` shows it."""
    now = _now()
    with engine.begin() as connection:
        row = connection.execute(select(Transfer).where(Transfer.id == transfer_id)).first()
        if row is None:
            raise UnknownTransfer(f"there is no transfer {transfer_id}; see `ptl transfers list`")
        transfer = row
        check_step(transfer_id, transfer.state, to_state, actor, from_provider=transfer.from_provider_code,
                   to_provider=transfer.to_provider_code, reason=reason)
        values: dict[str, Any] = {"state": to_state, "updated_at": now}
        if to_state == "offered_to_patient":
            values |= {"offered_at": now, "offered_by": actor.name}
        elif to_state in ("accepted", "declined"):
            values |= {"decided_at": now, "decided_by": actor.name}
            if to_state == "declined":
                values["decline_reason"] = reason.strip() if reason else None
        elif to_state == "completed":
            values |= {"completed_at": now, "completed_by": actor.name}
        done = connection.execute(update(Transfer).where(Transfer.id == transfer_id,
                                                         Transfer.state == transfer.state).values(**values))
        if done.rowcount != 1:
            raise TransferError(f"transfer {transfer_id} changed while you were acting on it; look again")
        connection.execute(insert(TransferEvent).values(
            transfer_id=transfer_id, from_state=transfer.state, to_state=to_state, occurred_at=now,
            actor=actor.name, actor_organisation=actor.organisation_code, actor_role=actor.role,
            note=reason.strip() if reason else None))
        if to_state == "completed":
            connection.execute(insert(PathwayMove).values(
                transfer_id=transfer_id, person_id=transfer.person_id,
                source_identity_id=transfer.source_identity_id,
                treatment_function_code=transfer.treatment_function_code,
                original_clock_start=transfer.rtt_start_date, from_provider_code=transfer.from_provider_code,
                from_pathway_id=transfer.pathway_id, from_pathway_id_issuer=transfer.pathway_id_issuer,
                to_provider_code=transfer.to_provider_code, to_site_code=transfer.to_site_code,
                moved_at=now, moved_by=actor.name))
    return get_transfer(engine, transfer_id)


#: Transfer columns as the API and CLI show them.
TRANSFER_FIELDS: Final[tuple[str, ...]] = (
    "id", "run_id", "proposal_id", "offer_id", "state", "pathway_row_id", "pathway_id", "pathway_id_issuer",
    "person_id", "treatment_function_code", "rtt_start_date", "from_provider_code", "to_provider_code",
    "to_site_code", "clinical_priority", "days_waited", "distance_miles", "asa_grade", "imd_quintile",
    "ethnic_group", "age_band", "sex", "learning_disability", "proposed_at", "proposed_by", "offered_at",
    "offered_by", "decided_at", "decided_by", "decline_reason", "completed_at", "completed_by", "updated_at",
)


def _as_dict(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in TRANSFER_FIELDS}


def get_transfer(engine: Engine, transfer_id: int) -> dict[str, Any]:
    """One transfer with its events (who did what, when)."""
    with engine.connect() as connection:
        row = connection.execute(select(*[getattr(Transfer, f) for f in TRANSFER_FIELDS])
                                 .where(Transfer.id == transfer_id)).first()
        if row is None:
            raise UnknownTransfer(f"there is no transfer {transfer_id}; see `ptl transfers list`")
        events = connection.execute(
            select(TransferEvent.from_state, TransferEvent.to_state, TransferEvent.occurred_at,
                   TransferEvent.actor, TransferEvent.actor_organisation, TransferEvent.actor_role,
                   TransferEvent.note).where(TransferEvent.transfer_id == transfer_id)
            .order_by(TransferEvent.id)).all()
    return {**_as_dict(row), "events": [dict(e._mapping) for e in events]}


def list_transfers(engine: Engine, *, state: str | None = None, provider_code: str | None = None,
                   run_id: int | None = None, offer_id: int | None = None, after_id: int = 0,
                   limit: int = 100) -> list[dict[str, Any]]:
    """Transfers oldest first (keyset pages by id); `provider_code` matches either side."""
    if state is not None and state not in STATES:
        raise TransferError(f"'{state}' is not a transfer state; use one of {', '.join(STATES)}")
    statement = select(*[getattr(Transfer, f) for f in TRANSFER_FIELDS]).where(Transfer.id > after_id)
    if state:
        statement = statement.where(Transfer.state == state)
    if provider_code:
        code = provider_code.upper()
        statement = statement.where((Transfer.from_provider_code == code) | (Transfer.to_provider_code == code))
    if run_id is not None:
        statement = statement.where(Transfer.run_id == run_id)
    if offer_id is not None:
        statement = statement.where(Transfer.offer_id == offer_id)
    with engine.connect() as connection:
        rows = connection.execute(statement.order_by(Transfer.id).limit(limit)).all()
    return [_as_dict(r) for r in rows]


_TRANSFER_SCHEMA: Final[dict[str, Any]] = {
    "id": pl.Int64, "offer_id": pl.Int64, "state": pl.String, "pathway_id": pl.String,
    "pathway_id_issuer": pl.String, "from_provider_code": pl.String, "to_provider_code": pl.String,
    "asa_grade": pl.Int16, "imd_quintile": pl.Int16, "ethnic_group": pl.String, "age_band": pl.String,
    "sex": pl.String, "learning_disability": pl.Boolean, "proposed_at": pl.Datetime("us"),
}


def transfers_frame(engine: Engine) -> pl.DataFrame:
    """Every transfer's reporting columns (no identifiers beyond the provider pathway key)."""
    with engine.connect() as connection:
        frame = read_frame(connection, "SELECT " + ", ".join(_TRANSFER_SCHEMA) + " FROM transfer",
                           schema={k: (pl.String if k == "proposed_at" else v) for k, v in _TRANSFER_SCHEMA.items()})
    # Both backends' text forms start "YYYY-MM-DD HH:MM:SS"; the time zone is UTC by construction.
    return frame.with_columns(pl.col("proposed_at").str.slice(0, 19).str.replace("T", " ")
                              .str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False).alias("proposed_at"))


def pathways_in_transfer(engine: Engine) -> pl.DataFrame:
    """`pathway_id_issuer, pathway_id, transfer_id, transfer_state` of transfers that hold a
    pathway (live or completed): such pathways are not matched again."""
    with engine.connect() as connection:
        rows = connection.execute(select(Transfer.pathway_id_issuer, Transfer.pathway_id, Transfer.id,
                                         Transfer.state).where(Transfer.state.in_(SLOT_STATES))
                                  .order_by(Transfer.id)).tuples().all()
    return pl.DataFrame(rows, schema={"pathway_id_issuer": pl.String, "pathway_id": pl.String,
                                      "transfer_id": pl.Int64, "transfer_state": pl.String}, orient="row")


def slots_used(engine: Engine, offer_ids: Sequence[int]) -> dict[int, int]:
    """Slots of each offer held by transfers (any state but declined)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(Transfer.offer_id, func.count()).where(Transfer.offer_id.in_(list(offer_ids)),
                                                          Transfer.state.in_(SLOT_STATES))
            .group_by(Transfer.offer_id)).tuples().all()
    return {int(k): int(v) for k, v in rows}
