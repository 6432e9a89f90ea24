"""The outbox relay against a real HTTP receiver on 127.0.0.1, on SQLite and PostgreSQL.

The receiver checks every request's Standard Webhooks signature with ``signing.verify`` and
drops duplicates by ``webhook-id``, as Toporder's would; it answers from a script (500, 429 with
Retry-After, a reply slower than the client's timeout…). The relay's clock is a fake one, moved
by hand; signatures are dated by the wall clock, since the receiver checks them against its own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import Clock
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from toporder_sync import notifications, outbox, service, signing
from toporder_sync.core.errors import Category, pos_error
from toporder_sync.ledger.db import make_engine, session_scope
from toporder_sync.ledger.tables import OutboxRow
from toporder_sync.outbox import Message

DAY = date(2026, 11, 27)
T0 = datetime(2026, 11, 28, 5, 30, tzinfo=UTC)
FAST = httpx.Timeout(0.5, connect=0.5)


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Receiver:
    """Toporder's end of the webhook: verifies, dedupes by webhook-id, answers from a script."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.script: deque[Reply] = deque()
        self.requests: list[str] = []  # webhook-id of every correctly signed request
        self.accepted: dict[str, dict[str, Any]] = {}  # first 2xx payload per webhook-id
        self.bad_signatures = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/toporder/webhooks"

    def count(self, event_id: str) -> int:
        return self.requests.count(event_id)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                assert receiver.secret is not None
                try:
                    event = signing.verify(receiver.secret, headers, body,
                                           now=datetime.now(UTC))
                except signing.SignatureError:
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self._answer(Reply(401))
                    return
                with receiver.lock:
                    receiver.requests.append(event)
                    reply = receiver.script.popleft() if receiver.script else Reply()
                    if 200 <= reply.status < 300:
                        # The dedupe of a real receiver: a webhook-id seen is acknowledged,
                        # not processed again.
                        receiver.accepted.setdefault(event, json.loads(body))
                time.sleep(reply.delay)
                self._answer(reply)

            def _answer(self, reply: Reply) -> None:
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (timeout): nobody to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()




@pytest.fixture
def webhook(engine: Engine, client_id: str, receiver: Receiver) -> Receiver:
    """``petit-zinc`` notifies the receiver, which knows its secret."""
    with session_scope(engine) as session:
        receiver.secret = notifications.set_webhook(session, client_id, receiver.url, now=T0)
    return receiver


def flag_day(engine: Engine, client_id: str, day: date = DAY, *, now: datetime = T0) -> str:
    """Flag the day for the POS; the event id of its notification."""
    service.flag(engine, client_id, day, state="flagged", error_category=Category.POS,
                 findings=(pos_error("balanced", "payments", "debit 1525.00 ≠ credit 1525.50"),),
                 closure_id=None, now=now)
    with session_scope(engine) as session:
        return session.scalars(select(OutboxRow.event_id).where(OutboxRow.business_date == day)
                               .order_by(OutboxRow.id.desc())).first() or ""


def row(engine: Engine, event_id: str) -> OutboxRow:
    with Session(engine, expire_on_commit=False) as session:
        found = session.scalars(select(OutboxRow).where(OutboxRow.event_id == event_id)).one()
        session.expunge(found)
        return found


def relay(engine: Engine, clock: Clock, *, timeout: httpx.Timeout = FAST,
          max_attempts: int = 8) -> outbox.RelayReport:
    handler = notifications.WebhookHandler(engine, timeout=timeout)
    try:
        return outbox.relay(engine, {"day.flagged": handler}, now=clock,
                            max_attempts=max_attempts)
    finally:
        handler.close()


def test_relay_delivers_a_signed_notification_once(engine: Engine, client_id: str,
                                                    webhook: Receiver) -> None:
    event = flag_day(engine, client_id)
    clock = Clock()

    report = relay(engine, clock)

    assert report == outbox.RelayReport(claimed=1, sent=1)
    assert webhook.requests == [event] and webhook.bad_signatures == 0
    data = webhook.accepted[event]["data"]
    assert data["event_id"] == event and data["business_date"] == "2026-11-27"
    sent = row(engine, event)
    assert (sent.status, sent.attempts, sent.sent_at, sent.last_error) == ("sent", 1, T0, None)
    assert relay(engine, clock) == outbox.RelayReport()
    assert webhook.requests == [event]


def test_500_429_and_timeout_are_retried_with_backoff(engine: Engine, client_id: str,
                                                      webhook: Receiver) -> None:
    event = flag_day(engine, client_id)
    webhook.script.extend([Reply(500), Reply(429, {"Retry-After": "7200"}), Reply(delay=1.5),
                           Reply(204)])
    clock = Clock()

    assert relay(engine, clock).retried == 1
    first = row(engine, event)
    assert (first.status, first.attempts) == ("pending", 1)
    assert "HTTP 500" in (first.last_error or "")
    # backoff after the first failure: 1 minute, jittered down to no less than half of it.
    assert T0 + timedelta(seconds=30) <= first.next_attempt_at < T0 + timedelta(minutes=1)
    assert relay(engine, clock).claimed == 0  # not due yet

    clock.now = first.next_attempt_at
    assert relay(engine, clock).retried == 1
    second = row(engine, event)
    assert second.attempts == 2 and "HTTP 429" in (second.last_error or "")
    # Retry-After (2 h) outweighs the backoff (at most 2 minutes).
    assert second.next_attempt_at == clock.now + timedelta(hours=2)

    clock.now = second.next_attempt_at
    assert relay(engine, clock).retried == 1
    third = row(engine, event)
    assert third.attempts == 3 and "timed out" in (third.last_error or "")
    assert clock.now + timedelta(minutes=2) <= third.next_attempt_at < clock.now + timedelta(
        minutes=4)

    clock.now = third.next_attempt_at
    assert relay(engine, clock).sent == 1
    assert row(engine, event).status == "sent"
    # Four requests reached the receiver (the slow one too), one was accepted.
    assert webhook.count(event) == 4 and list(webhook.accepted) == [event]


def test_dead_after_max_attempts_then_retry_redelivers(engine: Engine, client_id: str,
                                                       webhook: Receiver) -> None:
    event = flag_day(engine, client_id)
    webhook.script.extend([Reply(503)] * 3)
    clock = Clock()
    for _ in range(3):
        relay(engine, clock, max_attempts=3)
        clock.advance(timedelta(hours=1))
    dead = row(engine, event)
    assert (dead.status, dead.attempts) == ("dead", 3) and "HTTP 503" in (dead.last_error or "")
    assert relay(engine, clock, max_attempts=3).claimed == 0
    assert event not in webhook.accepted

    with session_scope(engine) as session:
        assert outbox.retry(session, dead=True, now=clock.now) == [event]
    assert (row(engine, event).status, row(engine, event).attempts) == ("pending", 0)
    assert relay(engine, clock, max_attempts=3).sent == 1
    assert row(engine, event).status == "sent" and event in webhook.accepted


def test_a_4xx_is_dead_lettered_at_once(engine: Engine, client_id: str,
                                        webhook: Receiver) -> None:
    event = flag_day(engine, client_id)
    webhook.script.append(Reply(410))

    assert relay(engine, Clock()) == outbox.RelayReport(claimed=1, dead=1)
    dead = row(engine, event)
    assert (dead.status, dead.attempts) == ("dead", 1) and "HTTP 410" in (dead.last_error or "")


class Crash(BaseException):
    """The relay's process dying: nothing in the relay catches it."""


@dataclass
class CrashAfterSend:
    """Delivers for real, then dies before the relay can mark the message sent."""

    inner: outbox.Handler

    def deliver(self, message: Message) -> str | None:
        self.inner.deliver(message)
        raise Crash

    def record(self, session: Session, message: Message, remote_ref: str | None) -> None:
        raise AssertionError("never reached")


def test_a_crash_between_send_and_mark_ends_delivered_once(engine: Engine, client_id: str,
                                                           webhook: Receiver) -> None:
    event = flag_day(engine, client_id)
    clock = Clock()
    handler = CrashAfterSend(notifications.WebhookHandler(engine, timeout=FAST))
    with pytest.raises(Crash):
        outbox.relay(engine, {"day.flagged": handler}, now=clock)
    assert webhook.count(event) == 1
    assert row(engine, event).status == "pending"

    assert relay(engine, clock).claimed == 0  # the dead relay's lease still holds it
    clock.advance(outbox.LEASE)
    assert relay(engine, clock).sent == 1

    assert row(engine, event).status == "sent"
    assert webhook.count(event) == 2  # sent twice: at least once …
    assert list(webhook.accepted) == [event]  # … and processed once, deduped by webhook-id


KILLED_RELAY = """
import os, signal, sys
from datetime import datetime
from toporder_sync import notifications, outbox
from toporder_sync.ledger.db import make_engine

engine = make_engine(sys.argv[1])
webhook = notifications.WebhookHandler(engine)

class KilledAfterSend:
    def deliver(self, message):
        webhook.deliver(message)
        os.kill(os.getpid(), signal.SIGKILL)

    def record(self, session, message, remote_ref):
        raise AssertionError("never reached")

outbox.relay(engine, {"day.flagged": KilledAfterSend()},
             now=lambda: datetime.fromisoformat(sys.argv[2]))
"""


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_a_relay_killed_after_sending_leaves_the_message_to_the_next(
    ledger_url: str, engine: Engine, client_id: str, webhook: Receiver,
) -> None:
    event = flag_day(engine, client_id)
    killed = subprocess.run([sys.executable, "-c", KILLED_RELAY, ledger_url, T0.isoformat()],
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert webhook.count(event) == 1 and row(engine, event).status == "pending"

    clock = Clock()
    assert relay(engine, clock).claimed == 0
    clock.advance(outbox.LEASE)
    assert relay(engine, clock).sent == 1
    assert webhook.count(event) == 2 and list(webhook.accepted) == [event]


def test_two_relays_at_once_never_deliver_a_message_twice(ledger_url: str, engine: Engine,
                                                          client_id: str,
                                                          webhook: Receiver) -> None:
    events = [flag_day(engine, client_id, DAY - timedelta(days=n)) for n in range(24)]
    clock = Clock()
    webhook.script.extend([Reply(delay=0.03)] * len(events))
    start = threading.Barrier(2)
    failures: list[BaseException] = []
    sent: list[int] = []

    def run() -> None:
        own = make_engine(ledger_url)  # a process of its own would have its own engine
        handler = notifications.WebhookHandler(own)
        count = 0
        try:
            start.wait()
            while report := outbox.relay(own, {"day.flagged": handler}, now=clock, limit=4):
                if not report.claimed:
                    break
                count += report.sent
        except BaseException as exc:
            failures.append(exc)
        finally:
            sent.append(count)
            handler.close()
            own.dispose()

    relays = [threading.Thread(target=run) for _ in range(2)]
    for thread in relays:
        thread.start()
    for thread in relays:
        thread.join(timeout=30)

    assert not failures
    assert sorted(webhook.requests) == sorted(events)  # each exactly once
    assert sum(sent) == len(events) and min(sent) > 0  # and both relays took their share
    with session_scope(engine) as session:
        statuses = {status: count for status, count in session.execute(
            select(OutboxRow.status, func.count()).group_by(OutboxRow.status))}
    assert statuses == {"sent": len(events)}


@dataclass
class Recording:
    """A handler without network: returns a remote reference, records it, or fails to."""

    fail_record: bool = False
    recorded: list[tuple[str, str | None]] = field(default_factory=list)

    def deliver(self, message: Message) -> str | None:
        return f"remote-{message.id}"

    def record(self, session: Session, message: Message, remote_ref: str | None) -> None:
        assert session.in_transaction()
        if self.fail_record:
            raise RuntimeError("the ledger refused the remote reference")
        self.recorded.append((message.event_id, remote_ref))


def _enqueue(engine: Engine, client_id: str, topic: str, event_id: str | None = None) -> str:
    with session_scope(engine) as session:
        return outbox.enqueue(session, topic=topic, client_id=client_id, business_date=None,
                              payload={"amount": "12.50"}, now=T0, event_id=event_id)


def test_record_runs_in_the_marking_transaction(engine: Engine, client_id: str) -> None:
    event = _enqueue(engine, client_id, "test.recorded")
    handler = Recording()
    report = outbox.relay(engine, {"test.recorded": handler}, now=Clock())
    assert report.sent == 1 and handler.recorded == [(event, f"remote-{row(engine, event).id}")]

    failing = _enqueue(engine, client_id, "test.recorded")
    report = outbox.relay(engine, {"test.recorded": Recording(fail_record=True)}, now=Clock())
    assert report.retried == 1
    kept = row(engine, failing)
    assert kept.status == "pending" and "delivered, not recorded" in (kept.last_error or "")


def test_messages_of_topics_without_handler_stay_pending(engine: Engine, client_id: str) -> None:
    event = _enqueue(engine, client_id, "pennylane.entry")
    assert outbox.relay(engine, {"test.recorded": Recording()}, now=Clock()).claimed == 0
    assert row(engine, event).status == "pending"


def test_enqueue_is_idempotent_per_event_id_and_checks_the_payload(engine: Engine,
                                                                   client_id: str) -> None:
    assert _enqueue(engine, client_id, "test.recorded", "msg_fixed") == "msg_fixed"
    assert _enqueue(engine, client_id, "test.recorded", "msg_fixed") == "msg_fixed"
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(OutboxRow)) == 1
        with pytest.raises(ValueError, match="not JSON"):
            outbox.enqueue(session, topic="test.recorded", client_id=client_id,
                           business_date=DAY, payload={"day": DAY}, now=T0)


@pytest.mark.parametrize(("attempt", "low", "high"), [
    (1, timedelta(seconds=30), timedelta(minutes=1)),
    (4, timedelta(minutes=4), timedelta(minutes=8)),
    (7, timedelta(minutes=32), timedelta(minutes=64)),
    (30, timedelta(hours=3), timedelta(hours=6)),
])
def test_backoff_doubles_with_jitter_up_to_a_cap(attempt: int, low: timedelta,
                                                 high: timedelta) -> None:
    waits = [timedelta(seconds=outbox.DELIVERY_RETRY.delay(attempt)) for _ in range(200)]
    assert all(low <= wait <= high for wait in waits)
    assert len(set(waits)) > 100  # jittered, not one value


@dataclass
class Overtaken:
    """While this relay delivers, another one (its lease having run out) sends the message."""

    engine: Engine
    recorded: list[str] = field(default_factory=list)

    def deliver(self, message: Message) -> str | None:
        with session_scope(self.engine) as session:
            session.execute(OutboxRow.__table__.update().where(OutboxRow.id == message.id)
                            .values(status="sent", attempts=1, sent_at=T0))
        return "second-copy"

    def record(self, session: Session, message: Message, remote_ref: str | None) -> None:
        self.recorded.append(message.event_id)


def test_a_message_sent_meanwhile_by_another_relay_is_recorded_once(engine: Engine,
                                                                    client_id: str) -> None:
    event = _enqueue(engine, client_id, "test.recorded")
    handler = Overtaken(engine)
    assert outbox.relay(engine, {"test.recorded": handler}, now=Clock()).sent == 1
    assert handler.recorded == []  # the other relay's delivery is the one recorded
    assert (row(engine, event).status, row(engine, event).attempts) == ("sent", 1)


@dataclass
class Waiting:
    """A handler whose message must wait for another one: deferred for ``wait``."""

    wait: timedelta | None

    def deliver(self, message: Message) -> str | None:
        raise outbox.DeliveryDeferred("waits for another message", retry_after=self.wait)

    def record(self, session: Session, message: Message, remote_ref: str | None) -> None:
        raise AssertionError("never delivered")


@pytest.mark.parametrize("wait", [timedelta(seconds=40), None])
def test_a_deferred_message_spends_no_attempt_and_comes_back_when_told(
    engine: Engine, client_id: str, wait: timedelta | None,
) -> None:
    event = _enqueue(engine, client_id, "test.recorded")
    for _ in range(3):
        report = outbox.relay(engine, {"test.recorded": Waiting(wait)}, now=Clock(T0))
        assert report.deferred == 1
        kept = row(engine, event)
        assert (kept.status, kept.attempts, kept.claimed_until) == ("pending", 0, None)
        assert kept.next_attempt_at == T0 + (outbox.DEFERRED_WAIT if wait is None else wait)
        with session_scope(engine) as session:
            assert outbox.wake(session, client_id, topic="test.recorded", now=T0) == 1


def test_deliver_sends_named_messages_now_and_leaves_held_ones_to_their_relay(
    engine: Engine, client_id: str,
) -> None:
    waiting, held, other = (_enqueue(engine, client_id, "test.recorded") for _ in range(3))
    with session_scope(engine) as session:
        for row_ in session.scalars(select(OutboxRow)):
            row_.next_attempt_at = T0 + timedelta(minutes=30)  # waiting for a retry
            if row_.event_id == held:
                row_.claimed_until = row_.next_attempt_at = T0 + outbox.LEASE  # a relay has it

    with session_scope(engine) as session:  # waking skips the held message too
        assert outbox.wake(session, client_id, topic="test.recorded", now=T0,
                           event_ids=[held]) == 0
    deliveries = outbox.deliver(engine, {"test.recorded": Recording()}, [waiting, held],
                                now=Clock(T0))

    assert deliveries == [outbox.Delivery(waiting, "sent")]
    assert [row(engine, e).status for e in (waiting, held, other)] == [
        "sent", "pending", "pending"]
    assert row(engine, waiting).claimed_until is None
