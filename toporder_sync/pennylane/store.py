"""The ledger side of the Pennylane push: settings, and one push row per entry.

Promises:

* Nothing here commits: every function runs in the caller's transaction.
* ``enqueue_entries`` writes, for each entry, a ``pending`` push row and its outbox message
  (topic ``pennylane.entry``, payload ``{"entry_id"}``, event id ``pennylane-entry-<id>``) in
  that transaction, oldest entry first; an entry already queued or pushed is left as it is. A
  reversal brings along the entry it reverses when that one was never queued (a client set up
  for Pennylane after its first posting): Pennylane then holds both, never a lone reversal.
* ``mark_pushed`` records the entry's id in Pennylane; it runs in the transaction that marks
  the outbox message sent, so "pushed" and "message sent" are one fact.
* Ledger order: ``ahead_of`` names the entry that must reach Pennylane before a given one,
  the oldest entry of the same client, journal and business day that is queued and not yet
  pushed; ``behind`` the messages waiting for an entry. A day is its own unit: an original,
  its reversal and the replacement are one day's entries, and another day's entries neither
  wait for them nor hold them back.
* The piece number sent to Pennylane (``piece_number``) is unique per client and journal: an
  entry and its reversal share the closure's piece reference, so it carries the entry number
  too; it is how an entry is recognised in Pennylane after an uncertain failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, Table, bindparam, select, update
from sqlalchemy.orm import Session, selectinload

from toporder_sync import outbox
from toporder_sync.core.errors import ConfigurationError, RefusedError
from toporder_sync.core.model import EntryLine
from toporder_sync.ledger.db import Executor, insert_for
from toporder_sync.ledger.journal import PostResult
from toporder_sync.ledger.tables import (
    Base,
    ClientRow,
    EntryKind,
    EntryRow,
    OutboxRow,
    OutboxStatus,
    PennylanePushRow,
    PennylanePushStatus,
    PennylaneSettingsRow,
)
from toporder_sync.pennylane import TOPIC
from toporder_sync.pennylane.tokens import TokenRef

DEFAULT_JOURNAL = "VT"
PushState = Literal["pushed", "pending", "waiting", "dead", "not queued"]


@dataclass(frozen=True, slots=True)
class PennylaneSettings:
    client_id: str
    enabled: bool
    journal_code: str
    token: TokenRef
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EntryToPush:
    """An entry as the push needs it, with where its push stands."""

    entry_id: int
    client_id: str
    number: int
    kind: EntryKind
    business_date: date
    journal: str
    piece_ref: str
    label: str
    lines: tuple[EntryLine, ...]
    reverses_id: int | None
    push_status: PennylanePushStatus | None
    remote_id: str | None
    post_attempts: int

    @property
    def piece_number(self) -> str:
        return piece_number(self.piece_ref, self.journal, self.number)


@dataclass(frozen=True, slots=True)
class Ahead:
    """An entry of the same day that must be in Pennylane first, and where its message is."""

    entry_id: int
    number: int
    kind: EntryKind
    dead: bool
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class PushStatus:
    """One entry of a client and where its push stands (``pennylane status``).

    ``position`` of ``day_entries``: its place among the entries of its day and journal, in
    ledger order (the order Pennylane receives them). ``reverses``: the number of the entry a
    reversal cancels; ``replaces``: the number of the entry a corrected day's new entry takes
    the place of; ``waits_for``: the number of the entry of the day it waits for (``waiting``).
    """

    entry_id: int
    number: int
    kind: EntryKind
    business_date: date
    journal: str
    piece_number: str
    state: PushState
    remote_id: str | None
    pushed_at: datetime | None
    attempts: int
    last_error: str | None
    position: int = 1
    day_entries: int = 1
    reverses: int | None = None
    replaces: int | None = None
    waits_for: int | None = None


def piece_number(piece_ref: str, journal: str, number: int) -> str:
    """``Z412`` posted as entry 17 of ``VT`` → ``Z412-VT17`` (see the module docstring)."""
    return f"{piece_ref}-{journal}{number}"


def event_id(entry_id: int) -> str:
    return f"pennylane-entry-{entry_id}"


# --- settings ----------------------------------------------------------------------------------


def configure(session: Session, client_id: str, *, token: TokenRef,
              journal_code: str = DEFAULT_JOURNAL, enabled: bool = True,
              now: datetime) -> PennylaneSettings:
    """Push CLIENT's entries to Pennylane (or stop, ``enabled=False``), with this token name."""
    code = journal_code.strip()
    if not code or len(code) > 8:
        raise ConfigurationError(f"journal code {journal_code!r}: 1 to 8 characters")
    if session.get(ClientRow, client_id) is None:
        raise RefusedError(f"unknown client {client_id!r}")
    row = session.get(PennylaneSettingsRow, client_id, with_for_update=True)
    if row is None:
        row = PennylaneSettingsRow(client_id=client_id)
        session.add(row)
    row.enabled = enabled
    row.journal_code = code
    row.token_source = token.source
    row.token_name = token.name
    row.updated_at = now
    session.flush()
    return _settings(row)


def get_settings(session: Session, client_id: str) -> PennylaneSettings | None:
    row = session.get(PennylaneSettingsRow, client_id)
    return None if row is None else _settings(row)


# --- queueing ----------------------------------------------------------------------------------


_SETTINGS: Table = Base.metadata.tables["pennylane_settings"]
_ENABLED = select(_SETTINGS.c.enabled).where(_SETTINGS.c.client_id == bindparam("client"))


def enqueue_posted(db: Executor, client_id: str, result: PostResult, *,
                   now: datetime) -> list[int]:
    """Queue what a posting wrote (the reversal, then the entry) if CLIENT pushes to Pennylane."""
    if result.status == "unchanged":
        return []
    # Only whether it is enabled, in one statement built once: this runs for every posting.
    if not db.execute(_ENABLED, {"client": client_id}).scalar():
        return []
    written = [result.entry_id] if result.reversal_id is None else [result.reversal_id,
                                                                     result.entry_id]
    return enqueue_entries(db, client_id, written, now=now)


def enqueue_entries(db: Executor, client_id: str, entry_ids: Iterable[int], *,
                    now: datetime) -> list[int]:
    """Queue these entries of CLIENT (see the module docstring); the ids newly queued."""
    wanted = set(entry_ids)
    rows = {row.id: row for row in db.execute(
        select(EntryRow.id, EntryRow.client_id, EntryRow.business_date, EntryRow.reverses_id)
        .where(EntryRow.id.in_(wanted)))}
    if set(rows) != wanted or any(row.client_id != client_id for row in rows.values()):
        raise ValueError(f"entries {sorted(wanted)} are not all entries of {client_id}")
    originals = {row.reverses_id for row in rows.values() if row.reverses_id is not None}
    rows.update({row.id: row for row in db.execute(
        select(EntryRow.id, EntryRow.client_id, EntryRow.business_date, EntryRow.reverses_id)
        .where(EntryRow.id.in_(originals - set(rows))))})
    queued = set(db.scalars(
        select(PennylanePushRow.entry_id).where(PennylanePushRow.entry_id.in_(rows))))
    added = []
    # Oldest first: the outbox delivers in that order, so an entry goes before its reversal.
    for entry_id in sorted(set(rows) - queued):
        row = rows[entry_id]
        event = outbox.enqueue(db, topic=TOPIC, client_id=client_id,
                               business_date=row.business_date, payload={"entry_id": entry_id},
                               now=now, event_id=event_id(entry_id))
        inserted = db.execute(
            insert_for(db, PennylanePushRow)
            .values(entry_id=entry_id, client_id=client_id, event_id=event, status="pending",
                    post_attempts=0, created_at=now)
            .on_conflict_do_nothing(index_elements=["entry_id"])
            .returning(PennylanePushRow.id)
        ).first()
        if inserted is not None:
            added.append(entry_id)
    return added


def entries_to_queue(session: Session, client_id: str, date_from: date,
                     date_to: date) -> list[int]:
    """CLIENT's entries of those business days that were never queued for Pennylane."""
    return list(session.scalars(
        select(EntryRow.id)
        .outerjoin(PennylanePushRow, PennylanePushRow.entry_id == EntryRow.id)
        .where(EntryRow.client_id == client_id,
               EntryRow.business_date.between(date_from, date_to),
               PennylanePushRow.id.is_(None))
        .order_by(EntryRow.id)))


def unpushed(session: Session, client_id: str, date_from: date, date_to: date, *,
             message: OutboxStatus) -> list[str]:
    """Event ids of CLIENT's pushes of those days not in Pennylane whose outbox message is in
    that status: ``pending`` (still on their way) or ``dead`` (given up on), oldest entry
    first."""
    return list(session.scalars(
        select(OutboxRow.event_id)
        .join(PennylanePushRow, PennylanePushRow.event_id == OutboxRow.event_id)
        .join(EntryRow, EntryRow.id == PennylanePushRow.entry_id)
        .where(PennylanePushRow.client_id == client_id,
               PennylanePushRow.status == "pending", OutboxRow.status == message,
               EntryRow.business_date.between(date_from, date_to))
        .order_by(EntryRow.id)))


# --- pushing -----------------------------------------------------------------------------------


def load_entry(session: Session, entry_id: int) -> EntryToPush:
    row = session.scalars(select(EntryRow).where(EntryRow.id == entry_id)
                          .options(selectinload(EntryRow.lines))).one_or_none()
    if row is None:
        raise ValueError(f"no entry {entry_id} in the ledger")
    push = session.scalars(select(PennylanePushRow)
                           .where(PennylanePushRow.entry_id == entry_id)).one_or_none()
    return EntryToPush(
        entry_id=row.id, client_id=row.client_id, number=row.number, kind=row.kind,
        business_date=row.business_date, journal=row.journal, piece_ref=row.piece_ref,
        label=row.label,
        lines=tuple(EntryLine(line.account, line.account_label, line.label, line.debit,
                              line.credit) for line in row.lines),
        reverses_id=row.reverses_id,
        push_status=None if push is None else push.status,
        remote_id=None if push is None else push.remote_id,
        post_attempts=0 if push is None else push.post_attempts,
    )


def count_post(session: Session, entry_id: int, *, seen: int) -> bool:
    """Count one more POST of the entry, if nobody counted one since we read ``seen``.

    Committed BEFORE the POST is sent: after a crash or an uncertain failure, the next push
    finds it above zero and looks the entry up in Pennylane first. False: another push of the
    entry is under way (or was just made); the caller must not post.
    """
    result = session.execute(
        update(PennylanePushRow)
        .where(PennylanePushRow.entry_id == entry_id, PennylanePushRow.status == "pending",
               PennylanePushRow.post_attempts == seen)
        .values(post_attempts=seen + 1)
        .execution_options(synchronize_session=False))
    return cast("CursorResult[Any]", result).rowcount == 1


def uncount_post(session: Session, entry_id: int, *, counted: int) -> None:
    """Take back the POST counted as number ``counted``: Pennylane certainly did not create
    the entry (it refused it, or the request never left), so the next push need not look it up
    first. Nothing changes if another push counted one since."""
    session.execute(
        update(PennylanePushRow)
        .where(PennylanePushRow.entry_id == entry_id, PennylanePushRow.status == "pending",
               PennylanePushRow.post_attempts == counted)
        .values(post_attempts=counted - 1)
        .execution_options(synchronize_session=False))


def ahead_of(session: Session, entry: EntryToPush) -> Ahead | None:
    """The oldest entry of ENTRY's client, journal and day queued before it and not pushed."""
    row = session.execute(
        select(EntryRow.id, EntryRow.number, EntryRow.kind, OutboxRow.status,
               OutboxRow.next_attempt_at)
        .join(PennylanePushRow, PennylanePushRow.entry_id == EntryRow.id)
        .outerjoin(OutboxRow, OutboxRow.event_id == PennylanePushRow.event_id)
        .where(EntryRow.client_id == entry.client_id, EntryRow.journal == entry.journal,
               EntryRow.business_date == entry.business_date, EntryRow.id < entry.entry_id,
               PennylanePushRow.status == "pending")
        .order_by(EntryRow.id)
        .limit(1)).first()
    if row is None:
        return None
    entry_id, number, kind, message_status, next_attempt_at = row
    return Ahead(entry_id, number, kind, dead=message_status == "dead",
                 next_attempt_at=next_attempt_at)


def behind(session: Session, entry_id: int) -> list[str]:
    """Event ids of the pending pushes of the same client, journal and day queued after
    ENTRY: what may go once it is in Pennylane."""
    entry = session.get(EntryRow, entry_id)
    if entry is None:
        return []
    return list(session.scalars(
        select(PennylanePushRow.event_id)
        .join(EntryRow, EntryRow.id == PennylanePushRow.entry_id)
        .where(EntryRow.client_id == entry.client_id, EntryRow.journal == entry.journal,
               EntryRow.business_date == entry.business_date, EntryRow.id > entry_id,
               PennylanePushRow.status == "pending", PennylanePushRow.event_id.is_not(None))
        .order_by(EntryRow.id)))


def mark_pushed(session: Session, entry_id: int, remote_id: str, *, now: datetime) -> None:
    """Record the entry's id in Pennylane (a second mark of a pushed entry changes nothing)."""
    session.execute(
        update(PennylanePushRow)
        .where(PennylanePushRow.entry_id == entry_id, PennylanePushRow.status == "pending")
        .values(status="pushed", remote_id=remote_id, pushed_at=now)
        .execution_options(synchronize_session=False))


# --- status ------------------------------------------------------------------------------------


def push_statuses(session: Session, client_id: str, *, date_from: date | None = None,
                  date_to: date | None = None) -> list[PushStatus]:
    """Every entry of CLIENT (optionally of those days), day by day and in ledger order within
    a day, with its push and its place among the day's entries."""
    if session.get(ClientRow, client_id) is None:
        raise RefusedError(f"unknown client {client_id!r}")
    query = (
        select(EntryRow.id, EntryRow.number, EntryRow.kind, EntryRow.revision,
               EntryRow.business_date, EntryRow.journal, EntryRow.piece_ref,
               EntryRow.reverses_id, PennylanePushRow.status, PennylanePushRow.remote_id,
               PennylanePushRow.pushed_at, OutboxRow.status, OutboxRow.attempts,
               OutboxRow.last_error)
        .outerjoin(PennylanePushRow, PennylanePushRow.entry_id == EntryRow.id)
        .outerjoin(OutboxRow, OutboxRow.event_id == PennylanePushRow.event_id)
        .where(EntryRow.client_id == client_id)
        .order_by(EntryRow.business_date, EntryRow.journal, EntryRow.number)
    )
    if date_from is not None:
        query = query.where(EntryRow.business_date >= date_from)
    if date_to is not None:
        query = query.where(EntryRow.business_date <= date_to)
    rows = session.execute(query).all()
    days: dict[tuple[date, str], list[Any]] = {}
    for row in rows:
        days.setdefault((row.business_date, row.journal), []).append(row)
    statuses = []
    for day in days.values():
        numbers = {row.id: row.number for row in day}
        entries = {row.revision: row.number for row in day if row.kind == "entry"}
        ahead: int | None = None  # the first entry of the day queued and not yet pushed
        for position, row in enumerate(day, start=1):
            (entry_id, number, kind, revision, business_date, journal, piece_ref, reverses_id,
             push_status, remote_id, pushed_at, message_status, attempts, last_error) = row
            state = _state(push_status, message_status)
            waits_for = ahead if state == "pending" else None
            if push_status == "pending" and ahead is None:
                ahead = number
            statuses.append(PushStatus(
                entry_id=entry_id, number=number, kind=kind, business_date=business_date,
                journal=journal, piece_number=piece_number(piece_ref, journal, number),
                state="waiting" if waits_for is not None else state, remote_id=remote_id,
                pushed_at=pushed_at, attempts=attempts or 0,
                last_error=None if push_status == "pushed" else last_error,
                position=position, day_entries=len(day),
                reverses=None if reverses_id is None else numbers.get(reverses_id),
                replaces=entries.get(revision - 1) if kind == "entry" else None,
                waits_for=waits_for))
    return statuses


def _state(push_status: str | None, message_status: str | None) -> PushState:
    if push_status == "pushed":
        return "pushed"
    if push_status is None:
        return "not queued"
    return "dead" if message_status == "dead" else "pending"


def _settings(row: PennylaneSettingsRow) -> PennylaneSettings:
    return PennylaneSettings(client_id=row.client_id, enabled=row.enabled,
                             journal_code=row.journal_code,
                             token=TokenRef(row.token_source, row.token_name),
                             updated_at=row.updated_at)
