"""Where closures come from: a small interface with swappable implementations.

A ``ClosureSource`` fetches the closure of a client-day, or None when none was received. The
inbox (closures delivered by ``receive`` or, later, the push receiver) is the one source of
this release; a pull API client or a simulator fits the same shape. Whatever the source, the
raw bytes are kept in the ledger's inbox before anything is posted from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

from sqlalchemy import Engine

from toporder_sync.ledger import repository
from toporder_sync.ledger.db import session_scope


@dataclass(frozen=True, slots=True)
class FetchedClosure:
    closure_id: int
    raw: bytes
    sha256: str
    source: str


class ClosureSource(Protocol):
    def fetch(self, client_id: str, business_date: date) -> FetchedClosure | None: ...


@dataclass(frozen=True, slots=True)
class InboxSource:
    """The closures stored in the ledger database; the latest received one wins."""

    engine: Engine

    def fetch(self, client_id: str, business_date: date) -> FetchedClosure | None:
        with session_scope(self.engine) as session:
            stored = repository.latest_closure(session, client_id, business_date)
        if stored is None:
            return None
        return FetchedClosure(stored.id, stored.raw, stored.sha256,
                              f"inbox closure #{stored.id} of {client_id} {business_date}")
