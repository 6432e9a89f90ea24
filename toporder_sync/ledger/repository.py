"""Every read and write of the ledger, inside a transaction the caller owns.

Promises:

* Nothing here commits: the caller's transaction (``db.session_scope``) decides, so a
  client-day is stored, posted and reported completely or not at all.
* Callers get frozen dataclasses, never ORM rows; time is always passed in (``now``).
* A closure is stored once per content (sha256) and posted at most once as an entry.
* Posted entries are never updated or deleted: a day whose closure changed gets a reversal
  (every line on the other side, PCG art. 420-5) followed by the new entry. Entry numbers
  follow each other without gaps per client and journal.
* Two processes posting the same client-day serialize on ``lock_client_day``: the second one
  finds the entry the first one wrote and reports it ``unchanged``.
* A client-day is held by at most one flow run at a time (``claim_day``): the claim is a
  conditional UPDATE of the day row, decided by the database (a row lock on PostgreSQL, the
  write lock of BEGIN IMMEDIATE on SQLite), with a lease so that a crashed run lets go.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal, TypeVar, cast
from zoneinfo import available_timezones

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Executable,
    Table,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased, selectinload

from toporder_sync.core.accounts import ACCOUNT_KEYS, account_problem
from toporder_sync.core.errors import Category, ConfigurationError, Finding, RefusedError
from toporder_sync.core.model import (
    ClientSettings,
    Entry,
    EntryLine,
    MatchRule,
    MethodMatch,
    PreviousClosure,
    Territory,
)
from toporder_sync.ledger.db import Executor, dialect_insert, dialect_name, insert_for
from toporder_sync.ledger.tables import (
    DAY_STATES,
    ERROR_CATEGORIES,
    Base,
    ClientDayRow,
    ClientRow,
    ClosureRow,
    ClosureSourceKind,
    DayState,
    EntryKind,
    EntryRow,
    MappingRow,
    MethodSeenRow,
)

# The tables, for Core statements that need no ORM object (and load none).
_CLIENTS: Table = Base.metadata.tables["clients"]
_CLOSURES: Table = Base.metadata.tables["closures"]
_DAYS: Table = Base.metadata.tables["client_days"]
_ENTRIES: Table = Base.metadata.tables["entries"]
_LINES: Table = Base.metadata.tables["entry_lines"]
_MAPPINGS: Table = Base.metadata.tables["mappings"]
_METHODS_SEEN: Table = Base.metadata.tables["methods_seen"]

# The statements of a client-day are built once, with bound parameters, and only executed per
# call: building a statement (an ON CONFLICT's ``excluded`` alone copies the table) cost more
# CPU than running it. Those that differ by database are built once per dialect name
# (``_for_dialect``). Parameters are never named after a column of the table written: SQLAlchemy
# reserves those names for the VALUES or SET clause.

_T = TypeVar("_T")

CLIENT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
INTEGRATION_ID_PREFIX = "tpo_"
# A client's schedule unless told otherwise (``activate_client``, ``clients import``).
DEFAULT_TIMEZONE = "Europe/Paris"
DEFAULT_RUN_HOUR = 6
DEFAULT_DEADLINE_HOUR = 12


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    name: str
    integration_id: str
    activated_on: date
    territory: Territory
    timezone: str
    run_hour: int
    deadline_hour: int
    active: bool
    account_overrides: Mapping[str, str]
    created_at: datetime


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


@dataclass(frozen=True, slots=True)
class DayRecord:
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
class PostResult:
    status: Literal["posted", "unchanged", "replaced"]
    entry_id: int
    reversal_id: int | None
    number: int
    # The day's open alert that this posting resolved (``service.post``).
    resolved: Alert | None = None


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


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: int
    number: int
    kind: EntryKind
    posted_at: datetime
    closure_id: int
    reverses_number: int | None
    entry: Entry


# --- clients ----------------------------------------------------------------------------


def activate_client(
    session: Session,
    client_id: str,
    *,
    name: str,
    activated_on: date,
    territory: Territory | str = Territory.METROPOLE,
    timezone: str = DEFAULT_TIMEZONE,
    run_hour: int = DEFAULT_RUN_HOUR,
    deadline_hour: int = DEFAULT_DEADLINE_HOUR,
    now: datetime,
) -> ClientRecord:
    """Register a client and issue its unguessable integration id."""
    if not CLIENT_ID_PATTERN.match(client_id):
        raise ConfigurationError(
            f"client_id {client_id!r} is not a slug: 1 to 63 lowercase letters, digits or '-', "
            "not starting with '-'"
        )
    if not name.strip():
        raise ConfigurationError("name must not be empty")
    try:
        territory = Territory(territory)
    except ValueError:
        raise ConfigurationError(
            f"territory {territory!r} is not one of {', '.join(t.value for t in Territory)}"
        ) from None
    _check_schedule(timezone=timezone, run_hour=run_hour, deadline_hour=deadline_hour)
    insert = insert_for(session, ClientRow).values(
        client_id=client_id,
        name=name,
        integration_id=new_integration_id(),
        activated_on=activated_on,
        territory=territory.value,
        timezone=timezone,
        run_hour=run_hour,
        deadline_hour=deadline_hour,
        active=True,
        account_overrides={},
        created_at=now,
    )
    inserted = session.execute(
        insert.on_conflict_do_nothing(index_elements=["client_id"]).returning(ClientRow.client_id)
    ).first()
    if inserted is None:
        raise ConfigurationError(f"client_id {client_id!r} is already activated")
    return get_client(session, client_id)


def new_integration_id() -> str:
    """An unguessable integration identifier, the one Toporder's closures carry."""
    return INTEGRATION_ID_PREFIX + secrets.token_urlsafe(24)


def get_client(session: Session, client_id: str) -> ClientRecord:
    return _client_record(client_row(session, client_id))


_CLIENT_AND_SOURCE = select(
    *(_CLIENTS.c[name] for name in ClientRecord.__dataclass_fields__), _CLIENTS.c.source
).where(_CLIENTS.c.client_id == bindparam("client"))


def client_and_source(session: Session, client_id: str) -> tuple[ClientRecord, ClosureSourceKind]:
    """The client and where its closures come from, in one statement (RefusedError if unknown).

    Read from the database, not from the session's objects: for a transaction that has not
    changed the client (``get_client`` sees its unflushed changes).
    """
    row = session.execute(_CLIENT_AND_SOURCE, {"client": client_id}).first()
    if row is None:
        raise RefusedError(f"unknown client {client_id!r}")
    source: ClosureSourceKind = row.source
    return _client_record(row), source


def client_by_integration_id(session: Session, integration_id: str) -> ClientRecord | None:
    row = session.scalars(
        select(ClientRow).where(ClientRow.integration_id == integration_id)
    ).one_or_none()
    return None if row is None else _client_record(row)


def list_clients(session: Session) -> list[ClientRecord]:
    rows = session.scalars(select(ClientRow).order_by(ClientRow.client_id))
    return [_client_record(row) for row in rows]


def set_schedule(
    session: Session,
    client_id: str,
    *,
    timezone: str | None = None,
    run_hour: int | None = None,
    deadline_hour: int | None = None,
) -> ClientRecord:
    """Change when CLIENT's days run (local hour) and wait for a closure; None keeps a value."""
    _check_schedule(timezone=timezone, run_hour=run_hour, deadline_hour=deadline_hour)
    row = client_row(session, client_id, for_update=True)
    if timezone is not None:
        row.timezone = timezone
    if run_hour is not None:
        row.run_hour = run_hour
    if deadline_hour is not None:
        row.deadline_hour = deadline_hour
    session.flush()
    return _client_record(row)


def deactivate_client(session: Session, client_id: str) -> ClientRecord:
    """Stop scheduling CLIENT's days; its ledger stays as it is and it can be reactivated."""
    return _set_active(session, client_id, active=False)


def reactivate_client(session: Session, client_id: str) -> ClientRecord:
    return _set_active(session, client_id, active=True)


def due_clients(session: Session, *, timezone: str, hour: int) -> list[ClientRecord]:
    """The active clients whose daily run is at ``hour`` o'clock in ``timezone``."""
    rows = session.scalars(
        select(ClientRow)
        .where(ClientRow.active, ClientRow.timezone == timezone, ClientRow.run_hour == hour)
        .order_by(ClientRow.client_id)
    )
    return [_client_record(row) for row in rows]


def schedule_slots(session: Session) -> list[tuple[str, int]]:
    """Every distinct (timezone, run hour) of the active clients, sorted: one schedule each."""
    rows = session.execute(
        select(ClientRow.timezone, ClientRow.run_hour)
        .where(ClientRow.active)
        .distinct()
        .order_by(ClientRow.timezone, ClientRow.run_hour)
    )
    return [(timezone, hour) for timezone, hour in rows]


def set_mapping(
    session: Session, client_id: str, method: str, account: str, *, now: datetime
) -> None:
    """Send the payment method named exactly ``method`` to ``account`` (replacing any mapping)."""
    if not method:
        raise ConfigurationError("method must not be empty")
    problem = account_problem(account, "method")
    if problem is not None:
        raise ConfigurationError(f"mapping of method {method!r}: {problem}")
    client_row(session, client_id)
    insert = insert_for(session, MappingRow).values(
        client_id=client_id, method=method, account=account, updated_at=now
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["client_id", "method"],
            set_={"account": insert.excluded.account, "updated_at": insert.excluded.updated_at},
        )
    )


def list_mappings(session: Session, client_id: str) -> dict[str, str]:
    client_row(session, client_id)
    # Columns, not ORM objects: the upsert of set_mapping bypasses the identity map.
    rows = session.execute(
        select(MappingRow.method, MappingRow.account)
        .where(MappingRow.client_id == client_id)
        .order_by(MappingRow.method)
    )
    return {method: account for method, account in rows}


def set_account_override(session: Session, client_id: str, key: str, account: str) -> None:
    """Replace the default account of ``key`` (one of ``ACCOUNT_KEYS``) for this client."""
    if key not in ACCOUNT_KEYS:
        raise ConfigurationError(f"account key {key!r} is not one of {', '.join(ACCOUNT_KEYS)}")
    problem = account_problem(account, key)
    if problem is not None:
        raise ConfigurationError(f"account override {key}: {problem}")
    row = client_row(session, client_id, for_update=True)
    row.account_overrides = {**row.account_overrides, key: account}


# Columns, not ORM objects: the client row and its mappings in one outer join.
_CLIENT_SETTINGS = (
    select(_CLIENTS.c.territory, _CLIENTS.c.account_overrides, _MAPPINGS.c.method,
           _MAPPINGS.c.account)
    .outerjoin(_MAPPINGS, _MAPPINGS.c.client_id == _CLIENTS.c.client_id)
    .where(_CLIENTS.c.client_id == bindparam("client"))
    .order_by(_MAPPINGS.c.method)
)


def client_settings(db: Executor, client_id: str) -> ClientSettings:
    """The client's settings (RefusedError if unknown), read in one statement."""
    rows = db.execute(_CLIENT_SETTINGS, {"client": client_id}).all()
    if not rows:
        raise RefusedError(f"unknown client {client_id!r}")
    return ClientSettings(
        client_id=client_id,
        territory=Territory(rows[0].territory),
        account_overrides=rows[0].account_overrides,
        mappings={row.method: row.account for row in rows if row.method is not None},
    )


# --- closures ---------------------------------------------------------------------------


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
    reopen = insert_for(session, _DAYS).values(_NEW_DAY)
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


# --- posting ----------------------------------------------------------------------------


_CLIENT = select(_CLIENTS.c.client_id).where(_CLIENTS.c.client_id == bindparam("client"))
_LOCK_CLIENT = _CLIENT.with_for_update(key_share=True)


def lock_client(db: Executor, client_id: str) -> None:
    """Make the writers of the client take turns (RefusedError if unknown).

    On PostgreSQL the client row is locked FOR NO KEY UPDATE until the transaction ends (entry
    numbers are per client); on SQLite BEGIN IMMEDIATE already holds the write lock.
    """
    _require_client(db, client_id, _LOCK_CLIENT)


def _require_client(db: Executor, client_id: str, query: Executable) -> None:
    """RefusedError if ``query`` (``_CLIENT`` or ``_LOCK_CLIENT``) finds no such client."""
    if db.execute(query, {"client": client_id}).first() is None:
        raise RefusedError(f"unknown client {client_id!r}")


@functools.cache
def _ensure_day_statement(dialect: str) -> Executable:
    # One statement creates the day row if missing, or locks it as it is (a no-op update),
    # and returns it either way.
    ensure = dialect_insert(dialect, _DAYS).values(_NEW_DAY)
    return ensure.on_conflict_do_update(
        index_elements=["client_id", "business_date"], set_={"state": _DAYS.c.state}
    ).returning(_DAYS.c.state, _DAYS.c.closure_id, _DAYS.c.entry_id, _DAYS.c.attempts,
                *_ALERT_COLUMNS)


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
    row = db.execute(_for_dialect(db, _ensure_day_statement),
                     {"client": client_id, "day": business_date, "now": now}).one()
    return DayRecord(client_id, business_date, row.state, row.closure_id, row.entry_id,
                     row.attempts, _alert(row))


def post_entry(
    session: Session,
    client_id: str,
    business_date: date,
    *,
    closure_id: int,
    entry: Entry,
    now: datetime,
) -> PostResult:
    """Make ``entry``, built from closure ``closure_id``, the current entry of the day.

    ``unchanged`` if the current entry comes from this closure with these very lines;
    ``replaced`` (a reversal of the current entry, then the new one) if the closure or the
    entry differ — a corrected closure, or the same closure after a mapping was fixed;
    ``posted`` if the day had none. Raises ``ValueError`` for an entry that cannot be posted
    (``write_entry`` checks it before writing any entry).
    """
    day = lock_client_day(session, client_id, business_date, now=now)
    result = write_entry(session, day, closure_id=closure_id, entry=entry, now=now)
    if result.status != "unchanged":
        session.execute(
            update(_DAYS)
            .where(_DAYS.c.client_id == client_id, _DAYS.c.business_date == business_date)
            .values(entry_id=result.entry_id, closure_id=closure_id, state="posted",
                    updated_at=now)
        )
    return result


def write_entry(
    db: Executor, day: DayRecord, *, closure_id: int, entry: Entry, now: datetime
) -> PostResult:
    """The entries of ``post_entry``, for a day this transaction holds (``lock_client_day``).

    The day row itself is left as it is: the caller records the entry on it, with the rest of
    the day's outcome (``record_day(..., entry_id=...)``), in one statement.
    """
    client_id, business_date = day.client_id, day.business_date
    _check_postable(entry, business_date)
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
            _reversal_of(current),
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


# --- methods seen and day statuses ------------------------------------------------------


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
    db.execute(_for_dialect(db, _methods_seen_statement), [
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

    ``entry_id`` (when given) becomes the day's current entry (``write_entry``); ``release``
    lets go of the day's claim if that run holds it (``release_day``), in the same statement.
    The day row is created if missing, and locked until the transaction ends.
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
            alert=_alert(day),
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
            alert=_alert(day),
        )
        for client_id, territory, day in rows
    ]


# --- alerts -----------------------------------------------------------------------------

_ALERT_COLUMNS = (_DAYS.c.alert_key, _DAYS.c.alert_outcome, _DAYS.c.alert_run_id)
_DAY_ALERT = select(*_ALERT_COLUMNS).where(_DAYS.c.client_id == bindparam("client"),
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


def _alert(row: Any) -> Alert | None:
    if row.alert_outcome is None:
        return None
    return Alert(row.alert_key, row.alert_outcome, row.alert_run_id)


def day_alert(db: Executor, client_id: str, business_date: date) -> Alert | None:
    """The alert the day raised last, open or resolved; None if it never raised one.

    Read under the client's writers' lock (``lock_client``), it is the alert the day holds
    until this transaction ends."""
    row = db.execute(_DAY_ALERT, {"client": client_id, "day": business_date}).first()
    return None if row is None else _alert(row)


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


# --- claims -----------------------------------------------------------------------------


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
        _require_client(db, client_id, _CLIENT)
    claimed = db.execute(
        _for_dialect(db, _claim_statement),
        {"client": client_id, "day": business_date, "now": now, "run": run_id,
         "until": now + lease},
    ).first()
    return claimed is not None


@functools.cache
def _claim_statement(dialect: str) -> Executable:
    claim = dialect_insert(dialect, _DAYS).values(
        {**_NEW_DAY, "claimed_by": bindparam("run"), "claimed_until": bindparam("until")}
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
    _require_client(db, client_id, _CLIENT)
    row = db.execute(select(*_CLAIM_COLUMNS).where(
        _DAYS.c.client_id == client_id, _DAYS.c.business_date == business_date, _CLAIMED,
    )).first()
    return None if row is None else Claim(*row)


def claims(db: Executor, client_id: str | None = None) -> list[Claim]:
    """The claimed client-days (of one client, RefusedError if unknown), by client and day;
    lapsed claims included."""
    query = select(*_CLAIM_COLUMNS).where(_CLAIMED)
    if client_id is not None:
        _require_client(db, client_id, _CLIENT)
        query = query.where(_DAYS.c.client_id == client_id)
    rows = db.execute(query.order_by(_DAYS.c.client_id, _DAYS.c.business_date))
    return [Claim(*row) for row in rows]


# --- helpers ----------------------------------------------------------------------------


def _check_schedule(
    *, timezone: str | None, run_hour: int | None, deadline_hour: int | None
) -> None:
    if timezone is not None and timezone not in available_timezones():
        raise ConfigurationError(f"timezone {timezone!r} is not an IANA time zone name")
    for field, hour in (("run_hour", run_hour), ("deadline_hour", deadline_hour)):
        if hour is not None and (isinstance(hour, bool) or not 0 <= hour <= 23):
            raise ConfigurationError(f"{field} {hour} is not an hour of the day (0 to 23)")


def _set_active(session: Session, client_id: str, *, active: bool) -> ClientRecord:
    row = client_row(session, client_id, for_update=True)
    row.active = active
    session.flush()
    return _client_record(row)


def _for_dialect(db: Executor, build: Callable[[str], _T]) -> _T:
    """The statement ``build`` makes for the database (built once per dialect)."""
    return build(dialect_name(db))


def client_row(session: Session, client_id: str, *, for_update: bool = False) -> ClientRow:
    """The client's row (RefusedError if unknown); ``for_update`` makes writers take turns.

    Without ``for_update`` a row this session already holds is returned without a query.
    """
    if not for_update:
        found = session.get(ClientRow, client_id)
        if found is None:
            raise RefusedError(f"unknown client {client_id!r}")
        return found
    query = select(ClientRow).where(ClientRow.client_id == client_id)
    if for_update:
        # FOR NO KEY UPDATE: serializes writers of the client, yet lets other transactions
        # insert rows that merely reference it (a closure arriving while a day is posted).
        query = query.with_for_update(key_share=True).execution_options(populate_existing=True)
    row = session.scalars(query).one_or_none()
    if row is None:
        raise RefusedError(f"unknown client {client_id!r}")
    return row


# The values of a client-day row created in state ``received``, with bound parameters
# ``client``, ``day`` and ``now``.
_NEW_DAY: Mapping[str, Any] = MappingProxyType({
    "client_id": bindparam("client"),
    "business_date": bindparam("day"),
    "state": "received",
    "messages": [],
    "warnings": [],
    "attempts": 0,
    "updated_at": bindparam("now"),
})


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


def _check_postable(entry: Entry, business_date: date) -> None:
    if entry.date != business_date:
        raise ValueError(f"an entry dated {entry.date} cannot be posted on {business_date}")
    if not entry.lines:
        raise ValueError(f"entry {entry.piece_ref} has no lines")
    if not entry.is_balanced:
        raise ValueError(
            f"entry {entry.piece_ref} is not balanced: "
            f"debit {entry.total_debit} ≠ credit {entry.total_credit}"
        )


@dataclass(frozen=True, slots=True)
class _Current:
    """The day's current entry, as ``write_entry`` compares and reverses it."""

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


def _reversal_of(original: _Current) -> Entry:
    """The current entry with debit and credit swapped, labelled as its reversal."""
    entry = original.entry
    return replace(
        entry,
        label=f"Extourne de l'écriture n°{original.number} - {entry.label}",
        lines=tuple(replace(line, debit=line.credit, credit=line.debit) for line in entry.lines),
    )


# The header columns of an entry, bound as ``new_<column>`` by ``_write_entry``.
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


def _client_record(row: Any) -> ClientRecord:
    """The record of a ``ClientRow`` or of a row of its columns."""
    return ClientRecord(
        client_id=row.client_id,
        name=row.name,
        integration_id=row.integration_id,
        activated_on=row.activated_on,
        territory=Territory(row.territory),
        timezone=row.timezone,
        run_hour=row.run_hour,
        deadline_hour=row.deadline_hour,
        active=row.active,
        account_overrides=MappingProxyType(dict(row.account_overrides)),
        created_at=row.created_at,
    )


def _finding(item: Mapping[str, Any]) -> Finding:
    return Finding(Category(item["category"]), item["rule"], item["field"], item["message"])
