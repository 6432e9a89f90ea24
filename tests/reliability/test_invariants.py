"""The invariants themselves are tested: each breach planted by hand is found, by its kind.

These breaches are deliberate, so they are checked here and never added to the tally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.orm import Session

from reliability import invariants, support
from toporder_sync.ledger.db import make_engine, session_scope, upgrade
from toporder_sync.ledger.tables import (
    ClientDayRow,
    ClosureRow,
    EntryLineRow,
    EntryRow,
    OutboxRow,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'invariants.db'}")
    upgrade(engine)
    client = support.activate(engine, "planted")
    for n, faults in enumerate((frozenset(), frozenset({"unbalanced"}))):
        support.receive(engine, support.closure(client, support.DAYS[n], number=n + 1,
                                                faults=faults, venue="shop"))
        support.run(engine, client, support.DAYS[n], run_id=f"r{n}")
    yield engine
    engine.dispose()


def _without_guards(session: Session) -> None:
    """Drop the triggers that keep entries, lines and closures immutable: a breach needs to
    get past them (that they refuse such writes is itself a guarantee, tested elsewhere)."""
    names = session.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    for (name,) in list(names):
        session.execute(text(f'DROP TRIGGER "{name}"'))


def _unbalance(session: Session) -> None:
    _without_guards(session)
    line = session.scalars(select(EntryLineRow).limit(1)).one()
    line.debit += Decimal("0.01")


def _drop_lines(session: Session) -> None:
    _without_guards(session)
    session.execute(delete(EntryLineRow))


def _unpoint(session: Session) -> None:
    session.execute(update(ClientDayRow).where(ClientDayRow.state == "posted")
                    .values(entry_id=None))


def _drop_notification(session: Session) -> None:
    session.execute(delete(OutboxRow))


def _tamper_raw(session: Session) -> None:
    _without_guards(session)
    closure = session.scalars(select(ClosureRow).limit(1)).one()
    closure.raw = closure.raw + b" "


def _second_entry(session: Session) -> None:
    entry = session.scalars(select(EntryRow).limit(1)).one()
    copy = EntryRow(client_id=entry.client_id, business_date=entry.business_date,
                    journal=entry.journal, journal_label=entry.journal_label,
                    number=entry.number + 1, piece_ref=entry.piece_ref, label=entry.label,
                    kind="entry", revision=2, closure_id=entry.closure_id, reverses_id=None,
                    posted_at=entry.posted_at,
                    lines=[EntryLineRow(line_no=ln.line_no, account=ln.account,
                                        account_label=ln.account_label, label=ln.label,
                                        debit=ln.debit, credit=ln.credit)
                           for ln in entry.lines])
    session.add(copy)


def _unsettle(session: Session) -> None:
    session.execute(update(ClientDayRow).values(state="received"))


@pytest.mark.parametrize(("breach", "kind"), [
    (_unbalance, "unbalanced"),
    (_drop_lines, "partial"),
    (_unpoint, "partial"),
    (_drop_notification, "partial"),
    (_tamper_raw, "lost"),
    (_second_entry, "double_posted"),
    (_unsettle, "lost"),
])
def test_a_planted_breach_is_found(ledger: Engine, breach: Callable[[Session], None],
                                   kind: str) -> None:
    assert not invariants.check(ledger), "the ledger starts sound"
    with session_scope(ledger) as session:
        breach(session)
    found = invariants.check(ledger)
    assert found.found.get(kind), found.describe()
