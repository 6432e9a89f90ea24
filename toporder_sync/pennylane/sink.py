"""The outbox handler of topic ``pennylane.entry``: each posted entry lands once in Pennylane.

Promises, on top of the outbox's at-least-once delivery (``toporder_sync.outbox``):

* At most once in Pennylane. The API has no idempotency key, so every POST is counted in the
  ledger (``store.count_post``, committed) before it is sent, and the entry's Pennylane id is
  recorded in the transaction that marks its message sent. A push that finds a POST counted
  (a timeout, a 5xx, a dropped connection, a crash before the mark) first lists the journal's
  entries of that date in Pennylane and takes the one with our piece number if it is there.
  Two pushes of one entry at once cannot both post: only one of them counts the POST.
* A reversal goes after the entry it reverses: until that one has its Pennylane id, the
  reversal's delivery fails as transient and is retried later.
* What must be fixed on the Pennylane side (a journal or an account missing there, a token
  refused, an entry refused) dead-letters the message at once with a message naming it
  (category LEDGER); ``toporder-sync pennylane push`` sends it again once fixed. A token that
  cannot be found (variable unset, block missing) keeps the message pending without spending
  attempts, with an error naming the variable or block, until it is configured.
* Amounts go as they are in the ledger (``Decimal``, two decimals); lines keep their order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from toporder_sync.core.errors import ConfigurationError
from toporder_sync.ledger.db import session_scope
from toporder_sync.outbox import (
    DeliveryDeferred,
    DeliveryFailed,
    DeliveryRefused,
    Message,
    register,
)
from toporder_sync.pennylane import TOPIC, store
from toporder_sync.pennylane.client import (
    EntryLinePayload,
    EntryPayload,
    PennylaneClient,
    PennylaneRejected,
    PennylaneUnavailable,
    token_fingerprint,
)
from toporder_sync.pennylane.resolver import Resolver
from toporder_sync.pennylane.store import EntryToPush
from toporder_sync.pennylane.tokens import TokenRef, load_secret_block, load_token

# Ids of journals and accounts, shared by every handler of the process: they change rarely,
# and a refusal by Pennylane drops the company's ids (``Resolver.forget``).
SHARED_RESOLVER = Resolver()


def entry_payload(entry: EntryToPush, journal_id: int,
                  account_ids: Mapping[str, int]) -> EntryPayload:
    """The body of ``POST /ledger_entries`` for a ledger entry, ids already resolved."""
    return EntryPayload(
        date=entry.business_date,
        label=entry.label,
        journal_id=journal_id,
        piece_number=entry.piece_number,
        lines=tuple(
            EntryLinePayload(ledger_account_id=account_ids[line.account], debit=line.debit,
                             credit=line.credit, label=f"{line.label} - {line.account_label}")
            for line in entry.lines
        ),
    )


class PennylaneHandler:
    """Pushes the entry named by a ``pennylane.entry`` message (see the module docstring)."""

    def __init__(self, engine: Engine, *, resolver: Resolver | None = None,
                 client_factory: Callable[[str], PennylaneClient] = PennylaneClient,
                 environ: Mapping[str, str] | None = None,
                 load_block: Callable[[str], str] = load_secret_block,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._resolver = resolver if resolver is not None else SHARED_RESOLVER
        self._client_factory = client_factory
        self._environ = environ
        self._load_block = load_block
        self._clock = clock
        self._lock = threading.Lock()
        # Tokens read once per handler: a Secret block is an API call to Prefect.
        self._tokens: dict[TokenRef, str] = {}
        self._clients: dict[str, PennylaneClient] = {}

    def deliver(self, message: Message) -> str:
        entry_id = _entry_id(message)
        with session_scope(self._engine) as session:
            entry = store.load_entry(session, entry_id)
            settings = store.get_settings(session, entry.client_id)
            original_remote = (None if entry.reverses_id is None
                               else store.remote_id_of(session, entry.reverses_id))
        if entry.push_status == "pushed" and entry.remote_id is not None:
            return entry.remote_id  # pushed by an earlier message of the same entry
        what = _describe(entry)
        if settings is None or not settings.enabled:
            raise DeliveryDeferred(f"{what}: {entry.client_id} is not set up for Pennylane "
                                   "(toporder-sync pennylane configure)")
        if entry.reverses_id is not None and original_remote is None:
            raise DeliveryFailed(f"{what}: waits for the entry it reverses to be pushed first")
        token = self._token(settings.token, what)
        company = f"{entry.client_id}:{token_fingerprint(token)}"
        api = self._client(token)
        try:
            journal_id = self._resolver.journal_id(api, company, settings.journal_code)
            accounts = self._resolver.account_ids(api, company,
                                                  [line.account for line in entry.lines])
            payload = entry_payload(entry, journal_id, accounts)
            if entry.post_attempts > 0:
                found = _find(api, payload)
                if found is not None:
                    return found
            with session_scope(self._engine) as session:
                if not store.count_post(session, entry_id, seen=entry.post_attempts):
                    raise DeliveryFailed(f"{what}: another push of this entry is under way")
            return str(api.create_ledger_entry(payload))
        except PennylaneRejected as exc:
            # Whatever was refused may be a cached id or token gone stale: ask again next time.
            self._resolver.forget(company)
            with self._lock:
                self._tokens.pop(settings.token, None)
            raise DeliveryRefused(f"{what}: {exc} [{exc.category.value}: fix on the Pennylane "
                                  "side, then toporder-sync pennylane push]") from exc
        except PennylaneUnavailable as exc:
            doubt = ("; it may have been created: it is looked up before any new POST"
                     if exc.uncertain else "")
            wait = None if exc.retry_after is None else timedelta(seconds=exc.retry_after)
            raise DeliveryFailed(f"{what}: {exc}{doubt}", retry_after=wait) from exc

    def record(self, session: Session, message: Message, remote_ref: str | None) -> None:
        if remote_ref is None:
            raise ValueError(f"{message.event_id}: a pushed entry has a Pennylane id")
        store.mark_pushed(session, _entry_id(message), remote_ref, now=self._clock())

    def close(self) -> None:
        """Close the HTTP connections kept open (the handler may still be used afterwards)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _client(self, token: str) -> PennylaneClient:
        # One client per token, kept: connections are reused, and making an httpx client
        # (its TLS context) costs more than a request to Pennylane.
        key = token_fingerprint(token)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._client_factory(token)
            return client

    def _token(self, ref: TokenRef, what: str) -> str:
        with self._lock:
            token = self._tokens.get(ref)
        if token is not None:
            return token
        try:
            token = load_token(ref, environ=self._environ, load_block=self._load_block)
        except ConfigurationError as exc:
            raise DeliveryDeferred(f"{what}: {exc}") from exc
        with self._lock:
            self._tokens[ref] = token
        return token


def _find(api: PennylaneClient, payload: EntryPayload) -> str | None:
    """The id of our entry in Pennylane if an earlier POST created it (lowest id if several)."""
    ours = sorted(remote.id for remote in api.ledger_entries(payload.journal_id, payload.date)
                  if remote.piece_number == payload.piece_number)
    return str(ours[0]) if ours else None


def _entry_id(message: Message) -> int:
    entry_id = message.payload.get("entry_id")
    if isinstance(entry_id, bool) or not isinstance(entry_id, int):
        raise DeliveryRefused(f"{message.event_id}: payload has no integer entry_id")
    return entry_id


def _describe(entry: EntryToPush) -> str:
    kind = "reversal" if entry.kind == "reversal" else "entry"
    return (f"Pennylane push of {entry.client_id}'s {kind} {entry.journal} n°{entry.number} "
            f"({entry.piece_number}, {entry.business_date})")


register(TOPIC, PennylaneHandler)
