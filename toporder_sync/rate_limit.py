"""The one client-side rate limiter of the HTTP edges, over pyrate-limiter.

What it promises:

* ``RateLimiter(limit, period)`` lets at most ``limit`` requests start in any sliding window of
  ``period`` seconds, across every thread that shares it; ``acquire`` blocks until one more may
  start (waiting callers sleep outside the lock). Its count is in this process's memory.
* ``RateLimits(url)`` keeps the counts of many named limits (one per Pennylane token, say) in
  the ledger database at ``url`` (its SQLAlchemy URL), across every process that uses the same
  name there; ``RateLimits()`` keeps them in this process's memory. ``limiter(name, limit,
  period)`` gives the ``RateLimiter`` of one name; each name counts on its own. Whatever the
  number of names, one ``RateLimits`` holds one pyrate-limiter ``Limiter``, one background
  leaker thread and one connection pool (PostgreSQL, at most ``POOL_MAX_SIZE`` connections) or
  one connection and one file lock (SQLite): a relay with a thousand tokens holds no more
  connections, files or threads than one with a single token. Counts live on wall-clock
  (SQLite) or database-clock (PostgreSQL) time, never on a per-process monotonic clock.

  - PostgreSQL: one ``PostgresBucket`` table ``ratelimit___<name>`` per name in the ledger
    database, made on the name's first request. Its check-and-count takes
    ``LOCK TABLE ... NOWAIT`` and fails at once when another process holds the lock; a blocking
    ``acquire`` then sleeps a few milliseconds and tries again, so contention delays a request
    but never drops nor admits one past the limit.
  - SQLite file: one ``SQLiteBucket`` table ``rate_<name>`` per name in a sidecar file next to
    the ledger (``<ledger file>.ratelimit.sqlite``, every check-and-count serialised by the file
    lock ``<sidecar>.lock``), not in the ledger file itself, so that counting a request never
    waits on the ledger's write lock and a long ledger transaction never holds back the edges.
  - In-memory SQLite (``sqlite://``, ``:memory:``): no other process can see that database, so
    the counts stay in this process's memory, as ``RateLimits()``.

* ``pause(seconds)`` holds every caller of this limiter back for that long (the server answered
  429 with a ``Retry-After``): the next ``acquire`` waits it out before it counts. A pause is
  per process and per limiter, even on a shared count: another process learns of the 429 from
  its own.
* ``close()`` stops the background leaking and releases the pool or connection; the limiters
  are not usable afterwards. A limiter from ``RateLimits.limiter`` is closed with its
  ``RateLimits`` (its own ``close`` does nothing). A process may also just exit: every thread
  involved (pyrate-limiter's leaker, the pool's workers) is a daemon.
* Importing this module loads no database driver: the PostgreSQL pool and the SQLite file lock
  are imported by the ``RateLimits`` that needs them (every command line imports this module).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrate_limiter import (
    AbstractBucket,
    AbstractClock,
    BucketFactory,
    Duration,
    InMemoryBucket,
    Limiter,
    MonotonicClock,
    PostgresBucket,
    PostgresClock,
    Rate,
    RateItem,
    SQLiteBucket,
    SQLiteQueries,
    WallClock,
)
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    import sqlite3

    import psycopg
    from filelock import FileLock

# pyrate-limiter's default adds 50 ms to every wait against clock drift between hosts. Shared
# buckets here read one clock (this host's wall clock for a SQLite file, the server's for
# PostgreSQL), so a few milliseconds are enough; it is also the retry step under contention.
_BUFFER_MS = 5
# A bucket's name becomes part of a table name: keep it to what needs no quoting anywhere.
_NAME = re.compile(r"[a-z0-9_]{1,40}")
SIDECAR_SUFFIX = ".ratelimit.sqlite"
# One Limiter serialises its check-and-counts (one connection at a time) and one leaker thread
# prunes the buckets (another): two connections serve every name of a ledger.
POOL_MAX_SIZE = 2
# Opening the pool connects to the ledger server: fail at start-up if it cannot.
_POOL_OPEN_TIMEOUT = 10.0


class RateLimiter:
    """At most ``limit`` requests started in any ``period`` seconds, shared by threads."""

    def __init__(self, limit: int, period: float) -> None:
        rate = _rate(limit, period)
        limiter = Limiter(InMemoryBucket([rate]), buffer_ms=_BUFFER_MS)
        self._set_up(limit, period, limiter, "request", limiter.close)

    @classmethod
    def per_second(cls, rate: float) -> RateLimiter:
        """``rate`` requests a second (a fraction too: 0.5 is one every two seconds)."""
        if rate <= 0:
            raise ValueError(f"a rate limit must be positive, not {rate}")
        limit = max(1, round(rate))
        return cls(limit, limit / rate)

    @classmethod
    def _counting(cls, limit: int, period: float, limiter: Limiter, name: str) -> RateLimiter:
        """The limiter of ``name`` in a ``Limiter`` of many names (see ``RateLimits``)."""
        view = cls.__new__(cls)
        view._set_up(limit, period, limiter, name, _nothing)
        return view

    def _set_up(self, limit: int, period: float, limiter: Limiter, name: str,
                close: Callable[[], None]) -> None:
        self.limit = limit
        self.period = period
        self._limiter = limiter
        self._name = name
        self._close = close
        self._lock = threading.Lock()
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter({self.limit}, {self.period:g})"

    def acquire(self) -> None:
        """Wait until one more request may start, and count it."""
        with self._lock:
            paused = self._paused_until - time.monotonic()
        if paused > 0:
            time.sleep(paused)
        self._limiter.try_acquire(self._name, blocking=True)

    def pause(self, seconds: float) -> None:
        """Start nothing for ``seconds`` (the server said so with a 429), in this process."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def close(self) -> None:
        """Stop leaking and release the count's connections (a second call does nothing)."""
        self._close()


class RateLimits:
    """Named rate limits counted in one place: the ledger database at ``url``, or this process.

    One ``Limiter``, one leaker thread and one pool or connection serve every name, however
    many; ``close()`` releases them (a second call does nothing).
    """

    def __init__(self, url: str | None = None) -> None:
        self._release: Callable[[], None] = _nothing
        self._buckets = self._open(url)
        self._limiter = Limiter(self._buckets, buffer_ms=_BUFFER_MS)
        self._lock = threading.Lock()
        self._closed = False

    def _open(self, url: str | None) -> _NamedBuckets:
        ledger = None if url is None else make_url(url)
        if ledger is None or _in_memory(ledger):
            return _NamedBuckets(MonotonicClock(), lambda name, rates: InMemoryBucket(rates))
        backend = ledger.get_backend_name()
        if backend == "sqlite":
            import sqlite3

            from filelock import FileLock

            ledger_file = Path(ledger.database or "").resolve()
            sidecar = ledger_file.with_name(ledger_file.name + SIDECAR_SUFFIX)
            lock = FileLock(f"{sidecar}.lock")
            with lock:
                connection = sqlite3.connect(sidecar, isolation_level="DEFERRED",
                                             check_same_thread=False)
                try:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute("PRAGMA synchronous=NORMAL")
                except BaseException:
                    connection.close()
                    raise
            self._release = connection.close
            return _NamedBuckets(WallClock(),
                                 lambda name, rates: _sqlite_bucket(connection, lock, name,
                                                                    rates))
        if backend == "postgresql":
            from psycopg_pool import ConnectionPool

            # libpq reads a postgresql:// URI; SQLAlchemy's "+psycopg" driver suffix is not
            # part of it.
            conninfo = ledger.set(drivername="postgresql").render_as_string(hide_password=False)
            pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                conninfo, min_size=1, max_size=POOL_MAX_SIZE, open=False, name="ratelimit",
                configure=_in_utc)
            pool.open(wait=True, timeout=_POOL_OPEN_TIMEOUT)
            self._release = pool.close
            return _NamedBuckets(PostgresClock(pool),
                                 lambda name, rates: PostgresBucket(pool, name, rates))
        raise ValueError(f"no shared rate limit on a {backend!r} database (SQLite or PostgreSQL)")

    def limiter(self, name: str, limit: int, period: float) -> RateLimiter:
        """The limiter of ``name``: at most ``limit`` requests in any ``period`` seconds.

        ``name`` (lower-case letters, digits, ``_``) tells one limit from another; asking twice
        for one name gives two limiters of one count (each with its own pause). A name keeps
        the limit it was first given in this ``RateLimits``.
        """
        _check_name(name)
        self._buckets.declare(name, _rate(limit, period))
        return RateLimiter._counting(limit, period, self._limiter, name)

    def close(self) -> None:
        """Stop the leaker, then release the pool or connection every name shares."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._limiter.close()
        finally:
            self._release()


class _NamedBuckets(BucketFactory):
    """pyrate-limiter's routing of many keys: one bucket per item name, made on first use.

    Every bucket is handed to ``schedule_leak`` and so leaked by this factory's one leaker
    thread; items are stamped by one ``clock``, the one the buckets store and compare.
    """

    def __init__(self, clock: AbstractClock,
                 make: Callable[[str, list[Rate]], AbstractBucket]) -> None:
        self._clock = clock
        self._make = make
        self._rates: dict[str, list[Rate]] = {}
        self._by_name: dict[str, AbstractBucket] = {}
        self._names_lock = threading.Lock()

    def declare(self, name: str, rate: Rate) -> None:
        with self._names_lock:
            self._rates.setdefault(name, [rate])

    def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        now = self._clock.now()
        if not isinstance(now, int):
            raise TypeError("the shared rate limits read a synchronous clock")
        return RateItem(name, now, weight=weight)

    def get(self, item: RateItem) -> AbstractBucket:
        with self._names_lock:
            bucket = self._by_name.get(item.name)
            if bucket is None:
                bucket = self._make(item.name, self._rates[item.name])
                self.schedule_leak(bucket)
                self._by_name[item.name] = bucket
            return bucket

    def owned_buckets(self) -> list[AbstractBucket]:
        # The buckets hold nothing of their own: the pool or connection they share is released
        # once, by the RateLimits that opened it (PostgresBucket.close would close the pool).
        return []


def _sqlite_bucket(connection: sqlite3.Connection, lock: FileLock, name: str,
                   rates: list[Rate]) -> SQLiteBucket:
    table = f"rate_{name}"
    with lock:
        connection.execute(SQLiteQueries.CREATE_BUCKET_TABLE.format(table=table))
        connection.execute(SQLiteQueries.CREATE_INDEX_ON_TIMESTAMP.format(
            index_name=f"idx_{table}_rate_item_timestamp", table_name=table))
        connection.commit()
    # The bucket holds the file lock around each use of the connection (put, leak): one
    # connection and one lock serve every table, across threads and processes.
    return SQLiteBucket(rates, connection, table, lock=lock)


def _rate(limit: int, period: float) -> Rate:
    if limit < 1 or period <= 0:
        raise ValueError(f"a rate limit needs limit >= 1 and period > 0, not {limit}/{period}")
    return Rate(limit, max(1, round(period * Duration.SECOND.value)))


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"a shared rate limit's name is 1 to 40 of [a-z0-9_], not {name!r}")


def _in_memory(ledger: URL) -> bool:
    """A SQLite database no other process can see."""
    database = ledger.database
    return ledger.get_backend_name() == "sqlite" and (
        not database or database == ":memory:" or ledger.query.get("mode") == "memory")


def _nothing() -> None:
    return None


def _in_utc(connection: psycopg.Connection[Any]) -> None:
    # PostgresBucket stores TIMESTAMP WITHOUT TIME ZONE read through the session's time zone:
    # every process must read it in the same one, and one without a DST fold.
    connection.execute("SET TIME ZONE 'UTC'")
    connection.commit()
