"""The invariants every attack of the reliability suite is judged by, written once.

``check(engine)`` reads the whole ledger and returns the violations it finds, by kind:

* ``unbalanced``: a stored entry whose debits and credits differ (by even one cent);
* ``lost``: a received closure whose raw bytes no longer hash to their sha256, a closure the
  test delivered that is not in the inbox, a day with a closure that was never settled, or a
  day whose ledger is not what ``core.pipeline.process`` builds from its latest closure;
* ``double_posted``: a day with more live entries than one, an entry reversed twice, an
  entry number used twice, or a replacement identical to the entry it replaced;
* ``partial``: an entry without lines, a posted day without its entry, a flagged or missing
  day without an open alert whose notification is in the outbox.

``check_and_record`` adds the violations to the tally (``tally.py``) and returns them, so that
the zeros of ``make reliability`` are counted, not printed.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from itertools import pairwise

from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload

from toporder_sync import notifications
from toporder_sync.core import pipeline
from toporder_sync.core.errors import Category
from toporder_sync.ledger import clients as ledger_clients
from toporder_sync.ledger import inbox, journal
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import (
    ClientDayRow,
    ClientRow,
    ClosureRow,
    EntryRow,
    OutboxRow,
)

# How a violation kind counts in the final line of ``make reliability``.
FINAL_KIND = {
    "lost": "lost",
    "double_posted": "double_posted",
    "partial": "partial_writes",
    "unbalanced": "partial_writes",
}


@dataclass
class Violations:
    found: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, message: str) -> None:
        self.found[kind].append(message)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.found.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def describe(self) -> str:
        return "\n".join(f"{kind}: {message}" for kind, items in self.found.items()
                         for message in items)


def _lines_key(row: EntryRow) -> tuple[tuple[str, str, str, Decimal, Decimal], ...]:
    return tuple((ln.account, ln.account_label, ln.label, ln.debit, ln.credit)
                 for ln in row.lines)


def check(engine: Engine, *, delivered: Iterable[tuple[str, bytes]] = (),
          only: Iterable[tuple[str, date]] | None = None,
          pending: Iterable[tuple[str, date]] = ()) -> Violations:
    """Every invariant over the whole ledger; ``delivered``: (client, raw) accepted by receive.

    The day-by-day comparison with ``core.pipeline.process`` (the costly part: it validates
    the closure again) is limited to the client-days ``only`` when given; every other check
    always covers the whole ledger. ``pending``: client-days that received a new closure
    since their last run, which are not expected to be settled yet.
    """
    scope = None if only is None else set(only)
    unsettled = set(pending)
    found = Violations()
    with session_scope(engine) as session:
        clients = {row.client_id: row for row in session.scalars(select(ClientRow))}
        closures = list(session.scalars(select(ClosureRow)))
        entries = list(session.scalars(select(EntryRow).options(selectinload(EntryRow.lines))
                                       .order_by(EntryRow.client_id, EntryRow.number)))
        days = {(d.client_id, d.business_date): d for d in session.scalars(select(ClientDayRow))}
        notified: dict[tuple[str, date | None], list[OutboxRow]] = defaultdict(list)
        for message in session.scalars(select(OutboxRow)):
            notified[(message.client_id, message.business_date)].append(message)

        stored = {(c.client_id, c.sha256) for c in closures}
        for closure in closures:
            if hashlib.sha256(closure.raw).hexdigest() != closure.sha256:
                found.add("lost", f"closure #{closure.id}: raw bytes do not match their sha256")
        for client_id, raw in delivered:
            if (client_id, hashlib.sha256(raw).hexdigest()) not in stored:
                found.add("lost", f"{client_id}: a delivered closure is not in the inbox")

        by_id = {e.id: e for e in entries}
        numbers = Counter((e.client_id, e.journal, e.number) for e in entries)
        for key, count in numbers.items():
            if count > 1:
                found.add("double_posted", f"entry number {key} used {count} times")
        reversed_ids = Counter(e.reverses_id for e in entries if e.reverses_id is not None)
        for entry_id, count in reversed_ids.items():
            if count > 1:
                found.add("double_posted", f"entry #{entry_id} reversed {count} times")
        by_day: dict[tuple[str, object], list[EntryRow]] = defaultdict(list)
        for entry in entries:
            by_day[(entry.client_id, entry.business_date)].append(entry)
            if not entry.lines:
                found.add("partial", f"entry #{entry.id} has no lines")
            debit = sum((ln.debit for ln in entry.lines), Decimal(0))
            credit = sum((ln.credit for ln in entry.lines), Decimal(0))
            if debit != credit:
                found.add("unbalanced", f"entry #{entry.id}: debit {debit} ≠ credit {credit}")
            if entry.kind == "reversal":
                original = by_id.get(entry.reverses_id or -1)
                if original is None or original.kind != "entry" or (
                        original.client_id, original.business_date) != (
                        entry.client_id, entry.business_date):
                    found.add("partial", f"reversal #{entry.id} reverses no entry of its day")

        for (client_id, day), day_entries in by_day.items():
            row = days.get((client_id, day))
            live = [e for e in day_entries if e.kind == "entry" and e.id not in reversed_ids]
            if len(live) > 1:
                found.add("double_posted", f"{client_id} {day}: {len(live)} live entries")
            if row is None or (live and row.entry_id != live[0].id):
                found.add("partial", f"{client_id} {day}: the day does not point at its entry")
            originals = [e for e in day_entries if e.kind == "entry"]
            for before, after in pairwise(originals):
                if before.closure_id == after.closure_id and \
                        _lines_key(before) == _lines_key(after):
                    found.add("double_posted", f"{client_id} {day}: entry #{after.id} repeats "
                                               f"#{before.id}")
            net: Counter[str] = Counter()
            for entry in day_entries:
                for ln in entry.lines:
                    net[ln.account] += ln.debit - ln.credit
            expected: Counter[str] = Counter()
            for entry in live:
                for ln in entry.lines:
                    expected[ln.account] += ln.debit - ln.credit
            if {k: v for k, v in net.items() if v} != {k: v for k, v in expected.items() if v}:
                found.add("double_posted", f"{client_id} {day}: net effect is not one entry")

        days_with_closures = {(c.client_id, c.business_date) for c in closures}
        for (client_id, day), row in days.items():
            if row.state == "posted" and (row.entry_id is None or row.entry_id not in by_id):
                found.add("partial", f"{client_id} {day}: posted without an entry")
            # A flagged or missing day holds an open alert, of which Toporder was notified
            # by the run that raised it (a later run flagging it alike notifies nobody).
            if row.state in notifications.NOTIFIED_STATES and not (
                    row.alert_key is not None and any(
                        message.payload["data"]["state"] == row.state
                        and message.event_id == notifications.event_id(
                            clients[client_id].integration_id, day, row.state,
                            message.payload["data"]["attempt"])
                        for message in notified[(client_id, day)])):
                found.add("partial", f"{client_id} {day}: {row.state} without its "
                                     "notification in the outbox")
        for client_id, day in sorted(days_with_closures):
            if (scope is not None and (client_id, day) not in scope) or \
                    (client_id, day) in unsettled:
                continue
            row = days.get((client_id, day))
            if row is None or row.state in ("received", "waiting", "missing"):
                found.add("lost", f"{client_id} {day}: a closure was received, the day is "
                                  f"{None if row is None else row.state}")
                continue
            if row.state == "refused":
                continue
            _check_day(session, found, clients[client_id], row, by_id)
    return found


def _check_day(session: object, found: Violations, client: ClientRow, row: ClientDayRow,
               by_id: dict[int, EntryRow]) -> None:
    """The day's ledger equals what the pipeline makes of its latest closure."""
    from sqlalchemy.orm import Session
    assert isinstance(session, Session)
    client_id, day = client.client_id, row.business_date
    latest = inbox.latest_closure(session, client_id, day)
    assert latest is not None
    settings = ledger_clients.client_settings(session, client_id)
    document_est = session.get(ClosureRow, latest.id)
    previous = None
    if document_est is not None and document_est.establishment_id is not None:
        previous = inbox.previous_closure(session, client_id,
                                          document_est.establishment_id, day)
    outcome = pipeline.process(latest.raw, "invariant check", settings,
                               integration_id=client.integration_id, previous=previous)
    where = f"{client_id} {day}"
    if outcome.entry is not None and outcome.entry.lines:
        live = by_id.get(row.entry_id or -1)
        if row.state != "posted" or live is None or live.closure_id != latest.id:
            found.add("lost", f"{where}: the latest closure #{latest.id} is valid but the day "
                              f"is {row.state} with entry {row.entry_id}")
            return
        if journal.current_entry(session, client_id, day) is None or \
                journal.current_entry(session, client_id, day).entry != outcome.entry:  # type: ignore[union-attr]
            found.add("lost", f"{where}: the live entry differs from the latest closure's")
    elif outcome.entry is not None:
        if row.state != "empty":
            found.add("lost", f"{where}: an empty closure left the day {row.state}")
    else:
        category = outcome.category
        if row.state != "flagged" or category is None or row.error_category != category.value:
            found.add("lost", f"{where}: an invalid closure left the day {row.state} "
                              f"({row.error_category}), expected flagged ({category})")
        # A POS error: nothing may have been posted from that closure. A ledger-side error
        # (a mapping changed since) may leave live the entry posted from it before.
        live = by_id.get(row.entry_id or -1)
        if live is not None and live.closure_id == latest.id and category is Category.POS:
            found.add("lost", f"{where}: an entry was posted from the invalid latest closure")
