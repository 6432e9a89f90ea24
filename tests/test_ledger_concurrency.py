"""Two OS processes storing and posting the same client-days at the same moment.

Each process has its own engine, as two flow runs would. A barrier releases both at once
before each step, twenty days in a row: every closure must be stored once and every day posted
once, the other process finding the work done (``created=False``, ``unchanged``).
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest
import racing
from sqlalchemy import Engine

from toporder_sync.core.model import Entry
from toporder_sync.ledger.db import make_engine, session_scope
from toporder_sync.ledger.inbox import latest_closure, store_closure
from toporder_sync.ledger.journal import entries_between, lock_client_day, post_entry

FIRST_DAY = date(2026, 11, 1)
DAYS = 20
WAIT = 120


def _store_and_post(
    url: str,
    client_id: str,
    work: Sequence[tuple[bytes, Entry]],
    now: datetime,
    barrier: Barrier,
    results: Queue[Any],
) -> None:
    engine = make_engine(url)
    try:
        for raw, entry in work:
            day = entry.date
            barrier.wait(WAIT)
            with session_scope(engine) as session:
                stored = store_closure(
                    session,
                    client_id,
                    business_date=day,
                    raw=raw,
                    closure_number=None,
                    establishment_id="est-1",
                    perpetual_total=None,
                    now=now,
                )
            barrier.wait(WAIT)
            with session_scope(engine) as session:
                lock_client_day(session, client_id, day, now=now)
                closure = latest_closure(session, client_id, day)
                assert closure is not None
                posted = post_entry(
                    session, client_id, day, closure_id=closure.id, entry=entry, now=now
                )
            results.put(
                ("day", day, stored.closure_id, stored.created, posted.status, posted.number)
            )
    except BaseException:
        barrier.abort()  # release the other process, which then reports BrokenBarrierError
        results.put(("error", traceback.format_exc()))
    finally:
        engine.dispose()
        results.put(("done",))


@pytest.mark.timeout(600)
def test_two_processes_on_the_same_client_day_post_one_entry(
    ledger_url: str,
    engine: Engine,
    client_id: str,
    make_entry: Callable[..., Entry],
    now: datetime,
) -> None:
    work = [
        (f"Z{412 + n}".encode(), make_entry(FIRST_DAY + timedelta(days=n), 412 + n))
        for n in range(DAYS)
    ]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results: Queue[Any] = context.Queue()
    processes = [
        context.Process(
            target=_store_and_post, args=(ledger_url, client_id, work, now, barrier, results)
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    by_day: dict[date, list[tuple[int, bool, str, int]]] = {}
    for day, closure_id, created, status, number in racing.reports(results, processes,
                                                                   wait=WAIT):
        by_day.setdefault(day, []).append((closure_id, created, status, number))
    assert len(by_day) == DAYS
    for day, pair in by_day.items():
        (id_a, created_a, status_a, number_a), (id_b, created_b, status_b, number_b) = pair
        assert id_a == id_b, f"{day}: one closure, stored once"
        assert sorted([created_a, created_b]) == [False, True], day
        assert sorted([status_a, status_b]) == ["posted", "unchanged"], day
        assert number_a == number_b, day

    with session_scope(engine) as session:
        stored = entries_between(session, client_id, FIRST_DAY, FIRST_DAY + timedelta(days=DAYS))
    assert [entry.number for entry in stored] == list(range(1, DAYS + 1))
    assert [entry.entry.date for entry in stored] == sorted(by_day)
    assert {entry.kind for entry in stored} == {"entry"}
