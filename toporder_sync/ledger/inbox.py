"""The inbox: every closure received, kept as its exact bytes, once per content.

A closure is stored once per content (its sha256): an identical resend is recognised, not
stored again. A new closure puts its day back to ``received``, even a posted day: the day's
next run reverses and reposts it (``journal``). A run reads its day's latest closure with the
previous closure of the same establishment (``inbox_closure``), the one behind the entry of
the establishment's latest day before it, for the core's continuity checks. Nothing here
commits: the caller's transaction decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from toporder_sync.core.model import PreviousClosure
from toporder_sync.ledger.clients import client_row
from toporder_sync.ledger.days import NEW_DAY
from toporder_sync.ledger.db import Executor, insert_for
from toporder_sync.ledger.tables import Base, ClosureRow

_CLOSURES: Table = Base.metadata.tables["closures"]
_DAYS: Table = Base.metadata.tables["client_days"]
_ENTRIES: Table = Base.metadata.tables["entries"]


@dataclass(frozen=True, slots=True)
class StoreResult:
    closure_id: int
    created: bool
    sha256: str


@dataclass(frozen=True, slots=True)
class StoredClosure:
    id: int
    raw: bytes
    sha256: str
    received_at: datetime
    establishment_id: str | None = None


@dataclass(frozen=True, slots=True)
class InboxClosure:
    """The latest closure received for a client-day, and the previous closure of its
    establishment (``previous_closure``; None when it names no establishment)."""

    stored: StoredClosure
    previous: PreviousClosure | None


def store_closure(
    session: Session,
    client_id: str,
    *,
    business_date: date,
    raw: bytes,
    closure_number: int | None,
    establishment_id: str | None,
    perpetual_total: Decimal | None,
    now: datetime,
) -> StoreResult:
    """Keep the exact bytes of a closure; an identical resend is recognised, not stored again.

    A new closure puts its day back to ``received`` (even a posted day: the next run reverses
    and reposts it); an identical resend leaves the day as it is.
    """
    client_row(session, client_id)
    sha256 = hashlib.sha256(raw).hexdigest()
    # ON CONFLICT rather than check-then-insert: a concurrent identical insert waits for the
    # first one, then inserts nothing, and the select below finds the committed row.
    insert = insert_for(session, ClosureRow).values(
        client_id=client_id,
        business_date=business_date,
        sha256=sha256,
        raw=bytes(raw),
        received_at=now,
        closure_number=closure_number,
        establishment_id=establishment_id,
        perpetual_total=perpetual_total,
    )
    closure_id = session.scalar(
        insert.on_conflict_do_nothing(index_elements=["client_id", "sha256"]).returning(
            ClosureRow.id
        )
    )
    if closure_id is None:
        existing = session.execute(
            select(ClosureRow.id).where(
                ClosureRow.client_id == client_id, ClosureRow.sha256 == sha256
            )
        ).scalar_one()
        return StoreResult(closure_id=existing, created=False, sha256=sha256)
    reopen = insert_for(session, _DAYS).values(NEW_DAY)
    session.execute(reopen.on_conflict_do_update(
        index_elements=["client_id", "business_date"],
        set_={"state": "received", "updated_at": reopen.excluded.updated_at},
    ), {"client": client_id, "day": business_date, "now": now})
    return StoreResult(closure_id=closure_id, created=True, sha256=sha256)


_LATEST_CLOSURE = (
    select(_CLOSURES.c.id, _CLOSURES.c.raw, _CLOSURES.c.sha256, _CLOSURES.c.received_at,
           _CLOSURES.c.establishment_id)
    .where(_CLOSURES.c.client_id == bindparam("client"),
           _CLOSURES.c.business_date == bindparam("day"))
    .order_by(_CLOSURES.c.received_at.desc(), _CLOSURES.c.id.desc())
    .limit(1)
)


def latest_closure(db: Executor, client_id: str, business_date: date) -> StoredClosure | None:
    row = db.execute(_LATEST_CLOSURE, {"client": client_id, "day": business_date}).first()
    if row is None:
        return None
    return StoredClosure(id=row.id, raw=row.raw, sha256=row.sha256, received_at=row.received_at,
                         establishment_id=row.establishment_id)


_PREVIOUS_CLOSURE = (
    select(_CLOSURES.c.closure_number, _CLOSURES.c.perpetual_total, _DAYS.c.business_date)
    .select_from(_DAYS)
    .join(_ENTRIES, _ENTRIES.c.id == _DAYS.c.entry_id)
    .join(_CLOSURES, _CLOSURES.c.id == _ENTRIES.c.closure_id)
    .where(
        _DAYS.c.client_id == bindparam("client"),
        _DAYS.c.business_date < bindparam("day"),
        _CLOSURES.c.establishment_id == bindparam("establishment"),
    )
    .order_by(_DAYS.c.business_date.desc())
    .limit(1)
)


def inbox_closure(db: Executor, client_id: str, business_date: date) -> InboxClosure | None:
    """The client-day's ``latest_closure`` with its ``previous_closure``; None if none came."""
    stored = latest_closure(db, client_id, business_date)
    if stored is None:
        return None
    previous = None
    if stored.establishment_id is not None:
        previous = previous_closure(db, client_id, stored.establishment_id, business_date)
    return InboxClosure(stored, previous)


def previous_closure(
    db: Executor, client_id: str, establishment_id: str, business_date: date
) -> PreviousClosure | None:
    """The closure behind the current entry of the establishment's latest day before this one.

    None when there is no such day, or when its closure lacks a number or a perpetual total.
    """
    row = db.execute(_PREVIOUS_CLOSURE, {"client": client_id, "day": business_date,
                                         "establishment": establishment_id}).first()
    if row is None or row.closure_number is None or row.perpetual_total is None:
        return None
    return PreviousClosure(
        number=row.closure_number,
        perpetual_total=row.perpetual_total,
        business_date=row.business_date,
    )
