"""Class 5, upstream faults: the fake Toporder misbehaving, and PostgreSQL dropping a post.

The pull client (``PullSource`` over ``ToporderApi``) is pointed at the simulator served on
127.0.0.1 with each HTTP fault switched on: 429 with Retry-After, 503, a response slower than
the read timeout, a body cut short of its Content-Length, a garbled body. A fault that passes
within the call's retries must end with the day posted from the intact closure; one that
persists must raise ``TransientError`` (the task retry's business) with nothing stored and
nothing posted, and the day must post once the fault is gone.

Then a PostgreSQL backend is killed (``pg_terminate_backend``) in the middle of a post, at
each of its writes and at its COMMIT: the run raises ``TransientError``, nothing of the entry
remains, and the rerun posts it once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text

from reliability import invariants, support, tally
from toporder_sync.core.errors import TransientError
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import ClosureRow, EntryLineRow, EntryRow
from toporder_sync.rate_limit import RateLimiter
from toporder_sync.retrying import RetryPolicy
from toporder_sync.simulator.faults import FaultRule
from toporder_sync.simulator.server import (
    Simulation,
    SimulatorConfig,
    create_app,
    serve_in_thread,
)
from toporder_sync.sources import PullSource
from toporder_sync.toporder_api import ApiSettings, ToporderApi

TOKEN = "canary-api-token-5f1e"  # noqa: S105 - a test token, also a canary for class 6
HTTP_FAULTS = (
    FaultRule("429", retry_after=2),
    FaultRule("5xx"),
    # The client gives up after 1 s, the struck answer comes after 2 s: room for a served answer
    # on a loaded machine (0.3 s against 0.6 s once timed out a served request in CI).
    FaultRule("timeout", delay=2.0),
    FaultRule("truncated"),
    FaultRule("garbled"),
)


@pytest.fixture(scope="module")
def simulation() -> Iterator[tuple[Simulation, str]]:
    sim = Simulation(SimulatorConfig(seed=5, token=TOKEN, start=support.ACTIVATED,
                                     venue="bar"), clock=lambda: support.NOW)
    server = serve_in_thread(create_app(sim))
    yield sim, server.base_url
    server.stop()


def _counts(engine: Engine, client_id: str) -> tuple[int, int]:
    with session_scope(engine) as session:
        closures = session.scalar(select(func.count()).select_from(ClosureRow)
                                  .where(ClosureRow.client_id == client_id)) or 0
        entries = session.scalar(select(func.count()).select_from(EntryRow)
                                 .where(EntryRow.client_id == client_id)) or 0
    return closures, entries


def _check(engine: Engine, where: str, only: list[tuple[str, date]]) -> None:
    found = tally.record(invariants.check(engine, only=only), where)
    assert not found, f"{where}:\n{found.describe()}"


def test_http_faults_are_retried_or_raised_transient_never_half_stored(
        engine: Engine, simulation: tuple[Simulation, str]) -> None:
    sim, base_url = simulation
    client = support.activate(engine, "pull")
    waits: list[float] = []
    api = ToporderApi(ApiSettings(base_url, TOKEN, timeout=1.0),
                      policy=RetryPolicy(attempts=3, backoff=0.01, patience=5),
                      limiter=RateLimiter.per_second(1000), sleep=waits.append)
    source = PullSource(engine, api, clock=lambda: support.NOW)
    days = iter(support.DAYS)
    try:
        for rule in HTTP_FAULTS:
            # Passing: the first two requests of the day are struck, the third is served.
            day = next(days)
            sim.set_faults(FaultRule(rule.name, first=2, retry_after=rule.retry_after,
                                     delay=rule.delay))
            result = support.run(engine, client, day, run_id=f"pass-{rule.name}",
                                 source=source)
            tally.tried("upstream", f"HTTP {rule.name}, passing")
            assert result.outcome.kind == "posted", (rule.name, result)
            raw = sim.closure(client.integration_id, day)
            assert raw is not None and result.entry is not None
            with session_scope(engine) as session:
                stored = session.scalars(select(ClosureRow.raw).where(
                    ClosureRow.client_id == client.client_id,
                    ClosureRow.business_date == day)).all()
            assert stored == [raw], "the intact closure, stored once"
            if rule.name == "429":
                assert waits[-2:] == [2.0, 2.0], "Retry-After is honoured"
            _check(engine, f"HTTP {rule.name} passing", [(client.client_id, day)])

            # Persisting: every request struck; the run raises, nothing is stored or posted.
            day = next(days)
            sim.set_faults(FaultRule(rule.name, retry_after=rule.retry_after,
                                     delay=rule.delay))
            before = _counts(engine, client.client_id)
            with pytest.raises(TransientError):
                support.run(engine, client, day, run_id=f"persist-{rule.name}", source=source)
            tally.tried("upstream", f"HTTP {rule.name}, persisting")
            assert _counts(engine, client.client_id) == before
            sim.set_faults()
            again = support.run(engine, client, day, run_id=f"after-{rule.name}",
                                source=source)
            assert again.outcome.kind == "posted", again
            _check(engine, f"HTTP {rule.name} persisting", [(client.client_id, day)])
    finally:
        sim.set_faults()
        api.close()


# Where the backend is killed: a statement of the post that matches, or its COMMIT.
KILL_POINTS = ("INSERT INTO entries", "INSERT INTO entry_lines", "UPDATE client_days",
               "COMMIT")


def test_a_postgres_connection_killed_mid_post_leaves_nothing_and_reposts(
        request: pytest.FixtureRequest, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        # Only PostgreSQL has a server connection to kill; on SQLite the same test is a
        # crash of the process, which test_crash covers at mid_write and before_commit.
        assert engine.dialect.name == "sqlite"
        return
    postgres_admin: Engine = request.getfixturevalue("postgres_admin")
    client = support.activate(engine, "dropped")
    armed: dict[str, Any] = {"point": None, "fired": 0}

    def kill(connection: Any) -> None:
        pid = connection.connection.dbapi_connection.info.backend_pid
        with postgres_admin.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        armed["point"] = None
        armed["fired"] += 1

    def before_execute(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        point = armed["point"]
        if point is not None and point != "COMMIT" and statement.startswith(point):
            kill(connection)

    def before_commit(connection: Any) -> None:
        if armed["point"] == "COMMIT":
            kill(connection)

    original_post = support.service.post
    event.listen(engine, "before_cursor_execute", before_execute)
    event.listen(engine, "commit", before_commit)
    try:
        for n, point in enumerate(KILL_POINTS):
            day = support.DAYS[n]
            raw = support.closure(client, day, number=n + 1, venue="shop")
            support.receive(engine, raw)
            # Armed once the day is claimed and read: the next matching write is in the post.
            armed["point"] = None

            def post(*args: Any, _point: str = point, **kwargs: Any) -> Any:
                armed["point"] = _point
                return original_post(*args, **kwargs)

            with session_scope(engine) as session:
                lines_before = session.scalar(select(func.count()).select_from(EntryLineRow))
            support.service.post = post  # type: ignore[assignment]
            try:
                with pytest.raises(TransientError):
                    support.run(engine, client, day, run_id=f"drop-{n}")
            finally:
                support.service.post = original_post  # type: ignore[assignment]
            tally.tried("upstream", f"PostgreSQL backend killed at {point}")
            assert armed["fired"] == n + 1, f"the backend was not killed at {point}"
            with session_scope(engine) as session:
                assert session.scalar(select(func.count()).select_from(EntryRow).where(
                    EntryRow.client_id == client.client_id,
                    EntryRow.business_date == day)) == 0
                assert session.scalar(select(func.count()).select_from(EntryLineRow)) == \
                    lines_before, "no line of the killed post remains"
            result = support.run(engine, client, day, run_id=f"redo-{n}",
                                 now=support.AFTER_LEASE)
            assert result.outcome.kind == "posted", result
            _check(engine, f"PostgreSQL killed at {point}", [(client.client_id, day)])
    finally:
        event.remove(engine, "before_cursor_execute", before_execute)
        event.remove(engine, "commit", before_commit)
