"""The edges' one rate limiter (``toporder_sync.rate_limit``), timed on the monotonic clock.

Requests counted at a real server are tested with the clients (test_pull_client,
test_pennylane, test_pennylane_rate_limit across processes); these check the limiter's own
promises, the shared ones on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from toporder_sync.rate_limit import SIDECAR_SUFFIX, RateLimiter, RateLimits


def _starts(limiter: RateLimiter, threads: int, each: int) -> list[float]:
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(each):
            limiter.acquire()
            with lock:
                starts.append(time.monotonic())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(starts)


def test_no_window_holds_more_than_the_limit_across_threads() -> None:
    starts = _starts(RateLimiter(3, 0.2), threads=3, each=3)
    assert len(starts) == 9
    # Any 4 consecutive starts span at least one window.
    assert all(starts[i + 3] - starts[i] >= 0.2 for i in range(len(starts) - 3))


def test_a_pause_holds_every_caller_back() -> None:
    limiter = RateLimiter(100, 1.0)
    limiter.acquire()
    limiter.pause(0.3)
    started = time.monotonic()
    starts = _starts(limiter, threads=2, each=1)
    assert all(start - started >= 0.3 for start in starts)


def test_a_fractional_rate_per_second() -> None:
    limiter = RateLimiter.per_second(2.5)
    assert (limiter.limit, limiter.period) == (2, 0.8)


@pytest.mark.parametrize(("limit", "period"), [(0, 1.0), (1, 0.0)])
def test_a_limit_that_cannot_work_is_refused(limit: int, period: float) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimiter(limit, period)


# --- shared through the ledger database


@contextmanager
def limits_of(url: str, count: int = 1) -> Iterator[list[RateLimits]]:
    """``count`` separate ``RateLimits`` on one ledger, as that many processes would open."""
    opened = [RateLimits(url) for _ in range(count)]
    try:
        yield opened
    finally:
        for limits in opened:
            limits.close()


@pytest.fixture
def shared_pair(ledger_url: str) -> Iterator[tuple[RateLimiter, RateLimiter]]:
    """Two limiters of one name on one ledger, as two processes would build them."""
    with limits_of(ledger_url, 2) as (first, second):
        yield first.limiter("test_pair", 3, 0.5), second.limiter("test_pair", 3, 0.5)


def test_two_shared_limiters_on_one_ledger_count_together(
        shared_pair: tuple[RateLimiter, RateLimiter]) -> None:
    first, second = shared_pair
    before = time.monotonic()
    for _ in range(3):
        first.acquire()
    assert time.monotonic() - before < 0.5
    second.acquire()  # the fourth in the window, whoever asks
    assert time.monotonic() - before >= 0.5


def test_the_count_of_a_sqlite_ledger_lives_beside_it(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    limits = RateLimits(f"sqlite:///{ledger}")
    limits.limiter("test_sidecar", 3, 0.5).acquire()
    limits.close()
    limits.close()  # a second close does nothing
    assert (tmp_path / f"ledger.db{SIDECAR_SUFFIX}").is_file()
    assert not ledger.exists()  # never opened: counting never waits on the ledger's lock


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_ledger_counts_in_each_limiter(url: str) -> None:
    with limits_of(url, 2) as (first, second):
        before = time.monotonic()
        first.limiter("test_memory", 1, 60.0).acquire()
        second.limiter("test_memory", 1, 60.0).acquire()
        assert time.monotonic() - before < 1.0


@pytest.mark.parametrize("name", ["", "Token", "a-b", "x" * 41, "t; drop table"])
def test_a_shared_limit_s_name_must_be_a_plain_identifier(name: str, tmp_path: Path) -> None:
    with limits_of(f"sqlite:///{tmp_path / 'ledger.db'}") as (limits,), \
            pytest.raises(ValueError, match="name"):
        limits.limiter(name, 1, 1.0)


def test_a_ledger_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
        RateLimits("mysql://ledger/db")


@pytest.mark.parametrize("ledger_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)
def test_postgres_contention_delays_every_acquire_and_loses_none(
        ledger_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # PostgresBucket counts under LOCK TABLE ... NOWAIT and answers "no" to whoever finds the
    # table locked; two limiters (two pools, as two processes) hammering it from 4 threads
    # each must still see every blocking acquire return, each counted once.
    caplog.set_level(logging.DEBUG, logger="pyrate_limiter.buckets.postgres")
    with limits_of(ledger_url, 2) as opened:
        starts = _starts_on([limits.limiter("test_contention", 1000, 60.0) for limits in opened],
                            threads_each=4, each=20)
    assert len(starts) == 160
    engine = create_engine(ledger_url)
    with engine.connect() as connection:
        counted = connection.exec_driver_sql(
            'SELECT count(*) FROM "ratelimit___test_contention"').scalar_one()
    engine.dispose()
    assert counted == 160
    # The contention did happen (some 50 to 70 refusals a run here): the waits above were it.
    assert any("LockNotAvailable" in record.getMessage() for record in caplog.records)


def _starts_on(limiters: list[RateLimiter], threads_each: int, each: int) -> list[float]:
    starts: list[float] = []
    lock = threading.Lock()

    def work(limiter: RateLimiter) -> None:
        for _ in range(each):
            limiter.acquire()
            with lock:
                starts.append(time.monotonic())

    workers = [threading.Thread(target=work, args=(limiter,))
               for limiter in limiters for _ in range(threads_each)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return starts


# --- many names in one process


def test_each_name_counts_on_its_own(ledger_url: str) -> None:
    limits = RateLimits(ledger_url)
    try:
        first = limits.limiter("test_first", 3, 0.5)
        second = limits.limiter("test_second", 3, 0.5)
        before = time.monotonic()
        for _ in range(3):
            first.acquire()
        for _ in range(3):
            second.acquire()  # the first name's full window holds the second back in nothing
        assert time.monotonic() - before < 0.5
        first.acquire()  # the fourth of its own name does wait
        assert time.monotonic() - before >= 0.5
    finally:
        limits.close()


def test_a_name_keeps_one_count_in_its_rate_limits(tmp_path: Path) -> None:
    limits = RateLimits(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        first = limits.limiter("test_same", 2, 0.5)
        again = limits.limiter("test_same", 2, 0.5)
        before = time.monotonic()
        first.acquire()
        again.acquire()
        first.acquire()  # the third of one name, through either limiter
        assert time.monotonic() - before >= 0.5
    finally:
        limits.close()


def test_in_memory_rate_limits_count_in_this_process() -> None:
    limits = RateLimits()
    threads = threading.active_count()
    try:
        limiters = [limits.limiter(f"test_{index}", 1, 60.0) for index in range(50)]
        before = time.monotonic()
        for limiter in limiters:
            limiter.acquire()
        assert time.monotonic() - before < 1.0
        assert threading.active_count() - threads <= 1  # one leaker for every name
    finally:
        limits.close()
    assert threading.active_count() == threads
