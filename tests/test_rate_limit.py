"""The edges' one rate limiter (``toporder_sync.rate_limit``), timed on the monotonic clock.

Requests counted at a real server are tested with the clients (test_pull_client,
test_pennylane); these check the limiter's own promises.
"""

from __future__ import annotations

import threading
import time

import pytest

from toporder_sync.rate_limit import RateLimiter


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
