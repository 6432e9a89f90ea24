"""The transactional outbox: messages written with a ledger change, delivered later, at least once.

Promises:

* ``enqueue`` adds a message inside the caller's transaction and never commits: the message
  exists if and only if the ledger change it announces was committed (a flagged day and its
  notification, a posted entry and its push to Pennylane). An ``event_id`` given twice is
  stored once (the second ``enqueue`` is a no-op), so a deterministic id makes enqueueing
  idempotent.
* ``relay`` delivers the due ``pending`` messages through the ``Handler`` of their topic, at
  least once: a message is marked ``sent`` only after its handler succeeded, in a transaction of
  its own; if the relay dies between the remote call and that mark, the message is delivered
  again once its lease has run out, with the same ``event_id`` (the receiver drops duplicates
  by it: the ``webhook-id`` header for webhooks).
* No database transaction is open during a remote call. A message is *claimed* in a short
  transaction that pushes its ``next_attempt_at`` ``LEASE`` into the future and records the
  lease in ``claimed_until`` (cleared when the delivery ends); other relays only pick due
  messages, so they leave it alone until the lease runs out. On PostgreSQL the claim
  selects ``FOR UPDATE SKIP LOCKED``: relays running at once never claim the same message. On
  SQLite every transaction starts with ``BEGIN IMMEDIATE`` (``ledger.db``), which serializes the
  claims just as well; one relay per SQLite ledger is still the intended set-up.
* A handler raising ``DeliveryFailed`` (or any ``TransientError``) gets the message retried
  after the backoff of ``DELIVERY_RETRY`` (the edges' one policy, ``toporder_sync.retrying``:
  exponential, jittered, capped), never before a ``retry_after`` it gives (HTTP Retry-After);
  ``DeliveryRefused`` dead-letters it at once; after ``max_attempts`` failed
  attempts it is ``dead`` too. ``DeliveryDeferred`` (the receiver is not configured yet, or
  the message must wait for another one) keeps it pending without spending an attempt, for
  its ``retry_after`` or else ``DEFERRED_WAIT``. A ``dead`` message only moves again by hand
  (``retry``), with a fresh budget of attempts.
* ``deliver`` sends named messages now, whatever their backoff (``toporder-sync pennylane
  push``): it claims them as a relay does, but skips a message another relay holds
  (``claimed_until`` in the future), so no message is ever delivered by two at once.
* A handler's delivery should finish well within ``LEASE / CLAIM_BATCH``: a slower one
  may find its later messages' leases expired and those messages delivered twice (which is
  still at-least-once, but noisy).
* ``last_error`` holds what went wrong in words; handlers never put secrets, signatures or
  headers in their exceptions, and nothing here logs a payload.
* Each topic's ``Handler`` is registered by the module that defines it (``register``, at that
  module's import: ``notifications`` for ``day.flagged``, ``pennylane.sink`` for
  ``pennylane.entry``). This module imports none of them, so the handlers can build on it
  without an import cycle; whoever runs the relay imports the handler modules first.
* ``relay_loop`` is the long-lived relay (``toporder-sync relay``, docs/relay.md). Idle, it
  costs one small indexed SELECT per look (``next_due``) and a sleep: it runs a round of
  delivery only when a message is due, and a message enqueued while it sleeps goes out within
  its ``interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, Protocol, cast

from sqlalchemy import ColumnElement, CursorResult, Engine, Executable, func, or_, select, update
from sqlalchemy.orm import Session

from toporder_sync import checkpoints
from toporder_sync.core.errors import ToporderSyncError, TransientError
from toporder_sync.ledger.db import (
    Executor,
    dialect_insert,
    dialect_name,
    session_scope,
    transaction,
)
from toporder_sync.ledger.tables import OUTBOX_STATUSES, OutboxRow, OutboxStatus
from toporder_sync.retrying import RetryPolicy

log = logging.getLogger(__name__)

# How long a claimed message is left alone by other relays: longer than the deliveries of one
# claimed batch can take, short enough that a crashed relay's messages go out again soon.
LEASE = timedelta(minutes=5)
# Messages claimed per short transaction; see the module docstring for the delivery budget.
CLAIM_BATCH = 10
# The wait before the next attempt, stored as the message's next_attempt_at: a minute after the
# first failure, doubling up to six hours, so that with the default 8 attempts a message is
# given up about two hours after its first failure. Only its delay is used here: the attempts
# are counted in the row (``max_attempts``) and nothing is slept.
DELIVERY_RETRY = RetryPolicy(backoff=timedelta(minutes=1).total_seconds(),
                             max_backoff=timedelta(hours=6).total_seconds(), patience=None)
# A message whose receiver is not configured yet is looked at again this often (configuring it
# wakes its messages at once: ``wake``).
DEFERRED_WAIT = timedelta(hours=1)
MAX_ERROR_LENGTH = 1000
_TOPIC_LENGTH = 32
_EVENT_ID_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Message:
    """One message to deliver, as a handler sees it (``attempts``: failed attempts so far)."""

    id: int
    event_id: str
    topic: str
    client_id: str
    business_date: date | None
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One message with its delivery state, for listings."""

    message: Message
    status: OutboxStatus
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


DeliveryOutcome = Literal["sent", "retried", "deferred", "dead"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one message handed to its handler; ``retry_after``: the receiver asked
    not to be called again before that long (only for ``retried`` and ``deferred``)."""

    event_id: str
    outcome: DeliveryOutcome
    retry_after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class RelayReport:
    """What one ``relay`` call did: messages claimed, and what became of them."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    deferred: int = 0
    dead: int = 0


class DeliveryFailed(TransientError):
    """The delivery may succeed later (network, timeout, HTTP 408/429/5xx): retry with backoff.

    ``retry_after``: the receiver asked not to be called again before that long (Retry-After).
    """

    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryDeferred(DeliveryFailed):
    """The message cannot be delivered yet, through no fault of its own: its receiver is not
    configured (no webhook URL or secret yet), or it must go after another message still on its
    way. It stays pending without spending an attempt, never dead-lettered, and is looked at
    again after ``retry_after`` (``DEFERRED_WAIT`` if None)."""


class DeliveryRefused(ToporderSyncError):
    """The receiver refused the message for good (HTTP 4xx other than 408/429): dead-letter it.

    Derives from the root, not from ``RefusedError``: that one means a request of ours the
    command line refuses to carry out (exit 3), while this is a remote verdict on a message.
    """


class Handler(Protocol):
    def deliver(self, message: Message) -> str | None:
        """The remote call; a remote reference or None. Raises ``DeliveryFailed`` (or any
        ``TransientError``) to retry, ``DeliveryRefused`` to dead-letter."""
        ...

    def record(self, session: Session, message: Message, remote_ref: str | None) -> None:
        """Runs inside the transaction that marks the message sent (never commits); once per
        message, for the delivery that marked it sent. If it raises, the message is not marked
        and is delivered again later."""
        ...


# topic -> factory of its handler. Each handler's module registers it where it is defined
# (``register``, at its import): the handlers build on this module, so this module imports none
# of them and no import cycle remains. Whoever runs the relay imports the handler modules first
# (the relay command and flow, the demo); a topic nobody registered is simply not claimed.
_handler_factories: dict[str, Callable[[Engine], Handler]] = {}
HANDLER_FACTORIES: Mapping[str, Callable[[Engine], Handler]] = MappingProxyType(
    _handler_factories
)


def register(topic: str, factory: Callable[[Engine], Handler]) -> None:
    """Name ``factory`` as the maker of ``topic``'s handler; a handler module calls it once.

    A topic has one handler: a second, different factory for it is a programming error (two
    relays would deliver the topic's messages differently depending on what they imported).
    """
    known = _handler_factories.get(topic)
    if known is not None and _name(known) != _name(factory):
        raise ValueError(f"topic {topic!r} already has a handler ({_name(known)}), "
                         f"not {_name(factory)}")
    _handler_factories[topic] = factory


def _name(factory: Callable[..., object]) -> str:
    return f"{factory.__module__}.{getattr(factory, '__qualname__', repr(factory))}"


def new_event_id() -> str:
    """A random event id, in the ``msg_`` style of Standard Webhooks."""
    return "msg_" + secrets.token_hex(16)


def enqueue(db: Executor, *, topic: str, client_id: str, business_date: date | None,
            payload: dict[str, Any], now: datetime, event_id: str | None = None) -> str:
    """Add a pending message, due ``now``, in the caller's transaction; return its event id.

    ``payload`` must be JSON as it is (strings, numbers, lists, objects): it is checked here,
    not when the relay first reads it. A message with this ``event_id`` already in the outbox
    is left as it is.
    """
    if not topic or len(topic) > _TOPIC_LENGTH:
        raise ValueError(f"a topic has 1 to {_TOPIC_LENGTH} characters: {topic!r}")
    event_id = event_id or new_event_id()
    if len(event_id) > _EVENT_ID_LENGTH:
        raise ValueError(f"an event id has at most {_EVENT_ID_LENGTH} characters")
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the payload of {topic} is not JSON: {exc}") from exc
    db.execute(_enqueue_statement(dialect_name(db)), {
        "event_id": event_id, "topic": topic, "client_id": client_id,
        "business_date": business_date, "payload": payload, "status": "pending",
        "attempts": 0, "next_attempt_at": now, "created_at": now,
    })
    return event_id


@functools.cache
def _enqueue_statement(dialect: str) -> Executable:
    """``enqueue``'s INSERT, built once per database dialect (its values are bound per call)."""
    return dialect_insert(dialect, OutboxRow).on_conflict_do_nothing(index_elements=["event_id"])


def relay(engine: Engine, handlers: Mapping[str, Handler], *, now: Callable[[], datetime],
          limit: int = 100, max_attempts: int = 8) -> RelayReport:
    """Deliver up to ``limit`` due pending messages of the topics of ``handlers``.

    Messages of other topics are left pending for a relay that has their handler. Each message
    goes through three steps: claimed (short transaction), delivered (no transaction), marked
    sent or failed (short transaction). A handler's unexpected exception is a failed attempt,
    recorded like a transient one: one bad message must not stop the others.
    """
    if limit < 1 or max_attempts < 1:
        raise ValueError("limit and max_attempts must be at least 1")
    counts = {"claimed": 0, "sent": 0, "retried": 0, "deferred": 0, "dead": 0}
    while counts["claimed"] < limit:
        batch = _claim(engine, tuple(handlers), now=now(),
                       count=min(CLAIM_BATCH, limit - counts["claimed"]))
        if not batch:
            break
        counts["claimed"] += len(batch)
        for message in batch:
            delivery = _deliver(engine, handlers[message.topic], message, now=now,
                                max_attempts=max_attempts)
            counts[delivery.outcome] += 1
    return RelayReport(**counts)


def deliver(engine: Engine, handlers: Mapping[str, Handler], event_ids: Sequence[str], *,
            now: Callable[[], datetime], max_attempts: int = 8) -> list[Delivery]:
    """Deliver these pending messages now, oldest first, whether or not they are due.

    Messages of topics without a handler, messages not pending, and messages another relay
    holds right now (its claim has not run out) are left as they are and not in the result.
    Each message is claimed, delivered and marked as ``relay`` does.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    deliveries: list[Delivery] = []
    wanted = list(dict.fromkeys(event_ids))
    for start in range(0, len(wanted), CLAIM_BATCH):
        batch = _claim(engine, tuple(handlers), now=now(),
                       event_ids=wanted[start:start + CLAIM_BATCH])
        deliveries += [_deliver(engine, handlers[message.topic], message, now=now,
                                max_attempts=max_attempts) for message in batch]
    return deliveries


def next_due(db: Executor, topics: Sequence[str]) -> datetime | None:
    """When the earliest pending message of ``topics`` falls due (maybe in the past); None if
    none is pending.

    One small SELECT, served by the (status, next_attempt_at) index: all the long-lived relay
    asks of the ledger between rounds. A message claimed by a relay is not due before its
    lease runs out.
    """
    if not topics:
        return None
    due: datetime | None = db.execute(
        select(func.min(OutboxRow.next_attempt_at))
        .where(OutboxRow.status == "pending", OutboxRow.topic.in_(topics))
    ).scalar_one()
    return due


async def relay_loop(engine: Engine, topics: Sequence[str],
                     deliver: Callable[[], Awaitable[RelayReport]], *, stop: asyncio.Event,
                     interval: float, now: Callable[[], datetime],
                     on_error: Callable[[TransientError], None]) -> None:
    """Run ``deliver`` (one round of ``relay``) whenever a message of ``topics`` is due, until
    ``stop`` is set.

    Between rounds the loop asks ``next_due`` and sleeps until then, ``interval`` seconds at
    most: a message enqueued meanwhile is due at once and waits that long at most. A round
    that claimed messages is followed by another look at once (a full round leaves more due).
    A round that claimed nothing (another relay took the messages first) or a transient
    failure (reported to ``on_error``: the ledger, or the Prefect server that ``deliver`` runs
    the round on, is unavailable) is followed by a wait of ``interval``, so that a due message
    never makes the loop spin. A stop lets the round under way finish.
    """
    while not stop.is_set():
        wait = interval
        try:
            due = await asyncio.to_thread(_next_due, engine, topics)
            if due is not None and due <= now():
                if (await deliver()).claimed:
                    continue
            elif due is not None:
                wait = min(interval, (due - now()).total_seconds())
        except TransientError as exc:
            on_error(exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)


def _next_due(engine: Engine, topics: Sequence[str]) -> datetime | None:
    with transaction(engine) as connection:
        return next_due(connection, topics)


def _claim(engine: Engine, topics: Sequence[str], *, now: datetime, count: int = CLAIM_BATCH,
           event_ids: Sequence[str] | None = None) -> list[Message]:
    """Take up to ``count`` due messages for one lease, in a transaction of their own; or,
    with ``event_ids``, those messages (oldest first), due or not, unless another relay holds
    them."""
    if not topics:
        return []
    with session_scope(engine) as session:
        query = select(OutboxRow).where(OutboxRow.status == "pending",
                                        OutboxRow.topic.in_(topics))
        if event_ids is None:
            query = (query.where(OutboxRow.next_attempt_at <= now)
                     .order_by(OutboxRow.next_attempt_at, OutboxRow.id).limit(count))
        else:
            query = (query.where(OutboxRow.event_id.in_(event_ids), _not_held(now))
                     .order_by(OutboxRow.id))
        if session.get_bind().dialect.name == "postgresql":
            # Rows another relay is claiming are skipped, not waited for; rows it has just
            # claimed are re-checked after its commit and no longer due.
            query = query.with_for_update(skip_locked=True)
        rows = list(session.scalars(query))
        for row in rows:
            row.next_attempt_at = row.claimed_until = now + LEASE
        return [_message(row) for row in rows]


def _not_held(now: datetime) -> ColumnElement[bool]:
    """No relay holds the message at ``now`` (never claimed, or its claim has run out)."""
    return or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until <= now)


def _deliver(engine: Engine, handler: Handler, message: Message, *,
             now: Callable[[], datetime], max_attempts: int) -> Delivery:
    """Deliver one claimed message and record what became of it."""
    try:
        remote_ref = handler.deliver(message)
    except DeliveryRefused as exc:
        return _fail(engine, message, str(exc), now=now(), dead=True, wait=timedelta(0))
    except DeliveryDeferred as exc:
        return _defer(engine, message, str(exc), now=now(), wait=exc.retry_after)
    except TransientError as exc:
        retry_after = exc.retry_after if isinstance(exc, DeliveryFailed) else None
        return _retry(engine, message, str(exc), now=now(), max_attempts=max_attempts,
                      retry_after=retry_after)
    except Exception as exc:  # a handler's bug: see relay's docstring
        log.exception("outbox: %s %s: the handler crashed", message.topic, message.event_id)
        return _retry(engine, message, f"{type(exc).__name__}: {exc}", now=now(),
                      max_attempts=max_attempts, retry_after=None)
    checkpoints.reached("relay_after_send")
    try:
        with session_scope(engine) as session:
            # Whatever became of the row meanwhile (dead-lettered by a relay that took it over
            # after our lease ran out), it was delivered: it is sent, unless another relay has
            # already marked it so, whose remote reference is the one recorded.
            marked = session.execute(
                update(OutboxRow)
                .where(OutboxRow.id == message.id, OutboxRow.status != "sent")
                .values(status="sent", sent_at=now(), attempts=OutboxRow.attempts + 1,
                        last_error=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )
            if cast("CursorResult[Any]", marked).rowcount == 0:
                log.warning("outbox: %s %s was delivered again after another relay had sent "
                            "it (its lease ran out)", message.topic, message.event_id)
                return Delivery(message.event_id, "sent")
            handler.record(session, message, remote_ref)
    except Exception as exc:
        # Delivered, but not recorded: it goes out again (same event id) after backoff.
        log.exception("outbox: %s %s: delivered, but marking it sent failed",
                      message.topic, message.event_id)
        return _retry(engine, message, f"delivered, not recorded: {type(exc).__name__}: {exc}",
                      now=now(), max_attempts=max_attempts, retry_after=None)
    log.info("outbox: %s %s for %s sent", message.topic, message.event_id, message.client_id)
    return Delivery(message.event_id, "sent")


def _retry(engine: Engine, message: Message, error: str, *, now: datetime, max_attempts: int,
           retry_after: timedelta | None) -> Delivery:
    attempt = message.attempts + 1
    wait = timedelta(seconds=DELIVERY_RETRY.delay(
        attempt, None if retry_after is None else retry_after.total_seconds()))
    return _fail(engine, message, error, now=now, dead=attempt >= max_attempts, wait=wait,
                 retry_after=retry_after)


def _fail(engine: Engine, message: Message, error: str, *, now: datetime, dead: bool,
          wait: timedelta, retry_after: timedelta | None = None) -> Delivery:
    """Count a failed attempt; the message waits ``wait`` or is dead-lettered."""
    status: OutboxStatus = "dead" if dead else "pending"
    log.warning("outbox: %s %s for %s: attempt %d failed (%s): %s", message.topic,
                message.event_id, message.client_id, message.attempts + 1, status, error)
    _update_claimed(engine, message, status=status, attempts=message.attempts + 1,
                    next_attempt_at=now + wait, last_error=error)
    return Delivery(message.event_id, "dead" if dead else "retried", retry_after)


def _defer(engine: Engine, message: Message, error: str, *, now: datetime,
           wait: timedelta | None) -> Delivery:
    log.info("outbox: %s %s for %s deferred: %s", message.topic, message.event_id,
             message.client_id, error)
    _update_claimed(engine, message, status="pending", attempts=message.attempts,
                    next_attempt_at=now + (DEFERRED_WAIT if wait is None else wait),
                    last_error=error)
    return Delivery(message.event_id, "deferred", wait)


def _update_claimed(engine: Engine, message: Message, *, status: OutboxStatus, attempts: int,
                    next_attempt_at: datetime, last_error: str) -> None:
    # Only while the message is still pending with the attempts we claimed it with: a message
    # sent meanwhile by a relay that took it over after our lease ran out stays sent.
    with session_scope(engine) as session:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.id == message.id, OutboxRow.status == "pending",
                   OutboxRow.attempts == message.attempts)
            .values(status=status, attempts=attempts, next_attempt_at=next_attempt_at,
                    last_error=last_error[:MAX_ERROR_LENGTH], claimed_until=None)
            .execution_options(synchronize_session=False)
        )


def list_messages(session: Session, *, client_id: str | None = None,
                  status: OutboxStatus | None = None, limit: int = 1000) -> list[OutboxEntry]:
    """Messages, newest first, optionally of one client or in one status."""
    if status is not None and status not in OUTBOX_STATUSES:
        raise ValueError(f"an outbox status is one of {', '.join(OUTBOX_STATUSES)}")
    query = select(OutboxRow).order_by(OutboxRow.created_at.desc(), OutboxRow.id.desc())
    if client_id is not None:
        query = query.where(OutboxRow.client_id == client_id)
    if status is not None:
        query = query.where(OutboxRow.status == status)
    return [
        OutboxEntry(_message(row), row.status, row.next_attempt_at, row.last_error,
                    row.created_at, row.sent_at)
        for row in session.scalars(query.limit(limit))
    ]


def retry(session: Session, *, event_ids: Sequence[str] = (), dead: bool = False,
          now: datetime) -> list[str]:
    """Put messages back to pending, due ``now``, with a fresh budget of attempts.

    ``event_ids``: those messages, whatever their status (a sent one is sent again); ``dead``:
    every dead message. Returns the event ids moved; an unknown event id is ignored (the caller
    compares).
    """
    conditions: list[ColumnElement[bool]] = []
    if event_ids:
        conditions.append(OutboxRow.event_id.in_(event_ids))
    if dead:
        conditions.append(OutboxRow.status == "dead")
    if not conditions:
        return []
    rows = list(session.scalars(select(OutboxRow).where(*conditions)
                                .with_for_update().order_by(OutboxRow.id)))
    for row in rows:
        row.status = "pending"
        row.attempts = 0
        row.next_attempt_at = now
        row.sent_at = None
        row.claimed_until = None
    return [row.event_id for row in rows]


def wake(session: Session, client_id: str, *, topic: str, now: datetime,
         event_ids: Sequence[str] | None = None) -> int:
    """Make the client's pending messages of ``topic`` (only ``event_ids`` if given) due
    ``now``: what they waited for has happened (their receiver was just configured, the message
    they had to follow was sent). The number of messages woken.

    A message a relay holds right now (its claim has not run out) is left as it is: waking it
    would have it sent twice.
    """
    conditions = [OutboxRow.client_id == client_id, OutboxRow.topic == topic,
                  OutboxRow.status == "pending", OutboxRow.next_attempt_at > now,
                  _not_held(now)]
    if event_ids is not None:
        conditions.append(OutboxRow.event_id.in_(event_ids))
    result = session.execute(
        update(OutboxRow)
        .where(*conditions)
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount


def _message(row: OutboxRow) -> Message:
    return Message(id=row.id, event_id=row.event_id, topic=row.topic, client_id=row.client_id,
                   business_date=row.business_date, payload=dict(row.payload),
                   attempts=row.attempts)
