"""Where closures come from: a small interface with swappable implementations.

A ``ClosureSource`` fetches the closure of a client-day, or None when none was received.

* ``InboxSource``: the closures delivered to the ledger's inbox (``receive``, the push receiver);
  the latest received one wins.
* ``PullSource``: asks Toporder's closures API first, stores what it gets in the inbox through
  ``service.receive`` (raw bytes exactly as served; an identical closure is not stored twice),
  then answers from the inbox like ``InboxSource``. When the API has nothing yet (404), the
  inbox still answers, so a closure pushed or handed over by hand is not lost.

Whatever the source, the raw bytes are kept in the ledger's inbox before anything is posted
from them. ``source_for`` picks the source a client is set to (``clients set-source``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol

from sqlalchemy import Engine

from toporder_sync import service
from toporder_sync.core.closure import load_document, route
from toporder_sync.core.errors import ClosureRejected, pos_error
from toporder_sync.core.model import PreviousClosure
from toporder_sync.ledger import clients, connections
from toporder_sync.ledger import inbox as ledger_inbox
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import ClosureSourceKind
from toporder_sync.toporder_api import ToporderApi, default_api


@dataclass(frozen=True, slots=True)
class FetchedClosure:
    """A closure to run, with the previous closure of its establishment when already read.

    ``previous`` is the ``inbox.previous_closure`` of establishment ``previous_of`` (as
    the inbox filed the closure), read in the fetch's own transaction; None for ``previous_of``
    means it was not read.
    """

    closure_id: int
    raw: bytes
    sha256: str
    source: str
    previous: PreviousClosure | None = None
    previous_of: str | None = None


class ClosureSource(Protocol):
    def fetch(self, client_id: str, business_date: date) -> FetchedClosure | None: ...


@dataclass(frozen=True, slots=True)
class InboxSource:
    """The closures stored in the ledger database; the latest received one wins."""

    engine: Engine

    def fetch(self, client_id: str, business_date: date) -> FetchedClosure | None:
        # The previous closure is read now, in this transaction, rather than in one more
        # after parsing.
        with session_scope(self.engine) as session:
            inbox = ledger_inbox.inbox_closure(session, client_id, business_date)
        return from_inbox(client_id, business_date, inbox)


def from_inbox(client_id: str, business_date: date,
               inbox: ledger_inbox.InboxClosure | None) -> FetchedClosure | None:
    """The closure ``InboxSource.fetch`` gives for what ``inbox.inbox_closure`` read."""
    if inbox is None:
        return None
    stored = inbox.stored
    return FetchedClosure(stored.id, stored.raw, stored.sha256,
                          f"inbox closure #{stored.id} of {client_id} {business_date}",
                          inbox.previous, stored.establishment_id)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PullSource:
    """Toporder's closures API, through the inbox (see the module docstring)."""

    engine: Engine
    api: ToporderApi
    clock: Callable[[], datetime] = field(default=_utc_now)

    def fetch(self, client_id: str, business_date: date) -> FetchedClosure | None:
        with session_scope(self.engine) as session:
            integration_id = clients.get_client(session, client_id).integration_id
        raw = self.api.closure(integration_id, business_date)
        if raw is not None:
            where = f"Toporder API closure of {client_id} {business_date}"
            _check_routing(raw, where, integration_id, business_date)
            service.receive(self.engine, raw, where, now=self.clock())
        return InboxSource(self.engine).fetch(client_id, business_date)


def _check_routing(raw: bytes, where: str, integration_id: str, business_date: date) -> None:
    """Refuse, storing nothing, a served closure that is not the one asked for.

    ``service.receive`` would file it under whichever client and day it names; the API
    answering with another client's or another day's closure is Toporder's error to fix.
    The document is read twice (here and in ``receive``): a few milliseconds per day, for not
    ever storing a closure in the wrong inbox.
    """
    routing = route(load_document(raw, where), where)
    if routing.integration_id != integration_id:
        raise ClosureRejected(where, [pos_error(
            "routing", "integration_id",
            "the API served a closure of another integration identifier; nothing stored")])
    if routing.business_date != business_date:
        raise ClosureRejected(where, [pos_error(
            "routing", "closure.business_date",
            f"the API served the closure of {routing.business_date} when asked for "
            f"{business_date}; nothing stored")])


def source_for(engine: Engine, client_id: str) -> ClosureSource:
    """The source ``client_id`` is set to: the inbox for ``push``, the API for ``pull``.

    A pull client needs ``TOPORDER_API_URL`` and ``TOPORDER_API_TOKEN``: ConfigurationError
    naming the one missing, before anything is fetched.
    """
    with session_scope(engine) as session:
        kind = connections.source_of(session, client_id)
    return source_of_kind(engine, kind)


def source_of_kind(engine: Engine, kind: ClosureSourceKind) -> ClosureSource:
    """The inbox for ``push``, the API for ``pull`` (see ``source_for``)."""
    if kind == "pull":
        return PullSource(engine, default_api())
    return InboxSource(engine)
