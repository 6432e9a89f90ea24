"""The client-days: each day's state, its outcome and alert, the methods its closures showed.

A client-day row records the outcome of every run of the day (``record_day``: its state, the
findings, one more attempt), the entry that is the day's current one (written by ``journal``),
the alert the day raised last (open until the day is settled) and which run holds the day
(``claims``). ``day_statuses`` and ``fleet_status`` read them back for a client or for the
fleet; ``record_methods_seen`` remembers each payment method seen and where it went. Nothing
here commits: the caller's transaction decides.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Literal

from sqlalchemy import Executable, Table, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from toporder_sync.core.errors import Category, Finding
from toporder_sync.core.model import MatchRule, MethodMatch, Territory
from toporder_sync.ledger.clients import client_row
from toporder_sync.ledger.db import Executor, dialect_insert, for_dialect, insert_for
from toporder_sync.ledger.tables import (
    DAY_STATES,
    ERROR_CATEGORIES,
    Base,
    ClientDayRow,
    ClientRow,
    DayState,
    EntryRow,
    MethodSeenRow,
)

_DAYS: Table = Base.metadata.tables["client_days"]
_METHODS_SEEN: Table = Base.metadata.tables["methods_seen"]

# The values of a client-day row created in state ``received``, with bound parameters
# ``client``, ``day`` and ``now`` (``inbox.store_closure``, ``journal.lock_client_day``,
# ``claims.claim_day``).
NEW_DAY: Mapping[str, Any] = MappingProxyType({
    "client_id": bindparam("client"),
    "business_date": bindparam("day"),
    "state": "received",
    "messages": [],
    "warnings": [],
    "attempts": 0,
    "updated_at": bindparam("now"),
})


@dataclass(frozen=True, slots=True)
class DayRecord:
    """A client-day as a posting transaction took it (``journal.lock_client_day``)."""

    client_id: str
    business_date: date
    state: DayState
    closure_id: int | None
    entry_id: int | None
    attempts: int
    alert: Alert | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """The alert a client-day raised last (``open_alert``): open while ``key`` is set.

    ``outcome``: the ``toporder_sync.outcome.Outcome`` name it was raised as; ``run_id``: the
    run that raised it (a Prefect flow run id).
    """

    key: str | None
    outcome: str
    run_id: str | None


@dataclass(frozen=True, slots=True)
class MethodSeen:
    name: str
    first_seen: date
    last_seen: date
    account: str
    rule: MatchRule


@dataclass(frozen=True, slots=True)
class DayStatus:
    business_date: date
    state: DayState
    error_category: Category | None
    messages: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    entry_number: int | None
    piece_ref: str | None
    closure_id: int | None
    flow_run_id: str | None
    attempts: int
    updated_at: datetime
    alert: Alert | None = None


@dataclass(frozen=True, slots=True)
class FleetDay:
    """One client's business day, as seen across the fleet (``not_run``: no day row yet)."""

    client_id: str
    territory: Territory
    state: DayState | Literal["not_run"]
    error_category: Category | None
    messages: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    attempts: int = 0
    flow_run_id: str | None = None
    alert: Alert | None = None


@functools.cache
def _methods_seen_statement(dialect: str) -> Executable:
    # SQLite's two-argument min()/max() are PostgreSQL's least()/greatest().
    postgres = dialect == "postgresql"
    earliest, latest = (func.least, func.greatest) if postgres else (func.min, func.max)
    insert = dialect_insert(dialect, _METHODS_SEEN)
    seen = _METHODS_SEEN.c
    return insert.on_conflict_do_update(
        index_elements=["client_id", "name"],
        set_={
            "first_seen": earliest(seen.first_seen, insert.excluded.first_seen),
            "last_seen": latest(seen.last_seen, insert.excluded.last_seen),
            "account": insert.excluded.account,
            "rule": insert.excluded.rule,
        },
    )


def record_methods_seen(
    db: Executor, client_id: str, business_date: date, matches: Sequence[MethodMatch]
) -> None:
    """Remember each method of a closure: first and last day seen, where it goes and why.

    Call it after ``lock_client`` or ``lock_client_day``, which checked the client (and make
    the client's writers take turns on these rows).
    """
    if not matches:
        return
    # One statement executed for all the methods at once.
    db.execute(for_dialect(db, _methods_seen_statement), [
        {"client_id": client_id, "name": match.method, "first_seen": business_date,
         "last_seen": business_date, "account": match.account, "rule": match.rule.value}
        for match in matches
    ])


def list_methods(session: Session, client_id: str) -> list[MethodSeen]:
    client_row(session, client_id)
    # Columns, not ORM objects: the upsert of record_methods_seen bypasses the identity map.
    rows = session.execute(
        select(
            MethodSeenRow.name,
            MethodSeenRow.first_seen,
            MethodSeenRow.last_seen,
            MethodSeenRow.account,
            MethodSeenRow.rule,
        )
        .where(MethodSeenRow.client_id == client_id)
        .order_by(MethodSeenRow.name)
    )
    return [
        MethodSeen(row.name, row.first_seen, row.last_seen, row.account, MatchRule(row.rule))
        for row in rows
    ]


# The columns ``record_day`` sets, bound as ``recorded_<column>``.
_RECORDED = ("state", "error_category", "messages", "warnings", "closure_id", "flow_run_id",
             "updated_at")


def _released_if_held_by(run: Any) -> dict[str, Any]:
    """SET values letting go of the day's claim if ``run`` holds it, keeping it otherwise."""
    held = _DAYS.c.claimed_by == run
    return {"claimed_by": case((held, None), else_=_DAYS.c.claimed_by),
            "claimed_until": case((held, None), else_=_DAYS.c.claimed_until)}


@functools.cache
def _record_day_statement(with_entry: bool, releasing: bool) -> Executable:
    """``record_day``'s UPDATE: with or without a new current entry, a release of the claim."""
    recorded = (*_RECORDED, "entry_id") if with_entry else _RECORDED
    values: dict[str, Any] = {name: bindparam(f"recorded_{name}", type_=_DAYS.c[name].type)
                              for name in recorded}
    if releasing:
        values.update(_released_if_held_by(bindparam("releasing")))
    return (
        update(_DAYS)
        .where(_DAYS.c.client_id == bindparam("client"),
               _DAYS.c.business_date == bindparam("day"))
        .values(**values, attempts=_DAYS.c.attempts + 1)
        .returning(_DAYS.c.attempts)
    )


def record_day(
    db: Executor,
    client_id: str,
    business_date: date,
    *,
    state: DayState,
    error_category: Category | None,
    messages: Sequence[Finding],
    warnings: Sequence[Finding],
    closure_id: int | None,
    flow_run_id: str | None,
    now: datetime,
    entry_id: int | None = None,
    release: str | None = None,
) -> int:
    """Record the outcome of one run of a client-day (one more attempt); its attempts so far.

    ``entry_id`` (when given) becomes the day's current entry (``journal.post_entry``);
    ``release`` lets go of the day's claim if that run holds it (``claims.release_day``), in
    the same statement. The day row is created if missing, and locked until the transaction
    ends.
    """
    if state not in DAY_STATES:
        raise ValueError(f"day state {state!r} is not one of {', '.join(DAY_STATES)}")
    if error_category is not None and error_category.value not in ERROR_CATEGORIES:
        raise ValueError(
            f"a day's error category is one of {', '.join(ERROR_CATEGORIES)}, not {error_category}"
        )
    fields: dict[str, Any] = {
        "state": state,
        "error_category": None if error_category is None else error_category.value,
        "messages": [finding.as_dict() for finding in messages],
        "warnings": [finding.as_dict() for finding in warnings],
        "closure_id": closure_id,
        "flow_run_id": flow_run_id,
        "updated_at": now,
    }
    if entry_id is not None:
        fields["entry_id"] = entry_id
    # The day row almost always exists (its run's claim created it): one UPDATE.
    parameters = {f"recorded_{name}": value for name, value in fields.items()}
    parameters.update(client=client_id, day=business_date)
    if release is not None:
        parameters["releasing"] = release
    updated = db.execute(
        _record_day_statement(entry_id is not None, release is not None), parameters
    ).first()
    if updated is not None:
        attempts: int = updated.attempts
        return attempts
    released = {} if release is None else _released_if_held_by(release)
    # Else created, first attempt; a concurrent creation of the row becomes the update.
    upsert = insert_for(db, _DAYS).values(
        {**fields, "client_id": client_id, "business_date": business_date, "attempts": 1}
    )
    attempts = db.execute(
        upsert.on_conflict_do_update(
            index_elements=["client_id", "business_date"],
            set_={**{name: upsert.excluded[name] for name in fields}, **released,
                  "attempts": _DAYS.c.attempts + 1},
        ).returning(_DAYS.c.attempts)
    ).scalar_one()
    return attempts


def day_statuses(
    session: Session,
    client_id: str,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[DayStatus]:
    """The recorded days of a client, oldest first, optionally within a range of dates."""
    client_row(session, client_id)
    query = (
        select(ClientDayRow, EntryRow.number, EntryRow.piece_ref)
        .outerjoin(EntryRow, EntryRow.id == ClientDayRow.entry_id)
        .where(ClientDayRow.client_id == client_id)
        .order_by(ClientDayRow.business_date)
    )
    if date_from is not None:
        query = query.where(ClientDayRow.business_date >= date_from)
    if date_to is not None:
        query = query.where(ClientDayRow.business_date <= date_to)
    return [
        DayStatus(
            business_date=day.business_date,
            state=day.state,
            error_category=None if day.error_category is None else Category(day.error_category),
            messages=tuple(_finding(item) for item in day.messages),
            warnings=tuple(_finding(item) for item in day.warnings),
            entry_number=number,
            piece_ref=piece_ref,
            closure_id=day.closure_id,
            flow_run_id=day.flow_run_id,
            attempts=day.attempts,
            updated_at=day.updated_at,
            alert=alert_of(day),
        )
        for day, number, piece_ref in session.execute(query)
    ]


def fleet_status(session: Session, business_date: date) -> list[FleetDay]:
    """Every active client activated on or before ``business_date``, with that day's state."""
    rows = session.execute(
        select(ClientRow.client_id, ClientRow.territory, ClientDayRow)
        .outerjoin(
            ClientDayRow,
            (ClientDayRow.client_id == ClientRow.client_id)
            & (ClientDayRow.business_date == business_date),
        )
        .where(ClientRow.active, ClientRow.activated_on <= business_date)
        .order_by(ClientRow.client_id)
    )
    return [
        FleetDay(client_id, Territory(territory), "not_run", None, (), ())
        if day is None
        else FleetDay(
            client_id=client_id,
            territory=Territory(territory),
            state=day.state,
            error_category=None if day.error_category is None else Category(day.error_category),
            messages=tuple(_finding(item) for item in day.messages),
            warnings=tuple(_finding(item) for item in day.warnings),
            attempts=day.attempts,
            flow_run_id=day.flow_run_id,
            alert=alert_of(day),
        )
        for client_id, territory, day in rows
    ]


# --- alerts -----------------------------------------------------------------------------

# The alert columns of a day row, as ``alert_of`` reads them.
ALERT_COLUMNS = (_DAYS.c.alert_key, _DAYS.c.alert_outcome, _DAYS.c.alert_run_id)
_DAY_ALERT = select(*ALERT_COLUMNS).where(_DAYS.c.client_id == bindparam("client"),
                                           _DAYS.c.business_date == bindparam("day"))
_SET_ALERT = (
    update(_DAYS)
    .where(_DAYS.c.client_id == bindparam("client"), _DAYS.c.business_date == bindparam("day"))
    .values(alert_key=bindparam("key"), alert_outcome=bindparam("outcome"),
            alert_run_id=bindparam("run"))
)
_CLOSE_ALERT = (
    update(_DAYS)
    .where(_DAYS.c.client_id == bindparam("client"), _DAYS.c.business_date == bindparam("day"))
    .values(alert_key=None)
)


def alert_of(row: Any) -> Alert | None:
    """The ``Alert`` of a day row (or of a row of ``ALERT_COLUMNS``); None if it never had one."""
    if row.alert_outcome is None:
        return None
    return Alert(row.alert_key, row.alert_outcome, row.alert_run_id)


def day_alert(db: Executor, client_id: str, business_date: date) -> Alert | None:
    """The alert the day raised last, open or resolved; None if it never raised one.

    Read under the client's writers' lock (``lock_client``), it is the alert the day holds
    until this transaction ends."""
    row = db.execute(_DAY_ALERT, {"client": client_id, "day": business_date}).first()
    return None if row is None else alert_of(row)


def open_alert(db: Executor, client_id: str, business_date: date, *, key: str, outcome: str,
               run_id: str | None) -> None:
    """Record the day's new open alert (the day row exists: its run recorded it)."""
    db.execute(_SET_ALERT, {"client": client_id, "day": business_date, "key": key,
                            "outcome": outcome, "run": run_id})


def close_alert(db: Executor, client_id: str, business_date: date) -> None:
    """The day's alert is resolved; which one it was, and its run, are kept."""
    db.execute(_CLOSE_ALERT, {"client": client_id, "day": business_date})


def relink_run(db: Executor, client_id: str, business_date: date, *, from_run: str,
               to_run: str) -> None:
    """Where the day names run ``from_run`` (its last run, the run of its alert), name
    ``to_run`` instead."""
    where = (_DAYS.c.client_id == client_id, _DAYS.c.business_date == business_date)
    db.execute(update(_DAYS).where(*where, _DAYS.c.flow_run_id == from_run)
               .values(flow_run_id=to_run))
    db.execute(update(_DAYS).where(*where, _DAYS.c.alert_run_id == from_run)
               .values(alert_run_id=to_run))


def _finding(item: Mapping[str, Any]) -> Finding:
    return Finding(Category(item["category"]), item["rule"], item["field"], item["message"])
