"""Ledger-side operations of a client-day, each one database transaction.

This is the glue between the pure core and the SQL ledger, used alike by the Prefect tasks and
the command line: receiving a closure, admitting a day, posting an entry, flagging a day. Every
function opens and commits its own transaction: ``transaction`` (a connection) for those of a
client-day's run, which only run statements, ``session_scope`` for the others. The ledger
functions it calls never commit, so a failure anywhere leaves nothing half written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import partial
from typing import Literal

from sqlalchemy import Connection, Engine

from toporder_sync import checkpoints, notifications
from toporder_sync.core import calendar
from toporder_sync.core.closure import load_document, route
from toporder_sync.core.errors import Category, Finding, RefusedError, refused
from toporder_sync.core.model import ClientSettings, Entry, MethodMatch, PreviousClosure
from toporder_sync.ledger import claims as ledger_claims
from toporder_sync.ledger import clients, days, journal, webhooks
from toporder_sync.ledger import inbox as ledger_inbox
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.ledger.db import session_scope, transaction
from toporder_sync.ledger.journal import PostResult
from toporder_sync.ledger.tables import DayState
from toporder_sync.outcome import Outcome
from toporder_sync.pennylane import store as pennylane_store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    client_id: str
    business_date: date
    closure_id: int
    created: bool
    sha256: str


def receive(engine: Engine, raw: bytes, source: str, *, now: datetime,
            message_id: str | None = None) -> Received:
    """Store a delivered closure in its client's inbox, raw and untouched.

    Refused, with nothing stored: a document that is not strict JSON, holds a value the ledger
    could not hold (``core.bounds``: a business day after ``now`` included) or cannot be routed
    (``ClosureRejected``), an unknown integration identifier, a day before activation
    (``RefusedError``). Everything else about the closure is checked when its day is run, so
    that the day is flagged with the right category and Toporder is told.

    ``message_id``: the push's ``webhook-id`` (the receiver), recorded in the same transaction
    as the closure; an id already received with another body is refused, nothing stored
    (``webhooks.WebhookIdReused``). A file (the ``receive`` command) has none.
    """
    routing = route(load_document(raw, source), source, now=now)
    with session_scope(engine) as session:
        client = clients.client_by_integration_id(session, routing.integration_id)
        if client is None:
            raise RefusedError(f"{source}: unknown integration identifier; nothing stored")
        if routing.business_date < client.activated_on:
            raise RefusedError(
                f"{source}: {routing.business_date} is before {client.client_id}'s activation "
                f"date {client.activated_on}: sales dated before activation are never received"
            )
        if message_id is not None:
            webhooks.record_message(session, client.client_id, message_id,
                                    sha256=hashlib.sha256(raw).hexdigest(), now=now)
        stored = ledger_inbox.store_closure(
            session, client.client_id, business_date=routing.business_date, raw=raw,
            closure_number=routing.number, establishment_id=routing.establishment_id,
            perpetual_total=routing.perpetual_total, now=now,
        )
    return Received(client.client_id, routing.business_date, stored.closure_id, stored.created,
                    stored.sha256)


@dataclass(frozen=True, slots=True)
class Admission:
    """``inbox``: the day's closure as the inbox holds it (``inbox.inbox_closure``), when
    ``claim_and_admit`` was asked to read it and the day was not refused."""

    client: ClientRecord
    settings: ClientSettings
    refusal: str | None
    inbox: ledger_inbox.InboxClosure | None = None


def claim_and_admit(engine: Engine, client: ClientRecord, business_date: date, *, run_id: str,
                    now: datetime, lease: timedelta,
                    read_inbox: bool = False) -> Admission | None:
    """``claim`` then ``admit`` in one transaction; None when another live run holds the day.

    A refused day is recorded and its claim let go of in this same transaction: the run has
    nothing more to do. ``read_inbox``: an admitted day's closure is read from the inbox in
    this transaction too, rather than in one more (``InboxSource``).
    """
    # Not durable (``transaction``): what it writes, a claim or a refusal, the day's next run
    # writes again if a power cut undoes it.
    with transaction(engine, durable=False) as db:
        # The settings first: they check the client, which the claim then needs not do.
        settings = clients.client_settings(db, client.client_id)
        if not ledger_claims.claim_day(db, client.client_id, business_date, run_id=run_id,
                                       now=now, lease=lease, client_checked=True):
            return None
        admission = _admit(db, client, settings, business_date, now=now,
                           flow_run_id=run_id)
        if read_inbox and admission.refusal is None:
            return replace(admission, inbox=ledger_inbox.inbox_closure(
                db, client.client_id, business_date))
        return admission


def _admit(db: Connection, client: ClientRecord, settings: ClientSettings,
           business_date: date, *, now: datetime, flow_run_id: str) -> Admission:
    """Whether the client's day may run; a refusal is recorded and the claim let go of."""
    reason = calendar.refusal(business_date, activated_on=client.activated_on,
                              timezone=client.timezone, now=now)
    if reason is not None:
        days.record_day(
            db, client.client_id, business_date, state="refused", error_category=None,
            messages=[refused("refused", "business_date", reason)], warnings=[],
            closure_id=None, flow_run_id=flow_run_id, now=now, release=flow_run_id,
        )
    return Admission(client, settings, reason)


def previous_closure(engine: Engine, client_id: str, establishment_id: str,
                     business_date: date) -> PreviousClosure | None:
    with transaction(engine) as db:
        return ledger_inbox.previous_closure(db, client_id, establishment_id, business_date)


def post(engine: Engine, client_id: str, business_date: date, *, closure_id: int, entry: Entry,
         matches: Sequence[MethodMatch], warnings: Sequence[Finding], now: datetime,
         flow_run_id: str | None = None, release: bool = False) -> PostResult:
    """Post the day's entry (reversing a different one already posted), in one transaction.

    For a client set up for Pennylane, the reversal and the entry written are queued in the
    outbox for Pennylane in this same transaction (``pennylane.store.enqueue_posted``).
    ``release``: the run ``flow_run_id`` lets go of its claim of the day in this transaction,
    as it commits: nothing is left for the run to do in the ledger once the day is posted.
    An open alert of the day (``flag``) is closed, and given back as ``result.resolved``.
    The client is one the ledger knows, as the day's run has claimed the day (an unknown one
    fails on the day row's foreign key). The ledger's part is ``journal.post_entry``, the one
    posting path; at ``mid_write`` the ledger is written and the outbox not yet.
    """
    with transaction(engine) as db:
        result = journal.post_entry(
            db, client_id, business_date, closure_id=closure_id, entry=entry, now=now,
            matches=matches, warnings=warnings, flow_run_id=flow_run_id, release=release,
            client_known=True,
        )
        checkpoints.reached("mid_write")
        pennylane_store.enqueue_posted(db, client_id, result, now=now)
        checkpoints.reached("before_commit")
    return result


@dataclass(frozen=True, slots=True)
class AlertChange:
    """What recording a day did to its alert (``flag``, ``post``).

    ``raised``: a new alert (Toporder is notified, the run emits the flagged event);
    ``repeated``: the day's open alert again, with the same findings (nobody is told twice);
    ``resolved``: the day is settled after an alert. ``alert`` is the alert concerned (for
    ``resolved`` and ``repeated``, the run that raised it)."""

    change: Literal["raised", "repeated", "resolved"]
    alert: days.Alert


def alert_key(outcome: Outcome, findings: Sequence[Finding]) -> str:
    """The fingerprint of an alert: its outcome and its errors, in no particular order."""
    errors = sorted((f.rule, f.field, f.message) for f in findings if f.is_error)
    text = json.dumps([outcome.name, errors], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def flag(engine: Engine, client_id: str, business_date: date, *, state: DayState,
         error_category: Category | None, findings: Sequence[Finding], closure_id: int | None,
         matches: Sequence[MethodMatch] = (), now: datetime,
         flow_run_id: str | None = None, release: bool = False) -> AlertChange | None:
    """Record a day that is not posted (flagged, missing, waiting, empty), with the methods it
    showed; what this did to the day's alert.

    A ``flagged`` or ``missing`` day raises an alert unless its open alert has the same
    outcome and errors (``alert_key``): a new alert gets its notification to Toporder written
    to the outbox in this same transaction (``notifications.enqueue_flagged``), both or
    neither; a repeated one gets none. An ``empty`` day resolves an open alert.
    ``release``: the run ``flow_run_id`` lets go of its claim of the day in this transaction.
    """
    with transaction(engine) as db:
        # The client's writers take turns (as posting does): the day's alert read here stays
        # the day's until this transaction ends.
        clients.lock_client(db, client_id)
        if matches:
            days.record_methods_seen(db, client_id, business_date, matches)
        # A day somebody must act on raises an alert (``outcome``'s table says who).
        recorded = Outcome.of_day(state, None if error_category is None
                                  else error_category.value, False)
        alerting = recorded if recorded is not None and recorded.needs_action else None
        previous = (days.day_alert(db, client_id, business_date)
                    if alerting is not None or state == "empty" else None)
        # record_day counts this run as one more attempt of the day, under the day's lock.
        attempt = days.record_day(
            db, client_id, business_date, state=state, error_category=error_category,
            messages=[f for f in findings if f.is_error],
            warnings=[f for f in findings if not f.is_error],
            closure_id=closure_id, flow_run_id=flow_run_id, now=now,
            release=flow_run_id if release else None,
        )
        if alerting is None:
            if state == "empty" and previous is not None and previous.key is not None:
                days.close_alert(db, client_id, business_date)
                return AlertChange("resolved", previous)
            return None
        key = alert_key(alerting, findings)
        if previous is not None and previous.key == key:
            return AlertChange("repeated", previous)
        days.open_alert(db, client_id, business_date, key=key, outcome=alerting.name,
                        run_id=flow_run_id)
        notifications.enqueue_flagged(db, client_id, business_date, state=state,
                                      category=error_category, findings=findings,
                                      attempt=attempt, now=now)
        return AlertChange("raised", days.Alert(key, alerting.name, flow_run_id))


def relink_run(engine: Engine, client_id: str, day: date, *, from_run: str,
               to_run: str) -> None:
    """The day recorded (and its alert raised) by run ``from_run`` now names ``to_run``: the
    flow run that stands for the day in the UI (a catch-up's day, run in a task run)."""
    with transaction(engine) as db:
        days.relink_run(db, client_id, day, from_run=from_run, to_run=to_run)


def claim(engine: Engine, client_id: str, day: date, *, run_id: str, now: datetime,
          lease: timedelta) -> bool:
    """Hold the client-day for flow run ``run_id`` until ``now + lease``, in a transaction of its
    own; False when another live run holds it (see ``claims.claim_day``)."""
    with transaction(engine) as db:
        return ledger_claims.claim_day(db, client_id, day, run_id=run_id, now=now,
                                       lease=lease)


def release(engine: Engine, client_id: str, day: date, *, run_id: str) -> None:
    """Let go of the client-day if ``run_id`` holds it (nothing happens otherwise)."""
    with transaction(engine) as db:
        ledger_claims.release_day(db, client_id, day, run_id=run_id)


def claim_of(engine: Engine, client_id: str, day: date) -> ledger_claims.Claim | None:
    """Who holds the client-day, if anyone (RefusedError for an unknown client)."""
    with transaction(engine) as db:
        return ledger_claims.day_claim(db, client_id, day)


def claims(engine: Engine, client_id: str | None = None) -> list[ledger_claims.Claim]:
    """The claimed client-days, lapsed claims included (``claims.claims``)."""
    with transaction(engine) as db:
        return ledger_claims.claims(db, client_id)


def free(engine: Engine, claim: ledger_claims.Claim, *, lapsed_by: datetime | None = None) -> bool:
    """Let go of ``claim`` for its run, found dead, or (``lapsed_by``) whose lease had run out by
    then; False when the run no longer holds the day, or renewed its lease meanwhile."""
    with transaction(engine) as db:
        return ledger_claims.release_day(db, claim.client_id, claim.business_date,
                                         run_id=claim.run_id, lapsed_by=lapsed_by)


class ClaimKeeper:
    """Renews a live run's claim of its client-day, every third of its lease, until stopped.

    A claim's lease is short (``day.CLAIM_LEASE``), so that a run killed without letting go
    (SIGKILL, a crashed worker) holds its day briefly; the run's process, while alive, keeps
    its claim from lapsing with this thread. The first renewal comes a third of a lease after
    the claim: a day that ends before (nearly all of them) costs a thread started and stopped,
    no transaction. Each renewal is one short transaction of its own, extending the lease only
    if the run still holds the day (``claims.renew_claim``): one that finds the claim gone
    (released by the run's last transaction, or taken over) stops renewing, and a renewal that
    fails (the ledger unreachable) is logged and tried again at the next one, never raised
    into the run. Renewals are due at fixed times from the claim, so that one waiting its turn
    for the ledger (SQLite's busy timeout) does not push the next ones back. A claim found
    taken over by another run (after a lapse, or freed by hand) is logged as a warning; one
    found let go of (the run's last transaction, just before the keeper was stopped) is not.
    """

    def __init__(self, engine: Engine, client_id: str, day: date, *, run_id: str,
                 now: Callable[[], datetime], lease: timedelta) -> None:
        self._renew = partial(self._renew_once, engine, client_id, day, run_id, now, lease)
        self._interval = lease.total_seconds() / 3
        self._stopped = threading.Event()
        self._what = f"{client_id} {day} (run {run_id})"
        self.renewals = 0
        self._thread = threading.Thread(target=self._keep, name=f"claim {client_id} {day}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No more renewals. One under way is waited for, a third of a lease at most: past
        that it may still commit, harmlessly (it renews only a claim the run still holds)."""
        self._stopped.set()
        self._thread.join(self._interval)

    def _keep(self) -> None:
        due = time.monotonic() + self._interval
        while not self._stopped.wait(max(0.0, due - time.monotonic())):
            due += self._interval
            try:
                held, holder = self._renew()
            except Exception as exc:  # the ledger did not answer: next time, maybe
                log.warning("claim of %s not renewed: %s", self._what, exc)
                continue
            if not held:
                if holder is not None:
                    log.warning("claim of %s lost: taken over by run %s; the run goes on, "
                                "no longer renewing it", self._what, holder)
                return
            self.renewals += 1

    @staticmethod
    def _renew_once(engine: Engine, client_id: str, day: date, run_id: str,
                    now: Callable[[], datetime], lease: timedelta) -> tuple[bool, str | None]:
        """Whether the run still held the day (now renewed), and which run holds it."""
        with transaction(engine, durable=False) as db:
            if ledger_claims.renew_claim(db, client_id, day, run_id=run_id, now=now(),
                                         lease=lease):
                return True, run_id
            claim = ledger_claims.day_claim(db, client_id, day)
            return False, None if claim is None else claim.run_id
