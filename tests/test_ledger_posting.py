"""Posting entries: posted, unchanged, replaced by a reversal; numbers, money and history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from conftest import CORRECTED
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from toporder_sync.core.errors import Category, RefusedError, ledger_error, pos_error, warning
from toporder_sync.core.model import Entry, EntryLine, MatchRule, MethodMatch
from toporder_sync.core.money import MoneyTypeError
from toporder_sync.ledger.claims import claim_day, day_claim
from toporder_sync.ledger.days import (
    Alert,
    DayRecord,
    DayStatus,
    MethodSeen,
    day_statuses,
    list_methods,
    open_alert,
    record_day,
    record_methods_seen,
)
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.inbox import StoreResult
from toporder_sync.ledger.journal import (
    PostResult,
    StoredEntry,
    current_entry,
    entries_between,
    lock_client_day,
    post_entry,
)

DAY = date(2026, 11, 27)



def _post(
    engine: Engine, client_id: str, closure_id: int, entry: Entry, now: datetime
) -> PostResult:
    """Post through ``post_entry``, the ledger's part of ``service.post``."""
    with session_scope(engine) as session:
        return post_entry(
            session, client_id, entry.date, closure_id=closure_id, entry=entry, now=now
        )


def _entries(engine: Engine, client_id: str) -> list[StoredEntry]:
    with session_scope(engine) as session:
        return entries_between(session, client_id, date(2026, 1, 1), date(2026, 12, 31))


def _swapped(entry: Entry) -> tuple[EntryLine, ...]:
    return tuple(
        EntryLine(line.account, line.account_label, line.label, line.credit, line.debit)
        for line in entry.lines
    )


def test_lock_client_day_creates_a_received_day(
    engine: Engine, client_id: str, now: datetime
) -> None:
    with session_scope(engine) as session:
        day = lock_client_day(session, client_id, DAY, now=now)
        assert day == DayRecord(client_id, DAY, "received", None, None, 0)
        assert lock_client_day(session, client_id, DAY, now=now) == day


def test_lock_client_day_of_an_unknown_client_is_refused(engine: Engine, now: datetime) -> None:
    with pytest.raises(RefusedError), session_scope(engine) as session:
        lock_client_day(session, "nobody", DAY, now=now)


def test_a_first_closure_is_posted_as_entry_number_one(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    closure = store(b"Z412")
    entry = make_entry()
    result = _post(engine, client_id, closure.closure_id, entry, now)
    assert (result.status, result.reversal_id, result.number) == ("posted", None, 1)
    with session_scope(engine) as session:
        stored = current_entry(session, client_id, DAY)
        assert stored == StoredEntry(
            id=result.entry_id,
            number=1,
            kind="entry",
            posted_at=now,
            closure_id=closure.closure_id,
            reverses_number=None,
            entry=entry,
        )
        # Posting is one more attempt of the day.
        assert lock_client_day(session, client_id, DAY, now=now) == DayRecord(
            client_id, DAY, "posted", closure.closure_id, result.entry_id, 1
        )


def test_posting_records_the_day_closes_its_alert_and_releases_its_claim(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    closure = store(b"Z412")
    note = warning("unmapped_method", "payments[3].method", "'Lydia' went to 471000")
    lydia = MethodMatch("Lydia", "471000", MatchRule.FALLBACK)
    with session_scope(engine) as session:
        assert claim_day(session, client_id, DAY, run_id="run-1", now=now,
                         lease=timedelta(minutes=5))
        open_alert(session, client_id, DAY, key="k", outcome="POS_DATA_ERROR", run_id="run-0")
    with session_scope(engine) as session:
        result = post_entry(session, client_id, DAY, closure_id=closure.closure_id,
                            entry=make_entry(), now=now, matches=[lydia], warnings=[note],
                            flow_run_id="run-1", release=True)
    assert result.resolved == Alert("k", "POS_DATA_ERROR", "run-0")
    with session_scope(engine) as session:
        [status] = day_statuses(session, client_id)
        assert (status.state, status.warnings, status.flow_run_id, status.attempts,
                status.entry_number) == ("posted", (note,), "run-1", 1, result.number)
        assert status.alert == Alert(None, "POS_DATA_ERROR", "run-0")
        assert day_claim(session, client_id, DAY) is None
        assert [m.name for m in list_methods(session, client_id)] == ["Lydia"]


def test_posting_the_same_closure_again_changes_nothing(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    closure = store(b"Z412")
    first = _post(engine, client_id, closure.closure_id, make_entry(), now)
    again = _post(engine, client_id, closure.closure_id, make_entry(), now + timedelta(hours=1))
    assert again == PostResult("unchanged", first.entry_id, None, 1)
    assert [stored.number for stored in _entries(engine, client_id)] == [1]


def test_a_new_closure_replaces_the_entry_with_a_reversal_then_the_new_entry(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    original, corrected = make_entry(), make_entry(lines=CORRECTED)
    first = _post(engine, client_id, store(b"Z412").closure_id, original, now)
    later = now + timedelta(days=1)
    second_closure = store(b"Z412 corrected", now=later)
    second = _post(engine, client_id, second_closure.closure_id, corrected, later)
    assert (second.status, second.number) == ("replaced", 3)
    stored = _entries(engine, client_id)
    assert [(s.number, s.kind, s.reverses_number) for s in stored] == [
        (1, "entry", None),
        (2, "reversal", 1),
        (3, "entry", None),
    ]
    reversal = stored[1]
    assert reversal.id == second.reversal_id
    assert reversal.closure_id == stored[0].closure_id
    assert reversal.posted_at == later
    assert reversal.entry == Entry(
        journal="VT",
        journal_label="Journal des ventes",
        date=DAY,
        piece_ref="Z412",
        label=f"Extourne de l'écriture n°1 - {original.label}",
        lines=_swapped(original),
    )
    assert reversal.entry.is_balanced
    assert stored[2].entry == corrected
    assert stored[0].entry == original, "the reversed entry itself is untouched"
    with session_scope(engine) as session:
        current = current_entry(session, client_id, DAY)
    assert current is not None and current.id == second.entry_id == stored[2].id
    assert first.entry_id == stored[0].id


def test_entry_numbers_are_gapless_across_days_and_replacements(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    statuses = []
    for offset in range(4):
        day = DAY + timedelta(days=offset)
        closure = store(f"Z{412 + offset}".encode(), business_date=day)
        statuses.append(
            _post(engine, client_id, closure.closure_id, make_entry(day, 412 + offset), now).status
        )
        if offset % 2:
            resent = store(f"Z{412 + offset} again".encode(), business_date=day)
            statuses.append(
                _post(
                    engine, client_id, resent.closure_id, make_entry(day, 412 + offset), now
                ).status
            )
    assert statuses == ["posted", "posted", "replaced", "posted", "posted", "replaced"]
    assert [stored.number for stored in _entries(engine, client_id)] == list(range(1, 9))


def test_a_reversed_closure_sent_again_replaces_the_correction(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    first = store(b"Z412")
    _post(engine, client_id, first.closure_id, make_entry(), now)
    _post(engine, client_id, store(b"Z412 corrected").closure_id, make_entry(lines=CORRECTED), now)
    back = _post(engine, client_id, first.closure_id, make_entry(), now)
    assert back.status == "replaced"
    assert [(s.number, s.kind, s.reverses_number) for s in _entries(engine, client_id)] == [
        (1, "entry", None), (2, "reversal", 1), (3, "entry", None), (4, "reversal", 3),
        (5, "entry", None)]


def test_the_same_closure_with_another_entry_is_replaced(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    # A mapping fixed after the day was posted: same closure, other accounts.
    closure = store(b"Z412")
    _post(engine, client_id, closure.closure_id, make_entry(), now)
    again = _post(engine, client_id, closure.closure_id, make_entry(lines=CORRECTED), now)
    assert again.status == "replaced" and again.number == 3
    assert _post(engine, client_id, closure.closure_id, make_entry(lines=CORRECTED),
                 now).status == "unchanged"


def test_the_database_refuses_a_second_entry_of_the_same_revision(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    closure = store(b"Z412")
    _post(engine, client_id, closure.closure_id, make_entry(), now)
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.execute(
            text(
                "INSERT INTO entries (client_id, business_date, journal, journal_label, number, "
                "piece_ref, label, kind, revision, closure_id, posted_at) VALUES (:client, :day,"
                " 'VT', 'Journal des ventes', 2, 'Z412', 'again', 'entry', 1, :closure, :now)"
            ),
            {"client": client_id, "day": DAY, "closure": closure.closure_id, "now": now},
        )


def _unbalanced() -> tuple[tuple[str, str, str, str], ...]:
    return (("511500", "CB", "10.00", "0.00"), ("706100", "Ventes", "0.00", "9.99"))


@pytest.mark.parametrize(
    ("entry_date", "lines", "message"),
    [
        (DAY, _unbalanced(), "not balanced"),
        (DAY, (), "no lines"),
        (DAY + timedelta(days=1), None, "cannot be posted on"),
    ],
)
def test_an_entry_that_cannot_be_posted_is_refused_before_writing(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
    entry_date: date,
    lines: tuple[tuple[str, str, str, str], ...] | None,
    message: str,
) -> None:
    closure = store(b"Z412")
    entry = make_entry(entry_date) if lines is None else make_entry(lines=lines)
    with pytest.raises(ValueError, match=message), session_scope(engine) as session:
        post_entry(session, client_id, DAY, closure_id=closure.closure_id, entry=entry, now=now)
    assert _entries(engine, client_id) == []


def test_a_closure_of_another_day_is_refused(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    other_day = store(b"Z411", business_date=DAY - timedelta(days=1))
    with pytest.raises(ValueError, match="is not a closure of"):
        _post(engine, client_id, other_day.closure_id, make_entry(), now)


@pytest.mark.parametrize(
    "amount",
    ["0.01", "0.10", "1.00", "1234567.89", "999999999999.99", "100000000000.01", "70.3"],
)
def test_amounts_come_back_as_the_exact_decimals_posted(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
    amount: str,
) -> None:
    closure = store(b"Z412", perpetual_total=amount)
    lines = (("511500", "CB", amount, "0.00"), ("706100", "Ventes", "0.00", amount))
    _post(engine, client_id, closure.closure_id, make_entry(lines=lines), now)
    (stored,) = _entries(engine, client_id)
    for line in stored.entry.lines:
        for value in (line.debit, line.credit):
            assert type(value) is Decimal
            assert value.as_tuple().exponent == -2
    assert [(line.debit, line.credit) for line in stored.entry.lines] == [
        (Decimal(amount), Decimal("0.00")),
        (Decimal("0.00"), Decimal(amount)),
    ]
    assert str(stored.entry.lines[0].debit) == str(Decimal(amount).quantize(Decimal("0.01")))


@pytest.mark.parametrize(
    "amount",
    [1.5, Decimal("1.005"), Decimal("1000000000000.00"), Decimal("NaN"), Decimal("-Infinity")],
)
def test_a_float_or_inexact_amount_never_reaches_a_money_column(
    engine: Engine, client_id: str, store: Callable[..., StoreResult], amount: object
) -> None:
    with pytest.raises(StatementError) as raised:
        store(b"Z412", perpetual_total=amount)
    assert isinstance(raised.value.orig, MoneyTypeError)
    assert _entries(engine, client_id) == []


def test_an_entry_line_with_sub_cent_amounts_is_rejected(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    closure = store(b"Z412")
    lines = (("511500", "CB", "10.005", "0.00"), ("706100", "Ventes", "0.00", "10.005"))
    with pytest.raises(StatementError) as raised:
        _post(engine, client_id, closure.closure_id, make_entry(lines=lines), now)
    assert isinstance(raised.value.orig, MoneyTypeError)
    assert _entries(engine, client_id) == []


@pytest.mark.parametrize("table", ["closures", "entries", "entry_lines"])
@pytest.mark.parametrize("statement", ["UPDATE {table} SET id = id", "DELETE FROM {table}"])
def test_the_inbox_and_posted_entries_cannot_be_changed(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
    table: str,
    statement: str,
) -> None:
    closure = store(b"Z412")
    _post(engine, client_id, closure.closure_id, make_entry(), now)
    refused = pytest.raises(DBAPIError, match="never updated or deleted")
    with refused, session_scope(engine) as session:
        session.execute(text(statement.format(table=table)))


def test_methods_seen_remember_first_and_last_day_and_the_latest_routing(
    engine: Engine, client_id: str
) -> None:
    runs = [
        (date(2026, 11, 20), [MethodMatch("Carte Bancaire", "511500", MatchRule.DEFAULT)]),
        (
            date(2026, 11, 25),
            [
                MethodMatch("Carte Bancaire", "511510", MatchRule.EXACT, "Carte Bancaire"),
                MethodMatch("Lydia", "471000", MatchRule.FALLBACK),
            ],
        ),
        # A day re-run late: widens the range, and its routing is the latest run's.
        (date(2026, 11, 10), [MethodMatch("Carte Bancaire", "511500", MatchRule.DEFAULT)]),
        (date(2026, 11, 22), [MethodMatch("carte bancaire", "511500", MatchRule.NEAR_MISS)]),
    ]
    for day, matches in runs:
        with session_scope(engine) as session:
            record_methods_seen(session, client_id, day, matches)
    with session_scope(engine) as session:
        assert list_methods(session, client_id) == [
            MethodSeen(
                "Carte Bancaire",
                date(2026, 11, 10),
                date(2026, 11, 25),
                "511500",
                MatchRule.DEFAULT,
            ),
            MethodSeen(
                "Lydia", date(2026, 11, 25), date(2026, 11, 25), "471000", MatchRule.FALLBACK
            ),
            MethodSeen(
                "carte bancaire",
                date(2026, 11, 22),
                date(2026, 11, 22),
                "511500",
                MatchRule.NEAR_MISS,
            ),
        ]


def test_record_day_keeps_findings_and_counts_attempts(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    closure = store(b"Z412")
    problem = pos_error("balance", "payments", "débit 1,525.00 ≠ crédit 1,520.00")
    with session_scope(engine) as session:
        record_day(
            session,
            client_id,
            DAY,
            state="refused",
            error_category=Category.POS,
            messages=[problem],
            warnings=[],
            closure_id=closure.closure_id,
            flow_run_id="run-1",
            now=now,
        )
    later = now + timedelta(hours=2)
    note = warning("unmapped_method", "payments[3].method", "'Lydia' went to 471000")
    _post(engine, client_id, closure.closure_id, make_entry(), later)
    with session_scope(engine) as session:
        record_day(
            session,
            client_id,
            DAY,
            state="flagged",
            error_category=None,
            messages=[],
            warnings=[note],
            closure_id=closure.closure_id,
            flow_run_id="run-2",
            now=later,
        )
        # A day with no closure at all.
        record_day(
            session,
            client_id,
            DAY + timedelta(days=1),
            state="missing",
            error_category=Category.LEDGER,
            messages=[ledger_error("missing", "closure", "no closure received")],
            warnings=[],
            closure_id=None,
            flow_run_id="run-3",
            now=later,
        )
    with session_scope(engine) as session:
        statuses = day_statuses(session, client_id)
        assert day_statuses(session, client_id, date_from=DAY + timedelta(days=1)) == statuses[1:]
        assert day_statuses(session, client_id, date_to=DAY) == statuses[:1]
    assert statuses == [
        DayStatus(
            business_date=DAY,
            state="flagged",
            error_category=None,
            messages=(),
            warnings=(note,),
            entry_number=1,
            piece_ref="Z412",
            closure_id=closure.closure_id,
            flow_run_id="run-2",
            # Refused, posted, then flagged: three runs of the day.
            attempts=3,
            updated_at=later,
        ),
        DayStatus(
            business_date=DAY + timedelta(days=1),
            state="missing",
            error_category=Category.LEDGER,
            messages=(ledger_error("missing", "closure", "no closure received"),),
            warnings=(),
            entry_number=None,
            piece_ref=None,
            closure_id=None,
            flow_run_id="run-3",
            attempts=1,
            updated_at=later,
        ),
    ]


@pytest.mark.parametrize(
    ("state", "category", "message"),
    [
        ("done", None, "day state"),
        ("refused", Category.WARNING, "not warning"),
        ("refused", Category.REFUSED, "not refused"),
    ],
)
def test_record_day_refuses_unknown_states_and_categories(
    engine: Engine,
    client_id: str,
    now: datetime,
    state: str,
    category: Category | None,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message), session_scope(engine) as session:
        record_day(
            session,
            client_id,
            DAY,
            state=state,  # type: ignore[arg-type]
            error_category=category,
            messages=[],
            warnings=[],
            closure_id=None,
            flow_run_id=None,
            now=now,
        )
