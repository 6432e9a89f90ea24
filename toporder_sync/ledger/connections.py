"""How each client is connected to Toporder: where its closures come from, the push secret.

Like the rest of the ledger (``clients``): every function takes the caller's ``Session`` and never
commits. A client's ``source`` is ``push`` (Toporder posts its closures to the receiver, or they
are handed to ``receive``) or ``pull`` (the daily run fetches them from Toporder's API). Its push
secret is the Standard Webhooks key Toporder signs pushed closures with: it is stored because
HMAC needs the key itself, returned only to the command that hands it to Toporder and to the
receiver that checks signatures, and never put in a record that could be logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from toporder_sync import signing
from toporder_sync.core.errors import ConfigurationError
from toporder_sync.ledger.clients import client_row
from toporder_sync.ledger.tables import ClientRow, ClosureSourceKind

SOURCES: tuple[ClosureSourceKind, ...] = get_args(ClosureSourceKind)


@dataclass(frozen=True, slots=True)
class Connection:
    """A client's connection settings, safe to print: whether a push secret exists, not it."""

    client_id: str
    integration_id: str
    source: ClosureSourceKind
    has_push_secret: bool


@dataclass(frozen=True, slots=True)
class PushCredentials:
    """What the receiver needs to authenticate a push for one integration identifier."""

    client_id: str
    integration_id: str
    push_secret: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    secret: str = field(repr=False)
    created: bool


def connection(session: Session, client_id: str) -> Connection:
    return _connection(client_row(session, client_id))


def source_of(session: Session, client_id: str) -> ClosureSourceKind:
    return _connection(client_row(session, client_id)).source


def set_source(session: Session, client_id: str, source: str) -> Connection:
    """Make ``source`` (``push`` or ``pull``) where the client's closures come from."""
    kind = next((k for k in SOURCES if k == source), None)
    if kind is None:
        raise ConfigurationError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    row = client_row(session, client_id, for_update=True)
    row.source = kind
    session.flush()
    return _connection(row)


def issue_push_secret(session: Session, client_id: str, *, rotate: bool = False) -> IssuedSecret:
    """The client's push secret, made now if it has none (or if ``rotate``).

    Rotating replaces the key at once: closures Toporder signs with the old one are refused
    from then on, so rotate only when Toporder is ready to take the new one.
    """
    row = client_row(session, client_id, for_update=True)
    if row.push_secret is not None and not rotate:
        return IssuedSecret(row.push_secret, created=False)
    row.push_secret = signing.new_secret()
    session.flush()
    return IssuedSecret(row.push_secret, created=True)


def push_credentials(session: Session, integration_id: str) -> PushCredentials | None:
    """The client that owns ``integration_id`` and its push secret; None if no client does."""
    row = session.scalars(
        select(ClientRow).where(ClientRow.integration_id == integration_id)
    ).one_or_none()
    if row is None:
        return None
    return PushCredentials(row.client_id, row.integration_id, row.push_secret)



def _connection(row: ClientRow) -> Connection:
    return Connection(row.client_id, row.integration_id, row.source,
                      row.push_secret is not None)
