"""The one client-side rate limiter of the HTTP edges, over pyrate-limiter.

What it promises:

* ``RateLimiter(limit, period)`` lets at most ``limit`` requests start in any sliding window of
  ``period`` seconds, across every thread that shares it; ``acquire`` blocks until one more may
  start (waiting callers sleep outside the lock).
* ``pause(seconds)`` holds every caller back for that long (the server answered 429 with a
  ``Retry-After``): the next ``acquire`` waits it out before it counts.
* The counting is pyrate-limiter's, in memory for this process. Its buckets can also live in
  SQLite or PostgreSQL, which is how a limit would be shared between processes.
"""

from __future__ import annotations

import threading
import time

from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

# pyrate-limiter's default adds this much to every wait against clock drift between processes;
# the count here is in-process, on the monotonic clock, so a few milliseconds are enough.
_BUFFER_MS = 5


class RateLimiter:
    """At most ``limit`` requests started in any ``period`` seconds, shared by threads."""

    def __init__(self, limit: int, period: float) -> None:
        if limit < 1 or period <= 0:
            raise ValueError(f"a rate limit needs limit >= 1 and period > 0, not "
                             f"{limit}/{period}")
        self.limit = limit
        self.period = period
        interval = max(1, round(period * Duration.SECOND.value))
        self._limiter = Limiter(InMemoryBucket([Rate(limit, interval)]), buffer_ms=_BUFFER_MS)
        self._lock = threading.Lock()
        self._paused_until = 0.0

    @classmethod
    def per_second(cls, rate: float) -> RateLimiter:
        """``rate`` requests a second (a fraction too: 0.5 is one every two seconds)."""
        if rate <= 0:
            raise ValueError(f"a rate limit must be positive, not {rate}")
        limit = max(1, round(rate))
        return cls(limit, limit / rate)

    def __repr__(self) -> str:
        return f"RateLimiter({self.limit}, {self.period:g})"

    def acquire(self) -> None:
        """Wait until one more request may start, and count it."""
        with self._lock:
            paused = self._paused_until - time.monotonic()
        if paused > 0:
            time.sleep(paused)
        self._limiter.try_acquire("request", blocking=True)

    def pause(self, seconds: float) -> None:
        """Start nothing for ``seconds`` (the server said so with a 429)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
