"""``toporder-sync pennylane push``: one client's entries of some days, sent now.

Promises:

* Only that client's entries of those days are queued and sent (``outbox.deliver`` by event
  id, through the client's own token); other clients' messages are left to the relay.
* Now: a message waiting for its next attempt is sent at once; one given up on (dead) is put
  back with a fresh budget first (after a fix on the Pennylane side). A message another relay
  holds at this moment is left to it, and the push waits for its verdict.
* In ledger order: the day's entries go oldest first, and one that must wait for an earlier
  entry of its day goes in the same pass once that one is in (``sink``).
* A pass that leaves entries unpushed is followed by another after ``PUSH_RETRY``'s wait,
  never shorter than a ``Retry-After`` Pennylane gave; a wait beyond its patience, or
  running out of passes, ends the push with what is still missing. An entry Pennylane refused
  (dead) is not sent again by the same push: it needs a fix first. The rate limit of the
  token is the client's, shared with every other process using the token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Engine

from toporder_sync import outbox
from toporder_sync.core.errors import ToporderSyncError
from toporder_sync.ledger.db import session_scope
from toporder_sync.pennylane import TOPIC, store
from toporder_sync.pennylane.store import PushStatus
from toporder_sync.retrying import RetryPolicy

# Passes of one push, and the waits between them: a few seconds, then a Retry-After up to a
# minute; a longer wait is left to the relay (the command says so and exits 1).
PUSH_RETRY = RetryPolicy(attempts=6, backoff=1.0, max_backoff=8.0, patience=60.0)


@dataclass(frozen=True, slots=True)
class PushReport:
    """What a push did, and where each entry of the range stands afterwards."""

    queued: int
    sent_again: int
    passes: int
    statuses: list[PushStatus]
    wait: float | None = None  # the Retry-After (seconds) that ended the push, if one did

    @property
    def missing(self) -> list[PushStatus]:
        return [s for s in self.statuses if s.state != "pushed"]


class _NotAllPushed(ToporderSyncError):
    """A pass left entries pending; ``retry_after``: the longest wait Pennylane asked for."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("entries left to push")
        self.retry_after = retry_after


def push_range(engine: Engine, client_id: str, date_from: date, date_to: date,
               handler: outbox.Handler, *, now: Callable[[], datetime],
               sleep: Callable[[float], None] = time.sleep,
               policy: RetryPolicy = PUSH_RETRY) -> PushReport:
    """Queue CLIENT's entries of those days not yet queued, put back those given up on, and
    deliver every one now (see the module docstring)."""
    with session_scope(engine) as session:
        queued = store.enqueue_entries(
            session, client_id, store.entries_to_queue(session, client_id, date_from, date_to),
            now=now())
        again = outbox.retry(session, event_ids=store.unpushed(
            session, client_id, date_from, date_to, message="dead"), now=now())
    passes = 0

    def one_pass() -> None:
        nonlocal passes
        waiting = _on_their_way(engine, client_id, date_from, date_to)
        if not waiting:
            return
        passes += 1
        deliveries = outbox.deliver(engine, {TOPIC: handler}, waiting, now=now)
        if _on_their_way(engine, client_id, date_from, date_to):
            asked = [d.retry_after.total_seconds() for d in deliveries
                     if d.outcome == "retried" and d.retry_after is not None]
            raise _NotAllPushed(max(asked, default=None))

    wait: float | None = None
    try:
        policy.retrying(_NotAllPushed, sleep=sleep)(one_pass)
    except _NotAllPushed as exc:
        wait = exc.retry_after
    with session_scope(engine) as session:
        statuses = store.push_statuses(session, client_id, date_from=date_from, date_to=date_to)
    return PushReport(queued=len(queued), sent_again=len(again), passes=passes,
                      statuses=statuses, wait=wait)


def _on_their_way(engine: Engine, client_id: str, date_from: date, date_to: date) -> list[str]:
    with session_scope(engine) as session:
        return store.unpushed(session, client_id, date_from, date_to, message="pending")

