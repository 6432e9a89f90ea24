"""The sales journal: posting a client-day's entry, and reading the entries back.

Promises:

* One posting path: ``post_entry`` takes the client-day (``lock_client_day``), writes the
  entry, reversing the day's current one if it differs, and records the day as posted, all in
  the caller's transaction, which it never commits (``service.post`` wraps it in one).
* An entry is posted only if the core's rules allow it (``core.posting.posting_problem``).
* Posted entries are never updated or deleted: a day whose closure changed gets a reversal
  (``core.posting.reversal_of``, PCG art. 420-5) followed by the new entry. Entry numbers
  follow each other without gaps per client and journal.
* Two processes posting the same client-day serialize on ``lock_client_day``: the second one
  finds the entry the first one wrote and reports it ``unchanged``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Executable, Table, bindparam, func, insert, select
from sqlalchemy.orm import Session, aliased, selectinload

from toporder_sync.core.errors import Finding
from toporder_sync.core.model import Entry, EntryLine, MethodMatch
from toporder_sync.core.posting import posting_problem, reversal_of
from toporder_sync.ledger.clients import client_row, lock_client
from toporder_sync.ledger.days import (
    ALERT_COLUMNS,
    NEW_DAY,
    Alert,
    DayRecord,
    alert_of,
    close_alert,
    record_day,
    record_methods_seen,
)
from toporder_sync.ledger.db import Executor, dialect_insert, dialect_name, for_dialect
from toporder_sync.ledger.tables import Base, ClientDayRow, DayState, EntryKind, EntryRow

_CLOSURES: Table = Base.metadata.tables["closures"]
_DAYS: Table = Base.metadata.tables["client_days"]
_ENTRIES: Table = Base.metadata.tables["entries"]
_LINES: Table = Base.metadata.tables["entry_lines"]


@dataclass(frozen=True, slots=True)
class PostResult:
    status: Literal["posted", "unchanged", "replaced"]
    entry_id: int
    reversal_id: int | None
    number: int
    # The day's open alert that this posting resolved (``post_entry``).
    resolved: Alert | None = None


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: int
    number: int
    kind: EntryKind
    posted_at: datetime
    closure_id: int
    reverses_number: int | None
    entry: Entry


@functools.cache
def _ensure_day_statement(dialect: str) -> Executable:
    # One statement creates the day row if missing, or locks it as it is (a no-op update),
    # and returns it either way.
    ensure = dialect_insert(dialect, _DAYS).values(NEW_DAY)
    return ensure.on_conflict_do_update(
        index_elements=["client_id", "business_date"], set_={"state": _DAYS.c.state}
    ).returning(_DAYS.c.state, _DAYS.c.closure_id, _DAYS.c.entry_id, _DAYS.c.attempts,
                *ALERT_COLUMNS)


def lock_client_day(
    db: Executor, client_id: str, business_date: date, *, now: datetime,
    client_known: bool = False,
) -> DayRecord:
    """Take the client-day for this transaction; call first in a posting transaction.

    On PostgreSQL this locks the client row (entry numbers are per client) and then the day
    row; on SQLite the transaction's BEGIN IMMEDIATE already holds the database's write lock.
    The day row is created in state ``received`` if missing (``now`` is its ``updated_at``).
    An unknown client is refused (RefusedError) but where the caller says the client is
    known (``client_known``: its run has claimed the day): on SQLite its row is then not
    read at all.
    """
    # Always the client row first, then the day row: one lock order, no deadlock.
    if not client_known or dialect_name(db) != "sqlite":
        lock_client(db, client_id)
    row = db.execute(for_dialect(db, _ensure_day_statement),
                     {"client": client_id, "day": business_date, "now": now}).one()
    return DayRecord(client_id, business_date, row.state, row.closure_id, row.entry_id,
                     row.attempts, alert_of(row))


def post_entry(
    db: Executor,
    client_id: str,
    business_date: date,
    *,
    closure_id: int,
    entry: Entry,
    now: datetime,
    matches: Sequence[MethodMatch] = (),
    warnings: Sequence[Finding] = (),
    flow_run_id: str | None = None,
    release: bool = False,
    client_known: bool = False,
) -> PostResult:
    """Make ``entry``, built from closure ``closure_id``, the current entry of the day, and
    record the day as posted: the ledger's whole part of posting a client-day.

    ``unchanged`` if the current entry comes from this closure with these very lines;
    ``replaced`` (a reversal of the current entry, then the new one) if the closure or the
    entry differ — a corrected closure, or the same closure after a mapping was fixed;
    ``posted`` if the day had none. Raises ``ValueError`` for an entry that cannot be posted
    (``_write_day_entries`` checks it before writing any entry).

    In this order: takes the client-day (``lock_client_day``, with ``client_known``),
    remembers the methods the closure showed (``matches``), writes the entries
    (``_write_day_entries``), closes the day's open alert (given back as ``result.resolved``) and
    records the day (``days.record_day``): posted, with its ``warnings``, run ``flow_run_id``
    and one more attempt, the entry as its current one. ``release``: run ``flow_run_id`` lets
    go of its claim of the day in the same statement.
    """
    day = lock_client_day(db, client_id, business_date, now=now, client_known=client_known)
    record_methods_seen(db, client_id, business_date, matches)
    result = _write_day_entries(db, day, closure_id=closure_id, entry=entry, now=now)
    resolved = _resolve(db, day)
    if resolved is not None:
        result = replace(result, resolved=resolved)
    record_day(
        db, client_id, business_date, state="posted", error_category=None, messages=[],
        warnings=warnings, closure_id=closure_id, flow_run_id=flow_run_id, now=now,
        entry_id=result.entry_id, release=flow_run_id if release else None,
    )
    return result


def _resolve(db: Executor, day: DayRecord) -> Alert | None:
    """Close the day's open alert, if it has one: the alert it was."""
    if day.alert is None or day.alert.key is None:
        return None
    close_alert(db, day.client_id, day.business_date)
    return day.alert


def _write_day_entries(
    db: Executor, day: DayRecord, *, closure_id: int, entry: Entry, now: datetime
) -> PostResult:
    """The entries ``post_entry`` writes, for a day this transaction holds (``lock_client_day``).

    The day row itself is left as it is: ``post_entry`` records the entry on it, with the rest
    of the day's outcome (``record_day(..., entry_id=...)``), in one statement.
    """
    client_id, business_date = day.client_id, day.business_date
    problem = posting_problem(entry, business_date)
    if problem is not None:
        raise ValueError(problem)
    current = None if day.entry_id is None else _current(db, day.entry_id)
    if current is not None and current.closure_id == closure_id and current.entry == entry:
        return PostResult("unchanged", current.id, None, current.number)
    reversal_id = None
    if current is not None:
        # Checked before the reversal is written (a first entry checks it as it is written).
        _check_closure(db, client_id, business_date, closure_id)
        reversal_id, _ = _write_entry(
            db,
            client_id,
            reversal_of(current.entry, current.number),
            kind="reversal",
            closure_id=current.closure_id,
            reverses_id=current.id,
            now=now,
        )
    new_id, number = _write_entry(
        db, client_id, entry, kind="entry", closure_id=closure_id, reverses_id=None, now=now
    )
    return PostResult(
        status="posted" if reversal_id is None else "replaced",
        entry_id=new_id,
        reversal_id=reversal_id,
        number=number,
    )


def current_entry(session: Session, client_id: str, business_date: date) -> StoredEntry | None:
    entry_id = session.scalar(
        select(ClientDayRow.entry_id).where(
            ClientDayRow.client_id == client_id, ClientDayRow.business_date == business_date
        )
    )
    if entry_id is None:
        return None
    return _stored_entries(session, EntryRow.id == entry_id)[0]


@dataclass(frozen=True, slots=True)
class LiveDay:
    """A client-day with a live entry: its state, that entry, and the exact bytes of the
    closure the entry was built from."""

    business_date: date
    state: DayState
    entry: StoredEntry
    closure_raw: bytes


def live_days(session: Session, client_id: str) -> list[LiveDay]:
    """Every day of the client that has a live entry (its current one, never reversed), oldest
    first, with the closure behind that entry (three statements)."""
    client_row(session, client_id)
    days = session.execute(
        select(ClientDayRow.business_date, ClientDayRow.state, ClientDayRow.entry_id)
        .where(ClientDayRow.client_id == client_id, ClientDayRow.entry_id.is_not(None))
        .order_by(ClientDayRow.business_date)
    ).all()
    live = select(ClientDayRow.entry_id).where(ClientDayRow.client_id == client_id)
    entries = {stored.id: stored for stored in _stored_entries(session, EntryRow.id.in_(live))}
    raws: dict[int, bytes] = {row.id: row.raw for row in session.execute(
        select(_CLOSURES.c.id, _CLOSURES.c.raw).where(_CLOSURES.c.id.in_(
            select(EntryRow.closure_id).where(EntryRow.id.in_(live)))))}
    return [LiveDay(day.business_date, day.state, entries[day.entry_id],
                    raws[entries[day.entry_id].closure_id])
            for day in days]


def entries_between(
    session: Session, client_id: str, date_from: date, date_to: date
) -> list[StoredEntry]:
    """Every entry and reversal of the business days ``date_from``..``date_to``, by number."""
    client_row(session, client_id)
    return _stored_entries(
        session,
        EntryRow.client_id == client_id,
        EntryRow.business_date.between(date_from, date_to),
    )


def _closure_problem(client_id: str, business_date: date, closure_id: int) -> ValueError:
    return ValueError(f"closure {closure_id} is not a closure of {client_id} for {business_date}")


def _check_closure(db: Executor, client_id: str, business_date: date,
                   closure_id: int) -> None:
    found = db.execute(
        select(_CLOSURES.c.id).where(
            _CLOSURES.c.id == closure_id,
            _CLOSURES.c.client_id == client_id,
            _CLOSURES.c.business_date == business_date,
        )
    ).first()
    if found is None:
        raise _closure_problem(client_id, business_date, closure_id)


@dataclass(frozen=True, slots=True)
class _Current:
    """The day's current entry, as ``_write_day_entries`` compares and reverses it."""

    id: int
    number: int
    closure_id: int
    entry: Entry


def _current(db: Executor, entry_id: int) -> _Current:
    """Entry ``entry_id`` with its lines, in one statement (columns, not ORM objects)."""
    e, line = _ENTRIES, _LINES
    rows = db.execute(
        select(e.c.id, e.c.number, e.c.closure_id, e.c.journal, e.c.journal_label,
               e.c.business_date, e.c.piece_ref, e.c.label, line.c.account,
               line.c.account_label, line.c.label.label("line_label"), line.c.debit,
               line.c.credit)
        .select_from(e.join(line, line.c.entry_id == e.c.id))
        .where(e.c.id == entry_id)
        .order_by(line.c.line_no)
    ).all()
    head = rows[0]
    return _Current(
        id=head.id,
        number=head.number,
        closure_id=head.closure_id,
        entry=_entry(head, (
            EntryLine(row.account, row.account_label, row.line_label, row.debit, row.credit)
            for row in rows)),
    )


_ENTRY_HEADER = ("client_id", "business_date", "journal", "journal_label", "piece_ref", "label",
                 "kind", "closure_id", "reverses_id", "posted_at")


def _insert_entry_statement() -> Executable:
    """``_write_entry``'s INSERT … SELECT, numbering the entry (see there)."""
    e = _ENTRIES
    new = {name: bindparam(f"new_{name}", type_=e.c[name].type) for name in _ENTRY_HEADER}
    number = (
        select(func.coalesce(func.max(e.c.number), 0) + 1)
        .where(e.c.client_id == new["client_id"], e.c.journal == new["journal"])
        .scalar_subquery()
    )
    revision = (
        select(func.count() + 1)
        .select_from(e)
        .where(e.c.client_id == new["client_id"], e.c.business_date == new["business_date"],
               e.c.kind == new["kind"])
        .scalar_subquery()
    )
    source = select(
        *(value.label(name) for name, value in new.items()),
        number.label("number"),
        revision.label("revision"),
    ).where(
        _CLOSURES.c.id == new["closure_id"],
        _CLOSURES.c.client_id == new["client_id"],
        _CLOSURES.c.business_date == new["business_date"],
    )
    return (
        insert(e)
        .from_select([*_ENTRY_HEADER, "number", "revision"], source)
        .returning(e.c.id, e.c.number)
    )


_INSERT_ENTRY = _insert_entry_statement()
_INSERT_LINES = insert(_LINES)


def _write_entry(
    db: Executor,
    client_id: str,
    entry: Entry,
    *,
    kind: EntryKind,
    closure_id: int,
    reverses_id: int | None,
    now: datetime,
) -> tuple[int, int]:
    """Insert the entry and its lines (two statements); its id and number.

    The entry is numbered in its INSERT: the caller holds the client's lock, so nobody else
    numbers in between (gapless). It is inserted only if ``closure_id`` is a closure of the
    client-day (ValueError otherwise).
    """
    header = {
        "client_id": client_id,
        "business_date": entry.date,
        "journal": entry.journal,
        "journal_label": entry.journal_label,
        "piece_ref": entry.piece_ref,
        "label": entry.label,
        "kind": kind,
        "closure_id": closure_id,
        "reverses_id": reverses_id,
        "posted_at": now,
    }
    written = db.execute(
        _INSERT_ENTRY, {f"new_{name}": value for name, value in header.items()}
    ).first()
    if written is None:
        raise _closure_problem(client_id, entry.date, closure_id)
    entry_id, entry_number = written
    db.execute(_INSERT_LINES, [
        {"entry_id": entry_id, "line_no": line_no, "account": line.account,
         "account_label": line.account_label, "label": line.label, "debit": line.debit,
         "credit": line.credit}
        for line_no, line in enumerate(entry.lines, start=1)
    ])
    return entry_id, entry_number


def _stored_entries(session: Session, *conditions: ColumnElement[bool]) -> list[StoredEntry]:
    reversed_entry = aliased(EntryRow)
    rows = session.execute(
        select(EntryRow, reversed_entry.number)
        .outerjoin(reversed_entry, reversed_entry.id == EntryRow.reverses_id)
        .where(*conditions)
        .order_by(EntryRow.journal, EntryRow.number)
        .options(selectinload(EntryRow.lines))
    )
    return [
        StoredEntry(
            id=row.id,
            number=row.number,
            kind=row.kind,
            posted_at=row.posted_at,
            closure_id=row.closure_id,
            reverses_number=reverses_number,
            entry=_entry_of(row),
        )
        for row, reverses_number in rows
    ]


def _entry_of(row: EntryRow) -> Entry:
    return _entry(row, (
        EntryLine(line.account, line.account_label, line.label, line.debit, line.credit)
        for line in row.lines))


def _entry(head: Any, lines: Iterable[EntryLine]) -> Entry:
    """An entry from its header (an ``EntryRow`` or a row of its columns) and its lines."""
    return Entry(journal=head.journal, journal_label=head.journal_label, date=head.business_date,
                 piece_ref=head.piece_ref, label=head.label, lines=tuple(lines))
