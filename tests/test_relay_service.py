"""The relay service (``toporder-sync relay``): idle it only asks when the next message is due.

``outbox.relay_loop`` on SQLite and PostgreSQL, against the real webhook receiver of
test_outbox: every statement it sends while idle is counted (SQLAlchemy's
``before_cursor_execute``), a message enqueued while it sleeps goes out within its interval,
and a stop lets the round under way finish. The command runs as a process of its own and is
stopped by SIGINT and SIGTERM. With a Prefect server (the test harness), a round is a
``relay-outbox`` flow run, and an idle relay makes none.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock
from sqlalchemy import Engine, event
from test_outbox import DAY, T0, Receiver, Reply, flag_day, receiver, row, webhook

from toporder_sync import notifications, outbox
from toporder_sync.core.errors import TransientError
from toporder_sync.ledger.db import session_scope

__all__ = ["receiver", "webhook"]  # fixtures of test_outbox, used here by name

BIN = Path(sys.executable).parent
INTERVAL = 0.05  # seconds between two looks of an idle loop in these tests


class Statements:
    """Every statement sent to the engine's database while listening."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sent: list[str] = []

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.sent.append(" ".join(statement.split()).lower())


class Rounds:
    """The rounds of delivery the loop ran: real ones, through the webhook handler."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.handler = notifications.WebhookHandler(engine)
        self.engine, self.clock = engine, clock
        self.reports: list[outbox.RelayReport] = []

    async def __call__(self) -> outbox.RelayReport:
        report = await asyncio.to_thread(outbox.relay, self.engine,
                                         {"day.flagged": self.handler}, now=self.clock)
        self.reports.append(report)
        return report


@pytest.fixture
def rounds(engine: Engine) -> Iterator[Rounds]:
    made = Rounds(engine, lambda: datetime.now(UTC))
    yield made
    made.handler.close()


def run_loop(engine: Engine, deliver: Callable[[], Awaitable[outbox.RelayReport]], *,
             interval: float, now: Callable[[], datetime],
             meanwhile: Callable[[asyncio.Event], Awaitable[None]]) -> list[TransientError]:
    """Run the loop until ``meanwhile`` has set its stop event; the errors it reported."""
    errors: list[TransientError] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(outbox.relay_loop(
            engine, ("day.flagged",), deliver, stop=stop, interval=interval, now=now,
            on_error=errors.append))
        await meanwhile(stop)
        assert stop.is_set()
        # A stopped loop returns within moments (it is not waiting out its interval).
        await asyncio.wait_for(loop, timeout=5)

    asyncio.run(main())
    return errors


def stop_after(seconds: float) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def meanwhile(stop: asyncio.Event) -> None:
        await asyncio.sleep(seconds)
        stop.set()

    return meanwhile


def test_an_idle_loop_only_asks_when_the_next_message_is_due(
    engine: Engine, client_id: str, webhook: Receiver, rounds: Rounds,
) -> None:
    # Pending but not due (an hour ahead of the loop's clock), and due but of a topic this
    # relay has no handler for: neither is a reason for a round.
    clock = Clock(T0)
    flag_day(engine, client_id, now=T0 + timedelta(hours=1))
    with session_scope(engine) as session:
        outbox.enqueue(session, topic="other.topic", client_id=client_id, business_date=DAY,
                       payload={}, now=T0)

    with Statements(engine) as statements:
        errors = run_loop(engine, rounds, interval=INTERVAL, now=clock,
                          meanwhile=stop_after(20 * INTERVAL))

    assert errors == [] and rounds.reports == [] and webhook.requests == []
    # One look per interval, and each look is the one small SELECT (plus nothing else).
    assert 5 <= len(statements.sent) <= 21
    assert set(statements.sent) == {statements.sent[0]}
    assert statements.sent[0].startswith("select min(outbox.next_attempt_at)")


def test_a_message_enqueued_while_idle_goes_out_within_the_interval(
    engine: Engine, client_id: str, webhook: Receiver, rounds: Rounds,
) -> None:
    interval = 1.0
    sent_after: list[float] = []

    async def meanwhile(stop: asyncio.Event) -> None:
        await asyncio.sleep(interval / 2)  # the loop is asleep, nothing due
        enqueued = time.monotonic()
        event_id = await asyncio.to_thread(flag_day, engine, client_id,
                                           now=datetime.now(UTC))
        while event_id not in webhook.accepted and time.monotonic() < enqueued + 10:
            await asyncio.sleep(0.01)
        sent_after.append(time.monotonic() - enqueued)
        stop.set()

    errors = run_loop(engine, rounds, interval=interval, now=lambda: datetime.now(UTC),
                      meanwhile=meanwhile)

    assert errors == [] and len(webhook.accepted) == 1
    # Within the interval, give or take a loaded machine's scheduling.
    assert sent_after[0] < interval + 0.5
    assert rounds.reports == [outbox.RelayReport(claimed=1, sent=1)]
    [event_id] = webhook.accepted
    assert row(engine, event_id).status == "sent"


def test_due_messages_go_out_in_rounds_until_none_is_due(
    engine: Engine, client_id: str, webhook: Receiver,
) -> None:
    # A full round (limit 2 of 5 due) is followed by another at once, not after the interval.
    events = [flag_day(engine, client_id, DAY - timedelta(days=n)) for n in range(5)]
    handler = notifications.WebhookHandler(engine)
    reports: list[outbox.RelayReport] = []

    async def deliver() -> outbox.RelayReport:
        report = await asyncio.to_thread(outbox.relay, engine, {"day.flagged": handler},
                                         now=lambda: T0 + timedelta(minutes=1), limit=2)
        reports.append(report)
        return report

    async def meanwhile(stop: asyncio.Event) -> None:
        deadline = time.monotonic() + 10
        while len(webhook.accepted) < len(events) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        stop.set()

    started = time.monotonic()
    try:
        run_loop(engine, deliver, interval=30, now=lambda: T0 + timedelta(minutes=1),
                 meanwhile=meanwhile)
    finally:
        handler.close()
    assert time.monotonic() - started < 10
    assert set(webhook.accepted) == set(events)
    assert [r.sent for r in reports] == [2, 2, 1]


def test_a_stop_lets_the_round_under_way_finish(
    engine: Engine, client_id: str, webhook: Receiver, rounds: Rounds,
) -> None:
    event_id = flag_day(engine, client_id, now=datetime.now(UTC))
    webhook.script.append(Reply(delay=0.5))

    async def meanwhile(stop: asyncio.Event) -> None:
        while not webhook.requests:  # the receiver holds the request for 0.5 s
            await asyncio.sleep(0.01)
        stop.set()

    run_loop(engine, rounds, interval=INTERVAL, now=lambda: datetime.now(UTC),
             meanwhile=meanwhile)
    assert rounds.reports == [outbox.RelayReport(claimed=1, sent=1)]
    assert row(engine, event_id).status == "sent"


def test_a_failed_round_waits_the_interval_and_is_reported(engine: Engine,
                                                           client_id: str) -> None:
    flag_day(engine, client_id)
    calls: list[float] = []

    async def unavailable() -> outbox.RelayReport:
        calls.append(time.monotonic())
        raise TransientError("database temporarily unavailable: locked")

    errors = run_loop(engine, unavailable, interval=0.2, now=lambda: T0,
                      meanwhile=stop_after(0.5))
    assert 2 <= len(calls) <= 3 and len(errors) == len(calls)
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(calls))
    assert "locked" in str(errors[0])


# --- the command ------------------------------------------------------------------------------

def start_relay(ledger_url: str, *args: str,
                env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``toporder-sync relay`` as a service, once it says it has started."""
    environment = {**os.environ, "TOPORDER_SYNC_DATABASE_URL": ledger_url,
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                   **(env or {})}
    if env is None:
        environment.pop("PREFECT_API_URL", None)
    process = subprocess.Popen([str(BIN / "toporder-sync"), "relay", *args], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    started = process.stderr.readline()
    assert started.startswith("relay: "), (started, process.stderr.read())
    return process


@pytest.mark.parametrize("signum", [pytest.param(signal.SIGTERM, id="SIGTERM"),
                                    pytest.param(signal.SIGINT, id="SIGINT")])
def test_the_command_delivers_then_stops_on_a_signal_with_one_line(
    ledger_url: str, engine: Engine, client_id: str, webhook: Receiver, signum: int,
) -> None:
    process = start_relay(ledger_url, "--interval", "1")
    try:
        event_id = flag_day(engine, client_id, now=datetime.now(UTC))
        deadline = time.monotonic() + 15
        while event_id not in webhook.accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "1 due: 1 sent" in stdout
    assert stderr.splitlines() == ["relay stopped"] and "Traceback" not in stderr
    assert list(webhook.accepted) == [event_id]


# --- as flow runs on a Prefect server --------------------------------------------------------

@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


async def relay_flow_runs() -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async with get_client() as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["relay-outbox"])))


@pytest.mark.prefect
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_with_prefect_a_round_is_a_flow_run_and_idle_makes_none(
    prefect_server: None, ledger_url: str, engine: Engine, client_id: str, webhook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from toporder_sync.flows.relay import relay_round

    monkeypatch.setenv("TOPORDER_SYNC_DATABASE_URL", ledger_url)  # the flow's ledger
    deliver = functools.partial(relay_round, 100)
    # Idle: nothing pending, then nothing due.
    run_loop(engine, deliver, interval=INTERVAL, now=lambda: datetime.now(UTC),
             meanwhile=stop_after(10 * INTERVAL))
    flag_day(engine, client_id, now=datetime.now(UTC) + timedelta(hours=1))
    run_loop(engine, deliver, interval=INTERVAL, now=lambda: datetime.now(UTC),
             meanwhile=stop_after(10 * INTERVAL))
    assert asyncio.run(relay_flow_runs()) == []

    event_id = flag_day(engine, client_id, DAY - timedelta(days=1), now=datetime.now(UTC))

    async def meanwhile(stop: asyncio.Event) -> None:
        deadline = time.monotonic() + 60
        while event_id not in webhook.accepted and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(10 * INTERVAL)  # a few idle looks after the round
        stop.set()

    errors = run_loop(engine, deliver, interval=INTERVAL, now=lambda: datetime.now(UTC),
                      meanwhile=meanwhile)
    assert errors == [] and list(webhook.accepted) == [event_id]
    [run] = asyncio.run(relay_flow_runs())
    assert run.state.is_completed() and run.state.name == "Relayed"
    assert run.state.message == "1 due: 1 sent, 0 to retry, 0 waiting for a webhook, 0 dead"
