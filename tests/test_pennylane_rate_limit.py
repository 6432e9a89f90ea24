"""One Pennylane rate limit per token across processes (issue 24, point 3).

Two OS processes share one token and one ledger and each fires its requests at once against the
fake Pennylane on 127.0.0.1, which logs when every request arrives. Through the ledger's shared
limiter, no 5-second window holds more than Pennylane's 25 requests of that token, and every
request is answered 200, on a SQLite file and on PostgreSQL. The control: the same two
processes with a limiter each (no ledger) do crowd one window past the limit.

Each shared run takes about 11 s: 60 requests at 25 per 5.25 s.

One process with hundreds of tokens on one ledger holds one pool (PostgreSQL) or one sidecar
connection (SQLite) and one leaker thread for them all, and still counts each token on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pennylane_fake import FakePennylane
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from toporder_sync.pennylane.client import (
    RATE_LIMIT,
    RATE_WINDOW,
    close_limiters,
    limiter_for,
)
from toporder_sync.rate_limit import POOL_MAX_SIZE

TOKEN = "plk-good-token"  # noqa: S105 (the fake's token)
TOKEN_ENV = "TEST_PENNYLANE_TOKEN"  # noqa: S105 (a variable name)
EACH = 30
# A relay pushing for many clients, each with a token of its own.
TOKENS = 300

# One process of the pair: builds its client (and so its limiter: pool, sidecar file), says
# "ready", waits for "go" and lists the journals EACH times, one request each.
WORKER = """
import os, sys
from toporder_sync.pennylane.client import PennylaneClient
url, ledger_url, count = sys.argv[1:]
with PennylaneClient(os.environ["TEST_PENNYLANE_TOKEN"], url=url,
                     ledger_url=ledger_url or None) as api:
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(count)):
        api.journals()
"""


@pytest.fixture
def fake() -> Iterator[FakePennylane]:
    with FakePennylane(tokens=frozenset({TOKEN})) as pennylane:
        pennylane.add_journal("VT")
        yield pennylane


def _run_pair(fake: FakePennylane, ledger_url: str | None, each: int) -> list[int]:
    """Two worker processes released together; their exit codes."""
    env = {**os.environ, TOKEN_ENV: TOKEN}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, fake.url, ledger_url or "",
                                 str(each)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                text=True)
               for _ in range(2)]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline() == "ready\n"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        return [worker.wait(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def test_two_processes_on_one_ledger_share_the_token_s_limit(fake: FakePennylane,
                                                            ledger_url: str) -> None:
    assert fake.window == RATE_WINDOW and fake.rate_limit == RATE_LIMIT

    assert _run_pair(fake, ledger_url, EACH) == [0, 0]

    assert len(fake.log) == 2 * EACH
    assert fake.statuses() == [200] * (2 * EACH)  # no 429, nothing failed
    assert fake.busiest_window() <= RATE_LIMIT


def test_two_processes_with_a_limiter_each_exceed_the_limit(fake: FakePennylane) -> None:
    # 15 each: 30 arrive within the first second, more than one window allows.
    _run_pair(fake, None, 15)

    assert fake.busiest_window() > RATE_LIMIT
    assert 429 in fake.statuses()


def test_one_limiter_per_token_and_ledger_in_a_process(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    shared = limiter_for(TOKEN, ledger)
    try:
        assert limiter_for(TOKEN, ledger) is shared
        assert limiter_for(TOKEN) is not shared
        assert limiter_for("plk-other-token", ledger) is not shared
        assert (tmp_path / "ledger.db.ratelimit.sqlite").is_file()
    finally:
        close_limiters()
    assert limiter_for(TOKEN, ledger) is not shared  # closed and forgotten: a new one
    close_limiters()


def test_many_tokens_in_one_process_share_one_pool_and_one_thread(
        ledger_url: str, request: pytest.FixtureRequest) -> None:
    postgres = make_url(ledger_url).get_backend_name() == "postgresql"
    admin: Engine | None = request.getfixturevalue("postgres_admin") if postgres else None
    threads, files = threading.active_count(), _open_files()
    try:
        for index in range(TOKENS):
            limiter_for(f"plk-client-{index}", ledger_url).acquire()
        # The leaker, and for PostgreSQL the pool's scheduler and 3 workers: none per token.
        assert threading.active_count() - threads <= 5
        assert _open_files() - files <= 10  # sockets or the sidecar, its WAL and lock
        if admin is not None:
            assert 1 <= _connections(admin, ledger_url) <= POOL_MAX_SIZE
    finally:
        close_limiters()
    assert threading.active_count() == threads
    assert _open_files() <= files
    if admin is not None:
        assert _connections(admin, ledger_url) == 0


def test_one_token_s_full_window_holds_no_other_token_back(ledger_url: str) -> None:
    busy, other = limiter_for(TOKEN, ledger_url), limiter_for("plk-other-token", ledger_url)
    try:
        before = time.monotonic()
        for _ in range(RATE_LIMIT):
            busy.acquire()
        for _ in range(RATE_LIMIT):
            other.acquire()
        assert time.monotonic() - before < RATE_WINDOW / 2
    finally:
        close_limiters()


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _connections(admin: Engine, ledger_url: str) -> int:
    """This process's connections to the ledger database (the admin engine is on another)."""
    with admin.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name"),
            {"name": make_url(ledger_url).database}).scalar_one()
