"""Claims that end with their run: a short lease the live run renews, and ``days release``.

A run killed mid-way holds its client-day for one short lease (``day.CLAIM_LEASE``), not a
quarter of an hour; a live run renews its claim while the day runs, so that a slow day is never
taken over; ``toporder-sync days release`` frees a dead run's claim (its lease run out, or its
Prefect run ended or unknown to the API) and refuses a live one with exit 6.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from click.testing import CliRunner, Result
from conftest import Clock
from reliability import support
from sqlalchemy import Engine

from toporder_sync import cli_days, cli_support, day, service
from toporder_sync.core import pipeline
from toporder_sync.ledger import claims, clients
from toporder_sync.ledger.db import DATABASE_URL_ENV, make_engine, session_scope, upgrade
from toporder_sync.outcome import EXIT_ALREADY_RUNNING, EXIT_REFUSED, Outcome
from toporder_sync.sources import InboxSource

NOW = support.NOW
DAY = date(2026, 11, 27)
# A lease short enough for a test to watch it renewed (every 0.1 s).
SHORT = timedelta(seconds=0.3)


def _received(engine: Engine, client_id: str) -> clients.ClientRecord:
    client = support.activate(engine, client_id)
    support.receive(engine, support.closure(client, DAY))
    return client


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


class SlowAssess:
    """``pipeline.assess`` that waits, once inside, until the test lets it go on."""

    def __init__(self) -> None:
        self.inside, self.go = threading.Event(), threading.Event()
        self.assess = pipeline.assess

    def __call__(self, *args: Any, **kwargs: Any) -> pipeline.Assessment:
        self.inside.set()
        if not self.go.wait(60):
            raise AssertionError("the test never let the day go on")
        return self.assess(*args, **kwargs)


@pytest.fixture
def renewals(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each renewal of a claim answered (held or lost), in order."""
    answers: list[bool] = []
    renew = claims.renew_claim

    def counted(*args: Any, **kwargs: Any) -> bool:
        held = renew(*args, **kwargs)
        answers.append(held)
        return held

    monkeypatch.setattr(claims, "renew_claim", counted)
    return answers


def _slow_day(engine: Engine, client: clients.ClientRecord, clock: Clock, run_id: str,
              pool: ThreadPoolExecutor) -> tuple[SlowAssess, Future[day.DayResult]]:
    slow = SlowAssess()
    running = pool.submit(day.run_day, engine, client, DAY, source=InboxSource(engine),
                          run_id=run_id, now=clock, lease=SHORT, assess=slow)
    assert slow.inside.wait(20), "the day never reached its pure stages"
    return slow, running


# --- the lease ----------------------------------------------------------------------------


def test_a_run_killed_mid_way_holds_its_day_for_one_short_lease(
        engine: Engine, ledger_url: str) -> None:
    client = _received(engine, "killed")

    def work(child: Engine) -> None:
        support.run(child, client, DAY, run_id="killed-run")

    assert support.in_child(ledger_url, work, crash_at="after_parse") == -9
    claim = service.claim_of(engine, "killed", DAY)
    assert claim is not None and claim.run_id == "killed-run"
    assert claim.until == NOW + day.CLAIM_LEASE <= NOW + timedelta(minutes=2)
    early = support.run(engine, client, DAY, run_id="early", now=NOW + timedelta(seconds=30))
    assert early.outcome is Outcome.ALREADY_RUNNING
    later = support.run(engine, client, DAY, run_id="later", now=NOW + timedelta(minutes=2))
    assert later.outcome is Outcome.POSTED
    assert service.claim_of(engine, "killed", DAY) is None


def test_a_live_run_renews_its_claim_so_a_slow_day_is_never_taken_over(
        engine: Engine, renewals: list[bool], caplog: pytest.LogCaptureFixture) -> None:
    client = _received(engine, "slow")
    clock = Clock(NOW)
    with ThreadPoolExecutor(1) as pool, caplog.at_level(logging.WARNING, "toporder_sync"):
        slow, running = _slow_day(engine, client, clock, "slow-run", pool)
        clock.advance(timedelta(minutes=10))  # the first lease is long over by this clock

        def renewed() -> bool:
            claim = service.claim_of(engine, "slow", DAY)
            return claim is not None and claim.until == clock.now + SHORT

        _wait_for(renewed, "the live run renews its claim")
        assert not service.claim(engine, "slow", DAY, run_id="intruder", now=clock.now,
                                 lease=SHORT)
        rerun = day.run_day(engine, client, DAY, source=InboxSource(engine), run_id="rerun",
                            now=clock, lease=SHORT)
        assert rerun.outcome is Outcome.ALREADY_RUNNING
        slow.go.set()
        assert running.result(30).outcome is Outcome.POSTED
    assert service.claim_of(engine, "slow", DAY) is None, "its last transaction let go"
    # A renewal may come between the last transaction, letting go, and the keeper's stop: it
    # finds the day free and changes nothing, quietly.
    assert renewals[0] is True and all(renewals[:-1])
    assert "claim of slow" not in caplog.text
    assert not [t for t in threading.enumerate() if t.name.startswith("claim slow")]

    # A day that ends within a third of its lease (nearly all of them) renews nothing.
    before = len(renewals)
    quick = _received(engine, "quick")
    assert support.run(engine, quick, DAY, run_id="quick-run").outcome is Outcome.POSTED
    assert len(renewals) == before


def test_a_run_whose_claim_was_taken_over_goes_on_and_leaves_the_new_holder_alone(
        engine: Engine, renewals: list[bool], caplog: pytest.LogCaptureFixture) -> None:
    client = _received(engine, "taken")
    clock = Clock(NOW)
    with ThreadPoolExecutor(1) as pool, caplog.at_level(logging.WARNING, "toporder_sync"):
        slow, running = _slow_day(engine, client, clock, "first-run", pool)
        claim = service.claim_of(engine, "taken", DAY)
        assert claim is not None and service.free(engine, claim)  # freed by hand
        assert service.claim(engine, "taken", DAY, run_id="second-run", now=clock.now,
                             lease=timedelta(minutes=5))
        _wait_for(lambda: False in renewals, "a renewal finds the claim lost")
        slow.go.set()
        assert running.result(30).outcome is Outcome.POSTED
    held = service.claim_of(engine, "taken", DAY)
    assert held is not None and held.run_id == "second-run"
    assert renewals[-1] is False and renewals.count(False) == 1, "no renewal after the loss"
    assert ("claim of taken 2026-11-27 (run first-run) lost: taken over by run second-run"
            in caplog.text)


# --- days release ---------------------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The ledger of TOPORDER_SYNC_DATABASE_URL (a SQLite file), client ``alpha`` active, and
    the command line's clock at NOW."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    monkeypatch.setattr(cli_support, "now", lambda: NOW)
    engine = make_engine(url)
    upgrade(engine)
    support.activate(engine, "alpha")
    yield engine
    engine.dispose()


def days(*args: str) -> Result:
    return CliRunner().invoke(cli_days.days, list(args))


def _claimed(engine: Engine, run_id: str, *, at: datetime = NOW,
             lease: timedelta = day.CLAIM_LEASE) -> None:
    assert service.claim(engine, "alpha", DAY, run_id=run_id, now=at, lease=lease)


def test_release_of_a_day_not_claimed_has_nothing_to_free(ledger: Engine) -> None:
    result = days("release", "alpha", "--date", str(DAY))
    assert (result.exit_code, result.output) == (
        0, "nothing to free: alpha 2026-11-27 is not claimed\n")


def test_release_of_an_unknown_client_is_refused(ledger: Engine) -> None:
    result = days("release", "nobody", "--date", str(DAY))
    assert result.exit_code == EXIT_REFUSED
    assert "unknown client 'nobody'" in result.output


def test_release_frees_a_claim_whose_lease_ran_out(ledger: Engine) -> None:
    _claimed(ledger, "dead-run", at=NOW - 2 * day.CLAIM_LEASE)
    result = days("release", "alpha", "--date", str(DAY))
    assert result.exit_code == 0, result.output
    assert result.output == ("freed the claim of run dead-run on alpha 2026-11-27 (its lease ran "
                             "out at 2026-11-28T05:28:30+00:00)\n")
    assert service.claim_of(ledger, "alpha", DAY) is None


def test_release_refuses_a_live_claim_whose_run_prefect_cannot_name(ledger: Engine) -> None:
    _claimed(ledger, "the-other-run")
    result = days("release", "alpha", "--date", str(DAY))
    assert result.exit_code == EXIT_ALREADY_RUNNING == 6
    assert result.output.startswith(
        "refused: run the-other-run holds alpha 2026-11-27 until 2026-11-28T05:31:30+00:00 "
        "(not a Prefect run id: its fate is unknown)")
    assert len(result.output.splitlines()) == 1
    held = service.claim_of(ledger, "alpha", DAY)
    assert held is not None and held.run_id == "the-other-run"


def test_list_claims_shows_each_holder_and_its_lease(ledger: Engine) -> None:
    assert days("list-claims").output == "no client-day is claimed\n"
    _claimed(ledger, "run-a")
    assert service.claim(ledger, "alpha", DAY - timedelta(days=1), run_id="run-b",
                         now=NOW - timedelta(hours=1), lease=day.CLAIM_LEASE)
    result = days("list-claims", "alpha")
    assert (result.exit_code, result.output.splitlines()) == (0, [
        "alpha 2026-11-26 run run-b until 2026-11-28T04:31:30+00:00 (lease ran out)",
        "alpha 2026-11-27 run run-a until 2026-11-28T05:31:30+00:00 (lease running)",
    ])
    assert days("list-claims", "nobody").exit_code == EXIT_REFUSED


def test_the_days_commands_start_without_importing_prefect() -> None:
    code = ("import sys, toporder_sync.cli_days; "
            "sys.exit(1 if any(m.split('.')[0] == 'prefect' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- days release, asking Prefect ------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


async def _flow_run(state: Any) -> str:
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow(name="claim-holder")
    def holder() -> None:
        """Never run: its flow runs stand for runs holding a claim."""

    async with get_client() as client:
        return str((await client.create_flow_run(holder, state=state)).id)


async def _task_run(flow_run_id: str) -> str:
    from prefect import task
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    @task(name="claim-holder-days")
    def days_task() -> None:
        """Never run: its task runs stand for a catch-up's ``client-days``."""

    async with get_client() as client:
        run = await client.create_task_run(days_task, flow_run_id=UUID(flow_run_id),
                                           dynamic_key="0", state=Running())
    return f"task-run:{run.id}"


async def _task_run_known(run_id: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_task_run(UUID(run_id.removeprefix("task-run:")))
        except ObjectNotFound:
            return False
    return True


async def _set_state(flow_run_id: str, state: Any) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await client.set_flow_run_state(UUID(flow_run_id), state, force=True)


@pytest.mark.prefect
def test_release_asks_prefect_and_frees_only_a_run_that_ended(
        prefect_api: None, ledger: Engine) -> None:
    from prefect.states import Crashed, Running

    run_id = asyncio.run(_flow_run(Running()))
    _claimed(ledger, run_id)
    refused = days("release", "alpha", "--date", str(DAY))
    assert refused.exit_code == EXIT_ALREADY_RUNNING, refused.output
    assert f"refused: run {run_id} holds alpha 2026-11-27" in refused.output
    assert "(its flow run is Running)" in refused.output

    asyncio.run(_set_state(run_id, Crashed()))
    freed = days("release", "alpha", "--date", str(DAY))
    assert (freed.exit_code, freed.output) == (
        0, f"freed the claim of run {run_id} on alpha 2026-11-27 (its flow run is Crashed)\n")
    assert service.claim_of(ledger, "alpha", DAY) is None


@pytest.mark.prefect
def test_release_frees_a_run_the_prefect_api_never_knew(
        prefect_api: None, ledger: Engine) -> None:
    ghost = str(uuid4())
    _claimed(ledger, ghost)
    result = days("release", "alpha", "--date", str(DAY))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"freed the claim of run {ghost} on alpha 2026-11-27 "
                                    "(its flow run does not exist on the Prefect API at http")
    assert service.claim_of(ledger, "alpha", DAY) is None


@pytest.mark.prefect
def test_release_frees_a_catch_up_task_run_once_its_flow_run_is_cancelled(
        prefect_api: None, ledger: Engine) -> None:
    from prefect.states import Cancelled, Running

    flow_run_id = asyncio.run(_flow_run(Running()))
    holder = asyncio.run(_task_run(flow_run_id))
    _claimed(ledger, holder)
    refused = days("release", "alpha", "--date", str(DAY))
    assert refused.exit_code == EXIT_ALREADY_RUNNING, refused.output
    assert "(its task run is Running)" in refused.output

    asyncio.run(_set_state(flow_run_id, Cancelled()))
    freed = days("release", "alpha", "--date", str(DAY))
    assert freed.exit_code == 0, freed.output
    assert freed.output == (f"freed the claim of run {holder} on alpha 2026-11-27 (the flow "
                            "run of its task run is Cancelled)\n")



@pytest.mark.prefect
def test_a_catch_up_s_task_run_renews_its_claim_and_release_refuses_it_while_it_runs(
        prefect_api: None, ledger: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from toporder_sync.flows.fleet import catch_up
    from toporder_sync.tasks import runtime

    with session_scope(ledger) as session:
        client = clients.client_and_source(session, "alpha")[0]
    support.receive(ledger, support.closure(client, DAY))
    clock = Clock(NOW)
    monkeypatch.setattr(runtime, "now", clock)
    defaults = day.run_day.__kwdefaults__  # the lease a flow's day is run with
    assert defaults is not None
    monkeypatch.setitem(defaults, "lease", SHORT)
    slow = SlowAssess()
    monkeypatch.setattr(pipeline, "assess", slow)  # as a catch-up without workers calls it
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(asyncio.run, catch_up(DAY, DAY, clients=["alpha"], processes=0,
                                                    return_state=True))
        assert slow.inside.wait(120), "the catch-up never reached the day's pure stages"
        claim = service.claim_of(ledger, "alpha", DAY)
        assert claim is not None and claim.run_id.startswith("task-run:")
        clock.advance(timedelta(minutes=10))

        def renewed() -> bool:
            held = service.claim_of(ledger, "alpha", DAY)
            return held is not None and held.until == clock.now + SHORT

        _wait_for(renewed, "the task run renews its claim")
        # Prefect records a task run from its events, a moment later: until then it is not
        # known, which is no proof of death either.
        unknown = days("release", "alpha", "--date", str(DAY))
        assert unknown.exit_code == EXIT_ALREADY_RUNNING, unknown.output
        _wait_for(lambda: asyncio.run(_task_run_known(claim.run_id)),
                  "the task run is recorded", timeout=60)
        refused = days("release", "alpha", "--date", str(DAY))
        slow.go.set()
        state = running.result(120)
    assert refused.exit_code == EXIT_ALREADY_RUNNING, refused.output
    assert f"refused: run {claim.run_id} holds alpha 2026-11-27" in refused.output
    assert "(its task run is Running)" in refused.output
    assert state.name == "All posted", state.message
    assert service.claim_of(ledger, "alpha", DAY) is None
