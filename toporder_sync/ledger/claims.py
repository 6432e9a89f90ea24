"""Claims: a client-day is held by at most one flow run at a time.

The claim is a conditional upsert of the day row, decided by the database (a row lock on
PostgreSQL, the write lock of BEGIN IMMEDIATE on SQLite), with a lease so that a crashed run
lets go: a run whose lease has run out can be taken over. A run renews its lease while it works
and releases the day when done (or ``days.record_day`` releases it with the day's outcome).
Nothing here commits: the caller's transaction decides.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, Table, bindparam, or_, select, update

from toporder_sync.ledger.clients import require_client
from toporder_sync.ledger.days import NEW_DAY
from toporder_sync.ledger.db import Executor, dialect_insert, for_dialect
from toporder_sync.ledger.tables import Base

_DAYS: Table = Base.metadata.tables["client_days"]


def claim_day(
    db: Executor,
    client_id: str,
    business_date: date,
    *,
    run_id: str,
    now: datetime,
    lease: timedelta,
    client_checked: bool = False,
) -> bool:
    """Hold the client-day for flow run ``run_id`` until ``now + lease``; False if another holds it.

    The claim is taken when the day is unclaimed, its lease has run out (a run that crashed), or
    ``run_id`` already holds it (which extends the lease). The day row is created in state
    ``received`` if missing. One conditional upsert decides: on PostgreSQL ON CONFLICT DO UPDATE
    locks the row and evaluates the condition on its latest committed version (a concurrent
    claim waits for this row's lock); on SQLite BEGIN IMMEDIATE has already serialized the
    transactions. Commit promptly: the row stays locked until the caller's transaction ends.
    ``client_checked``: this transaction has already read the client row (RefusedError
    otherwise for an unknown client).
    """
    if not run_id:
        raise ValueError("run_id must not be empty")
    if lease <= timedelta(0):
        raise ValueError(f"a lease must be positive, not {lease}")
    if not client_checked:
        require_client(db, client_id)
    claimed = db.execute(
        for_dialect(db, _claim_statement),
        {"client": client_id, "day": business_date, "now": now, "run": run_id,
         "until": now + lease},
    ).first()
    return claimed is not None


@functools.cache
def _claim_statement(dialect: str) -> Executable:
    claim = dialect_insert(dialect, _DAYS).values(
        {**NEW_DAY, "claimed_by": bindparam("run"), "claimed_until": bindparam("until")}
    )
    return claim.on_conflict_do_update(
        index_elements=["client_id", "business_date"],
        set_={"claimed_by": claim.excluded.claimed_by,
              "claimed_until": claim.excluded.claimed_until},
        where=or_(
            _DAYS.c.claimed_by.is_(None),
            _DAYS.c.claimed_until.is_(None),
            _DAYS.c.claimed_until < bindparam("now"),
            _DAYS.c.claimed_by == bindparam("run"),
        ),
    ).returning(_DAYS.c.client_id)


_HELD_BY_RUN = (
    _DAYS.c.client_id == bindparam("client"),
    _DAYS.c.business_date == bindparam("day"),
    _DAYS.c.claimed_by == bindparam("run"),
)
_RELEASE_DAY = update(_DAYS).where(*_HELD_BY_RUN).values(claimed_by=None, claimed_until=None)
_RELEASE_LAPSED_DAY = _RELEASE_DAY.where(or_(_DAYS.c.claimed_until.is_(None),
                                             _DAYS.c.claimed_until < bindparam("lapsed_by")))
_RENEW_CLAIM = update(_DAYS).where(*_HELD_BY_RUN).values(claimed_until=bindparam("until"))


def release_day(db: Executor, client_id: str, business_date: date, *, run_id: str,
                lapsed_by: datetime | None = None) -> bool:
    """Let go of the client-day if ``run_id`` holds it; True if it did (a no-op otherwise).

    ``lapsed_by``: only if the lease has run out by then (a renewal meanwhile keeps the claim).
    """
    parameters: dict[str, Any] = {"client": client_id, "day": business_date, "run": run_id}
    if lapsed_by is None:
        result = db.execute(_RELEASE_DAY, parameters)
    else:
        result = db.execute(_RELEASE_LAPSED_DAY, {**parameters, "lapsed_by": lapsed_by})
    return cast("CursorResult[Any]", result).rowcount == 1


def renew_claim(db: Executor, client_id: str, business_date: date, *, run_id: str,
                now: datetime, lease: timedelta) -> bool:
    """Extend ``run_id``'s claim of the client-day to ``now + lease``; False, changing nothing,
    if the run no longer holds it (released, or taken over after its lease ran out).

    Unlike ``claim_day`` it never takes a day: a renewal arriving after the run's last
    transaction let go of the day leaves it free.
    """
    if lease <= timedelta(0):
        raise ValueError(f"a lease must be positive, not {lease}")
    result = db.execute(_RENEW_CLAIM, {"client": client_id, "day": business_date,
                                       "run": run_id, "until": now + lease})
    return cast("CursorResult[Any]", result).rowcount == 1


@dataclass(frozen=True, slots=True)
class Claim:
    """Run ``run_id`` holds the client-day until ``until`` (then its lease has run out)."""

    client_id: str
    business_date: date
    run_id: str
    until: datetime | None

    def lapsed(self, now: datetime) -> bool:
        return self.until is None or self.until < now


_CLAIM_COLUMNS = (_DAYS.c.client_id, _DAYS.c.business_date, _DAYS.c.claimed_by,
                  _DAYS.c.claimed_until)
_CLAIMED = _DAYS.c.claimed_by.is_not(None)


def day_claim(db: Executor, client_id: str, business_date: date) -> Claim | None:
    """Who holds the client-day, if anyone (RefusedError for an unknown client)."""
    require_client(db, client_id)
    row = db.execute(select(*_CLAIM_COLUMNS).where(
        _DAYS.c.client_id == client_id, _DAYS.c.business_date == business_date, _CLAIMED,
    )).first()
    return None if row is None else Claim(*row)


def claims(db: Executor, client_id: str | None = None) -> list[Claim]:
    """The claimed client-days (of one client, RefusedError if unknown), by client and day;
    lapsed claims included."""
    query = select(*_CLAIM_COLUMNS).where(_CLAIMED)
    if client_id is not None:
        require_client(db, client_id)
        query = query.where(_DAYS.c.client_id == client_id)
    rows = db.execute(query.order_by(_DAYS.c.client_id, _DAYS.c.business_date))
    return [Claim(*row) for row in rows]
