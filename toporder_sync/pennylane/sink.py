"""The outbox handler of topic ``pennylane.entry``: each posted entry lands once in Pennylane.

Promises, on top of the outbox's at-least-once delivery (``toporder_sync.outbox``):

* At most once in Pennylane. The API has no idempotency key, so every POST is counted in the
  ledger (``store.count_post``, committed) before it is sent, and the entry's Pennylane id is
  recorded in the transaction that marks its message sent. A push that finds a POST counted
  (a timeout, a 5xx, a dropped connection, a crash before the mark) first lists the journal's
  entries of that date in Pennylane and takes the one with our piece number if it is there.
  Two pushes of one entry at once cannot both post: only one of them counts the POST.
* Ledger order, day by day: an entry goes only once every earlier entry of its client,
  journal and day is in Pennylane (``store.ahead_of``), so a corrected day arrives as original,
  reversal, replacement, and Pennylane never holds the day's sales twice. Waiting is a
  ``DeliveryDeferred``: no attempt is spent; the message is looked at again when the entry
  ahead is due again, and woken as soon as that entry is pushed (``record``).
* Ids: the journal's and the accounts' ids come from the ledger's cache (``Resolver``), shared
  by every process, so a push of one entry costs one request. A 404 or 422 on the POST may
  come from an id gone stale: the company's ids are looked up again, and the entry is sent
  once more if they changed.
* A POST known not to have created anything (refused, or never sent) is taken back from the
  count (``store.uncount_post``), so the next push does not look the entry up first.
* What must be fixed on the Pennylane side (a journal or an account missing there, a token
  refused, an entry refused) dead-letters the message at once with a message naming it
  (category LEDGER); ``toporder-sync pennylane push`` sends it again once fixed. A token that
  cannot be found (variable unset, block missing) keeps the message pending without spending
  attempts, with an error naming the variable or block, until it is configured.
* Amounts go as they are in the ledger (``Decimal``, two decimals); lines keep their order.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from toporder_sync import outbox
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

# The wait of an entry whose predecessor of the day is due again right now (or overdue).
AHEAD_DUE = timedelta(seconds=1)


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
                 client_factory: Callable[[str], PennylaneClient] | None = None,
                 environ: Mapping[str, str] | None = None,
                 load_block: Callable[[str], str] = load_secret_block,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._resolver = resolver if resolver is not None else Resolver(engine, clock=clock)
        # The token's rate limit is counted in the ledger, shared by every process using it.
        ledger_url = engine.url.render_as_string(hide_password=False)
        self._client_factory = client_factory or functools.partial(PennylaneClient,
                                                                   ledger_url=ledger_url)
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
            # A reversal's original is an earlier entry of its day, queued with it
            # (``store.enqueue_entries``): it is ahead until it is in Pennylane.
            ahead = store.ahead_of(session, entry)
        if entry.push_status == "pushed" and entry.remote_id is not None:
            return entry.remote_id  # pushed by an earlier message of the same entry
        what = _describe(entry)
        if settings is None or not settings.enabled:
            raise DeliveryDeferred(f"{what}: {entry.client_id} is not set up for Pennylane "
                                   "(toporder-sync pennylane configure)")
        if ahead is not None:
            raise self._waiting(what, ahead)
        token = self._token(settings.token, what)
        company = token_fingerprint(token)
        api = self._client(token)
        try:
            payload = self._payload(api, company, entry, settings.journal_code)
            found = _find(api, payload) if entry.post_attempts > 0 else None
            if found is not None:
                return found
            return self._post_with_fresh_ids(api, company, entry, settings.journal_code,
                                             payload)
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
        entry_id = _entry_id(message)
        now = self._clock()
        store.mark_pushed(session, entry_id, remote_ref, now=now)
        # The day's later entries waited for this one: they may go now.
        outbox.wake(session, message.client_id, topic=TOPIC, now=now,
                    event_ids=store.behind(session, entry_id))

    def _waiting(self, what: str, ahead: store.Ahead) -> DeliveryDeferred:
        """Wait, spending no attempt, for the day's entry ahead: until it is due again (its
        push wakes this one), or an hour if it was given up (a push sends both again)."""
        text = (f"{what}: waits for n°{ahead.number} ({ahead.kind}) of the same day to be in "
                "Pennylane first")
        if ahead.dead or ahead.next_attempt_at is None:
            return DeliveryDeferred(f"{text}; it was given up: toporder-sync pennylane push")
        return DeliveryDeferred(text, retry_after=max(AHEAD_DUE,
                                                      ahead.next_attempt_at - self._clock()))

    def _payload(self, api: PennylaneClient, company: str, entry: EntryToPush,
                 journal_code: str) -> EntryPayload:
        journal_id = self._resolver.journal_id(api, company, journal_code)
        accounts = self._resolver.account_ids(api, company, [line.account for line in entry.lines])
        return entry_payload(entry, journal_id, accounts)

    def _post_with_fresh_ids(self, api: PennylaneClient, company: str, entry: EntryToPush,
                             journal_code: str, payload: EntryPayload) -> str:
        """``_post``; on a 404 or 422, perhaps an id gone stale (a journal or an account
        recreated in Pennylane): the ids are looked up again, and the entry sent once more if
        they changed."""
        try:
            return self._post(api, entry, payload, seen=entry.post_attempts)
        except PennylaneRejected as exc:
            if exc.status_code not in (404, 422):
                raise
            self._resolver.forget(company)
            fresh = self._payload(api, company, entry, journal_code)
            if fresh == payload:
                raise
            return self._post(api, entry, fresh, seen=entry.post_attempts)

    def _post(self, api: PennylaneClient, entry: EntryToPush, payload: EntryPayload, *,
              seen: int) -> str:
        """POST the entry once, counted first (see the module docstring); its Pennylane id."""
        with session_scope(self._engine) as session:
            if not store.count_post(session, entry.entry_id, seen=seen):
                raise DeliveryFailed(f"{_describe(entry)}: another push of this entry is under "
                                     "way")
        try:
            return str(api.create_ledger_entry(payload))
        except (PennylaneRejected, PennylaneUnavailable) as exc:
            if isinstance(exc, PennylaneRejected) or not exc.uncertain:
                with session_scope(self._engine) as session:
                    store.uncount_post(session, entry.entry_id, counted=seen + 1)
            raise

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
