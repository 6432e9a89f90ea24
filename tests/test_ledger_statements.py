"""What one client-day costs the ledger: a budget of SQL statements and transactions.

At fleet scale (10,000 client-days each morning) the database chatter of a client-day is a
large share of its CPU, so ``run_day`` is held to a budget, counted on SQLite with event
listeners (every statement SQLAlchemy executes, and every commit; each transaction's
``BEGIN IMMEDIATE`` is sent by the dialect itself, one per transaction, and not counted):

* a posted day: claim and admission with the inbox's closure and the previous one, then the
  posting, which lets go of the claim: 2 transactions, 10 statements whatever the number of
  entry lines (they are inserted in one executemany); an identical rerun: 2 transactions,
  8 statements;
* a flagged day: 2 transactions, 9 statements (recording it lets go of the claim);
* a refused day: 1 transaction, 3 statements;
* a source other than the inbox is read in a transaction of its own: a posted day then takes
  3 transactions, 10 statements;
* reading a client and its source before its run (``client_and_source``): 1 transaction,
  1 statement.

The claim must still always be let go of, also when the posting raises.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from toporder_sync import service
from toporder_sync.core.errors import RefusedError
from toporder_sync.day import DayResult, client_and_source, client_record, run_day
from toporder_sync.ledger.clients import activate_client, get_client
from toporder_sync.ledger.db import make_engine, session_scope
from toporder_sync.ledger.tables import ClientDayRow
from toporder_sync.outcome import Outcome
from toporder_sync.simulator import dumps, generate_series
from toporder_sync.sources import ClosureSource, FetchedClosure, InboxSource

START = date(2026, 11, 2)
NOW = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)
CLIENT = "budget-bistro"


@dataclass
class Counter:
    statements: list[str] = field(default_factory=list)
    commits: int = 0

    def reset(self) -> None:
        self.statements.clear()
        self.commits = 0


@pytest.fixture
def ledger(migrated_sqlite: Path, tmp_path: Path) -> Iterator[Engine]:
    """A SQLite ledger with CLIENT and the closures of its first three days (the third one
    with a wrong period total, which flags the day)."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(migrated_sqlite, path)
    engine = make_engine(f"sqlite:///{path}")
    with session_scope(engine) as session:
        client = activate_client(session, CLIENT, name="Budget Bistro", activated_on=START,
                                 now=NOW)
    closures = [json.loads(dumps(closure)) for closure in generate_series(
        integration_id=client.integration_id, establishment_id="est-1",
        establishment_name="Budget Bistro", start=START, days=3)]
    closures[2]["closure"]["grand_total"]["period"] = "1.00"
    for number, closure in enumerate(closures):
        service.receive(engine, json.dumps(closure).encode(), f"day-{number}.json", now=NOW)
    yield engine
    engine.dispose()


@pytest.fixture
def counter(ledger: Engine) -> Iterator[Counter]:
    counted = Counter()

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        counted.statements.append(text)

    def commit(_conn: Any) -> None:
        counted.commits += 1

    event.listen(ledger, "before_cursor_execute", statement)
    event.listen(ledger, "commit", commit)
    yield counted
    event.remove(ledger, "before_cursor_execute", statement)
    event.remove(ledger, "commit", commit)


def _within(counter: Counter, statements: int, transactions: int) -> None:
    assert len(counter.statements) <= statements, counter.statements
    assert counter.commits <= transactions, counter.statements


def _run(ledger: Engine, counter: Counter, day: date, run_id: str,
         source: ClosureSource | None = None) -> DayResult:
    client = client_record(ledger, CLIENT)
    counter.reset()
    return run_day(ledger, client, day, source=source or InboxSource(ledger), run_id=run_id,
                   now=lambda: NOW)


@dataclass(frozen=True)
class ElsewhereSource:
    """A source that is not the inbox (as the pull source is not), answering from it."""

    inbox: InboxSource

    def fetch(self, client_id: str, business_date: date) -> FetchedClosure | None:
        return self.inbox.fetch(client_id, business_date)


def _claim(ledger: Engine, day: date) -> tuple[str | None, datetime | None]:
    with session_scope(ledger) as session:
        row = session.get(ClientDayRow, (CLIENT, day))
        assert row is not None
        return row.claimed_by, row.claimed_until


def test_a_posted_day_an_identical_rerun_and_a_flagged_day_keep_to_the_budget(
    ledger: Engine, counter: Counter
) -> None:
    posted = _run(ledger, counter, START, "run-1")
    assert posted.outcome.kind == "posted" and posted.posted is not None
    assert posted.posted.status == "posted" and posted.entry is not None
    assert len(posted.entry.lines) > 3, "the budget does not grow with the entry lines"
    _within(counter, 10, 2)
    assert sum("INSERT INTO entry_lines" in s for s in counter.statements) == 1
    assert _claim(ledger, START) == (None, None)

    rerun = _run(ledger, counter, START, "run-2")
    assert rerun.posted is not None and rerun.posted.status == "unchanged"
    _within(counter, 8, 2)
    assert _claim(ledger, START) == (None, None)

    # A flagged day reads its alert and raises a new one (two statements more than before the
    # alerts were kept); flagged again alike, it raises none and writes no notification.
    flagged = _run(ledger, counter, START + timedelta(days=2), "run-3")
    assert flagged.outcome.kind == "flagged"
    _within(counter, 11, 2)
    assert _claim(ledger, START + timedelta(days=2)) == (None, None)
    again = _run(ledger, counter, START + timedelta(days=2), "run-4")
    assert again.alert is not None and again.alert.change == "repeated"
    _within(counter, 9, 2)


def test_a_refused_day_costs_one_transaction(ledger: Engine, counter: Counter) -> None:
    refused = _run(ledger, counter, START - timedelta(days=1), "run-1")
    assert refused.outcome.kind == "refused"
    _within(counter, 3, 1)
    assert _claim(ledger, START - timedelta(days=1)) == (None, None)


def test_the_claim_is_let_go_of_when_the_posting_raises(
    ledger: Engine, counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the posting broke")

    monkeypatch.setattr(service, "post", broken)
    failed = _run(ledger, counter, START, "run-1")  # recorded as an internal error
    assert failed.outcome is Outcome.UNEXPECTED_ERROR and isinstance(failed.error, RuntimeError)
    assert _claim(ledger, START) == (None, None)
    monkeypatch.undo()
    again = _run(ledger, counter, START, "run-2")
    assert again.posted is not None and again.posted.status == "posted"


def test_a_source_other_than_the_inbox_is_read_in_a_transaction_of_its_own(
    ledger: Engine, counter: Counter
) -> None:
    source = ElsewhereSource(InboxSource(ledger))
    posted = _run(ledger, counter, START, "run-1", source)
    assert posted.posted is not None and posted.posted.status == "posted"
    _within(counter, 10, 3)
    assert _claim(ledger, START) == (None, None)
    inbox = _run(ledger, counter, START, "run-2")
    assert inbox.posted is not None and inbox.posted.status == "unchanged"
    assert inbox.entry == posted.entry and inbox.findings == posted.findings
    flagged = _run(ledger, counter, START + timedelta(days=2), "run-3", source)
    assert flagged.outcome.kind == "flagged"
    _within(counter, 11, 3)


def test_a_client_and_its_source_are_read_in_one_statement(
    ledger: Engine, counter: Counter
) -> None:
    counter.reset()
    client, source = client_and_source(ledger, CLIENT)
    _within(counter, 1, 1)
    assert isinstance(source, InboxSource)
    with session_scope(ledger) as session:
        assert client == get_client(session, CLIENT)
    assert client_record(ledger, CLIENT) == client
    with pytest.raises(RefusedError, match="unknown client 'nobody'"):
        client_and_source(ledger, "nobody")
