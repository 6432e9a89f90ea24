"""The ledger's clients: who they are, when their days run, and where their money goes.

Activation issues a client's unguessable integration identifier (the one its closures carry);
the schedule says at which local hour its days run and until when a closure is waited for; the
mappings and account overrides are the client's settings that the core's mapping reads
(``client_settings``). Every function runs inside the caller's transaction and never commits.

``lock_client`` makes the writers of one client take turns (entry numbers are per client): the
journal, the days and the claims take it, or check the client with ``require_client``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy import Executable, Table, bindparam, select
from sqlalchemy.orm import Session

from toporder_sync.core.accounts import ACCOUNT_KEYS, account_problem
from toporder_sync.core.errors import ConfigurationError, RefusedError
from toporder_sync.core.model import ClientSettings, Territory
from toporder_sync.ledger.db import Executor, insert_for
from toporder_sync.ledger.tables import Base, ClientRow, ClosureSourceKind, MappingRow

_CLIENTS: Table = Base.metadata.tables["clients"]
_MAPPINGS: Table = Base.metadata.tables["mappings"]

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


_CLIENT = select(_CLIENTS.c.client_id).where(_CLIENTS.c.client_id == bindparam("client"))
_LOCK_CLIENT = _CLIENT.with_for_update(key_share=True)


def lock_client(db: Executor, client_id: str) -> None:
    """Make the writers of the client take turns (RefusedError if unknown).

    On PostgreSQL the client row is locked FOR NO KEY UPDATE until the transaction ends (entry
    numbers are per client); on SQLite BEGIN IMMEDIATE already holds the write lock.
    """
    _require(db, client_id, _LOCK_CLIENT)


def require_client(db: Executor, client_id: str) -> None:
    """RefusedError if the ledger knows no such client; it locks nothing."""
    _require(db, client_id, _CLIENT)


def _require(db: Executor, client_id: str, query: Executable) -> None:
    """RefusedError if ``query`` (``_CLIENT`` or ``_LOCK_CLIENT``) finds no such client."""
    if db.execute(query, {"client": client_id}).first() is None:
        raise RefusedError(f"unknown client {client_id!r}")


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
