"""The closure inbox: exact bytes, stored once, and what a new closure does to its day."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from samples import sample_bytes, sample_document
from sqlalchemy import Engine, select

from toporder_sync import service
from toporder_sync.core.errors import Category, ClosureRejected, RefusedError
from toporder_sync.core.model import Entry, PreviousClosure
from toporder_sync.day import client_record, run_day
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.ledger.days import DayStatus, day_statuses, record_day
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.inbox import StoreResult, latest_closure, previous_closure, store_closure
from toporder_sync.ledger.journal import post_entry
from toporder_sync.ledger.tables import ClientRow, ClosureRow
from toporder_sync.outcome import Outcome
from toporder_sync.sources import InboxSource

DAY = date(2026, 11, 27)
RAW = '{"schema": "toporder.closure/v1", "établissement": "Le Petit Zinc"}\n'.encode()


def _status(engine: Engine, client_id: str, day: date = DAY) -> DayStatus:
    with session_scope(engine) as session:
        (status,) = day_statuses(session, client_id, date_from=day, date_to=day)
    return status


def _post(engine: Engine, client_id: str, closure_id: int, entry: Entry, now: datetime) -> None:
    with session_scope(engine) as session:
        post_entry(session, client_id, entry.date, closure_id=closure_id, entry=entry, now=now)


def test_a_closure_is_kept_byte_for_byte_with_its_digest(
    engine: Engine, client_id: str, store: Callable[..., StoreResult], now: datetime
) -> None:
    stored = store(RAW)
    assert stored.created
    assert stored.sha256 == hashlib.sha256(RAW).hexdigest()
    with session_scope(engine) as session:
        latest = latest_closure(session, client_id, DAY)
    assert latest is not None
    assert (latest.id, latest.raw, latest.sha256, latest.received_at) == (
        stored.closure_id,
        RAW,
        stored.sha256,
        now,
    )
    assert _status(engine, client_id).state == "received"


def test_an_identical_resend_is_recognised_not_stored_twice(
    engine: Engine, client_id: str, store: Callable[..., StoreResult], now: datetime
) -> None:
    first = store(RAW)
    again = store(RAW, now=now + timedelta(hours=1))
    assert again == StoreResult(closure_id=first.closure_id, created=False, sha256=first.sha256)
    with session_scope(engine) as session:
        latest = latest_closure(session, client_id, DAY)
    assert latest is not None and latest.received_at == now


def test_the_latest_closure_of_a_day_is_the_last_received(
    engine: Engine, client_id: str, store: Callable[..., StoreResult], now: datetime
) -> None:
    first = store(RAW)
    second = store(RAW + b" ", now=now + timedelta(minutes=5))
    same_instant = store(RAW + b"  ", now=now + timedelta(minutes=5))
    store(RAW + b"   ", business_date=DAY + timedelta(days=1), now=now + timedelta(hours=1))
    assert len({first.closure_id, second.closure_id, same_instant.closure_id}) == 3
    with session_scope(engine) as session:
        latest = latest_closure(session, client_id, DAY)
        assert latest is not None and latest.id == same_instant.closure_id
        assert latest_closure(session, client_id, DAY - timedelta(days=1)) is None


def test_storing_for_an_unknown_client_is_refused(engine: Engine, now: datetime) -> None:
    with pytest.raises(RefusedError), session_scope(engine) as session:
        store_closure(
            session,
            "nobody",
            business_date=DAY,
            raw=RAW,
            closure_number=None,
            establishment_id=None,
            perpetual_total=None,
            now=now,
        )


def test_a_new_closure_puts_a_posted_day_back_to_received_a_resend_does_not(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    first = store(RAW)
    _post(engine, client_id, first.closure_id, make_entry(), now)
    assert _status(engine, client_id).state == "posted"
    store(RAW, now=now + timedelta(hours=1))
    assert _status(engine, client_id).state == "posted"
    store(RAW + b"\n", now=now + timedelta(hours=1))
    status = _status(engine, client_id)
    assert status.state == "received"
    assert status.entry_number == 1, "the posted entry stays current until it is replaced"


@pytest.mark.parametrize("state", ["refused", "missing", "flagged"])
def test_a_new_closure_reopens_a_day_in_any_state(
    engine: Engine, client_id: str, store: Callable[..., StoreResult], now: datetime, state: str
) -> None:
    first = store(RAW)
    with session_scope(engine) as session:
        record_day(
            session,
            client_id,
            DAY,
            state=state,  # type: ignore[arg-type]
            error_category=None,
            messages=(),
            warnings=(),
            closure_id=first.closure_id,
            flow_run_id=None,
            now=now,
        )
    store(RAW + b"\n")
    assert _status(engine, client_id).state == "received"


def test_previous_closure_is_the_one_behind_the_latest_posted_day_before(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    d4, d3, d2, d1 = (DAY - timedelta(days=n) for n in (4, 3, 2, 1))
    posted = [
        (d4, "est-1", 410, "97000.50"),
        (d3, "est-1", 411, "97001.50"),
        (d2, "est-2", 77, "5.00"),
    ]
    for day, establishment, number, perpetual in posted:
        stored = store(
            RAW + str(day).encode(),
            business_date=day,
            establishment_id=establishment,
            number=number,
            perpetual_total=perpetual,
        )
        _post(engine, client_id, stored.closure_id, make_entry(day, number), now)
    store(RAW + b"received, not posted", business_date=d1, number=412)
    with session_scope(engine) as session:
        assert previous_closure(session, client_id, "est-1", DAY) == PreviousClosure(
            number=411, perpetual_total=Decimal("97001.50"), business_date=d3
        )
        assert previous_closure(session, client_id, "est-1", d3) == PreviousClosure(
            number=410, perpetual_total=Decimal("97000.50"), business_date=d4
        )
        assert previous_closure(session, client_id, "est-1", d4) is None
        assert previous_closure(session, client_id, "est-2", DAY) == PreviousClosure(
            number=77, perpetual_total=Decimal("5.00"), business_date=d2
        )
        assert previous_closure(session, client_id, "est-3", DAY) is None


def test_previous_closure_follows_a_replaced_entry(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    day = DAY - timedelta(days=1)
    first = store(RAW, business_date=day, number=411, perpetual_total="1000.00")
    _post(engine, client_id, first.closure_id, make_entry(day, 411), now)
    corrected = store(RAW + b"\n", business_date=day, number=411, perpetual_total="1100.00")
    _post(engine, client_id, corrected.closure_id, make_entry(day, 411), now)
    with session_scope(engine) as session:
        previous = previous_closure(session, client_id, "est-1", DAY)
    assert previous is not None and previous.perpetual_total == Decimal("1100.00")


def test_previous_closure_is_unknown_without_number_or_perpetual_total(
    engine: Engine,
    client_id: str,
    store: Callable[..., StoreResult],
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    day = DAY - timedelta(days=1)
    stored = store(RAW, business_date=day, number=None, perpetual_total=None)
    _post(engine, client_id, stored.closure_id, make_entry(day), now)
    with session_scope(engine) as session:
        assert previous_closure(session, client_id, "est-1", DAY) is None


# --- bounds at the door (issue 22) --------------------------------------------------------
# The red team's inputs: each passed reading, then crashed storing or every run of its day.
# Refused at receipt now, nothing stored, naming the field and the rule, on both backends.

SAMPLE = "valid-metropole.json"
LONG_NUMBER = "9" * 5000


def _sample(change: Callable[[dict[str, Any]], None]) -> bytes:
    """The worked example with ``change`` made, sent as ASCII JSON (``\\u0000`` escapes)."""
    document = sample_document(SAMPLE)
    change(document)
    return json.dumps(document).encode("ascii")


def _setting(part: str, key: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        node = document[part]
        if isinstance(key, int):
            node[key]["method"] = value
        else:
            node[key] = value
    return change


@pytest.fixture
def petit_zinc(engine: Engine, client_id: str) -> ClientRecord:
    """``petit-zinc`` under the integration identifier of the worked example."""
    with session_scope(engine) as session:
        row = session.get(ClientRow, client_id)
        assert row is not None
        row.integration_id = sample_document(SAMPLE)["integration_id"]
    return client_record(engine, client_id)


def _closures(engine: Engine, client_id: str) -> list[int | None]:
    with session_scope(engine) as session:
        return list(session.scalars(select(ClosureRow.closure_number)
                                    .where(ClosureRow.client_id == client_id)))


RED_TEAM: list[tuple[str, bytes, str, str]] = [
    # id, raw bytes, rule, field named
    ("number-2^63", _sample(_setting("closure", "number", 2**63)), "bounds.integer",
     "closure.number"),
    ("number-10^30", _sample(_setting("closure", "number", 10**30)), "bounds.integer",
     "closure.number"),
    ("number-5000-digits", sample_bytes(SAMPLE).replace(
        b'"number": 412', b'"number": ' + LONG_NUMBER.encode()), "bounds.digits",
     "closure.number"),
    ("5000-digits-elsewhere", sample_bytes(SAMPLE).replace(
        b'"sold": "50.00"', b'"sold": ' + LONG_NUMBER.encode()), "bounds.digits",
     "gift_cards.sold"),
    ("nul-in-identifier", _sample(_setting("establishment", "id", "TOP-\u00001042")),
     "bounds.text", "establishment.id"),
    ("nul-in-name", _sample(_setting("establishment", "name", "Le Petit\u0000Zinc")),
     "bounds.text", "establishment.name"),
    ("nul-in-method", _sample(_setting("payments", 1, "Swile\u0000")), "bounds.text",
     "payments[1].method"),
    ("surrogate-in-name", _sample(_setting("establishment", "name", "Le Petit \ud800Zinc")),
     "bounds.text", "establishment.name"),
    ("business-date-9999", _sample(_setting("closure", "business_date", "9999-12-31")),
     "bounds.date", "closure.business_date"),
    ("business-date-after-receipt", _sample(_setting("closure", "business_date", "2026-12-01")),
     "bounds.date", "closure.business_date"),
    ("opened-at-9999", _sample(_setting("closure", "opened_at", "9999-12-31T23:59:59-14:00")),
     "bounds.date", "closure.opened_at"),
]


@pytest.mark.parametrize(("raw", "rule", "field"), [c[1:] for c in RED_TEAM],
                         ids=[c[0] for c in RED_TEAM])
def test_what_the_ledger_cannot_hold_is_refused_at_receipt_with_nothing_stored(
    engine: Engine, petit_zinc: ClientRecord, now: datetime, raw: bytes, rule: str, field: str
) -> None:
    with pytest.raises(ClosureRejected) as caught:
        service.receive(engine, raw, "redteam.json", now=now)
    assert [(f.category, f.rule, f.field) for f in caught.value.findings] == [
        (Category.POS, rule, field)], caught.value.findings
    assert _closures(engine, petit_zinc.client_id) == []


@pytest.mark.parametrize("number", [2**31, 2**63 - 1])
def test_a_closure_number_of_64_bits_is_stored_and_its_day_posted(
    engine: Engine, petit_zinc: ClientRecord, now: datetime, number: int
) -> None:
    raw = _sample(_setting("closure", "number", number))
    received = service.receive(engine, raw, "big-number.json", now=now)
    assert received.created and _closures(engine, petit_zinc.client_id) == [number]
    result = run_day(engine, petit_zinc, DAY, source=InboxSource(engine), run_id="big",
                     now=lambda: now)
    assert result.outcome is Outcome.POSTED, result
    assert result.entry is not None and result.entry.piece_ref == f"Z{number}"
    with session_scope(engine) as session:
        previous = previous_closure(session, petit_zinc.client_id, "TOP-1042",
                                    DAY + timedelta(days=1))
    assert previous is not None and previous.number == number
