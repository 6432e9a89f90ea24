"""The fleet under Prefect's test harness, on a SQLite ledger: catch-up, dispatch, claims,
scheduled days, waiting for a closure, the flagged-day event and its automation.

Closures come from the simulator and are delivered as Toporder delivers them
(``service.receive``); the flows' clock is fixed by replacing ``tasks.runtime.now``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterStartTime,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import State, StateType
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.flow_engine import run_flow_async
from prefect.states import Scheduled
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import Engine

from toporder_sync import automations, core_processes, day, fleet, service
from toporder_sync.flows.daily import post_client_day
from toporder_sync.flows.fleet import catch_up, dispatch_daily, run_client_days
from toporder_sync.ledger import clients as ledger_clients
from toporder_sync.ledger import days as ledger_days
from toporder_sync.ledger import journal
from toporder_sync.ledger.db import DATABASE_URL_ENV, get_engine, session_scope, upgrade
from toporder_sync.outcome import Outcome
from toporder_sync.simulator import dumps, generate_series
from toporder_sync.tasks import daily as t
from toporder_sync.tasks import runtime

pytestmark = pytest.mark.prefect

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Set the flows' clock (fixed at NOW unless a test moves it)."""

    def set_clock(now: datetime) -> None:
        monkeypatch.setattr(runtime, "now", lambda: now)

    set_clock(NOW)
    return set_clock


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Any) -> Engine:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    engine = get_engine(url)
    upgrade(engine)
    return engine


def activate(engine: Engine, client_id: str, activated_on: date, *, run_hour: int = 6,
             territory: str = "metropole") -> str:
    with session_scope(engine) as session:
        client = ledger_clients.activate_client(session, client_id, name=client_id.title(),
                                                activated_on=activated_on, territory=territory,
                                                run_hour=run_hour, now=NOW)
    return client.integration_id


def deliver(engine: Engine, integration_id: str, start: date, days: int,
            faults: dict[date, frozenset[str]] | None = None) -> None:
    for document in generate_series(integration_id=integration_id, establishment_id="est-1",
                                    establishment_name="Chez nous", start=start, days=days,
                                    perpetual_start=Decimal("1000.00"), faults_by_day=faults):
        service.receive(engine, dumps(document), "simulator", now=NOW)


def statuses(engine: Engine, client_id: str) -> dict[date, str]:
    with session_scope(engine) as session:
        return {s.business_date: s.state for s in ledger_days.day_statuses(session, client_id)}


async def _subflow_runs(parent_id: Any) -> list[Any]:
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])))


async def _client_day_runs(dispatch: Any) -> list[Any]:
    """The ``post-client-day`` flow runs a dispatch started: top-level runs of their own, the
    ones that started while the dispatch ran (tests run one flow at a time)."""
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=dispatch.start_time,
                                              before_=dispatch.end_time)))
        flows = {run.flow_id for run in runs}
        names = {f: (await client.read_flow(f)).name for f in flows}
    assert all(run.parent_task_run_id is None for run in runs)
    return [run for run in runs if names[run.flow_id] == "post-client-day"]


async def _client_days_task_runs(flow_run_id: Any, expected: int) -> list[Any]:
    """The client-days task runs of a flow run, once the server holds ``expected`` of them in a
    final state: it records task runs from their events, asynchronously (seen lagging: 8 of 9,
    one still Running, just after the catch-up ended)."""
    runs: list[Any] = []
    async with get_client() as client:
        for _ in range(60):
            runs = [run for run in await client.read_task_runs(flow_run_filter=FlowRunFilter(
                        id=FlowRunFilterId(any_=[flow_run_id])))
                    if run.task_key.startswith("client_days")]
            if len(runs) >= expected and all(run.state and run.state.is_final() for run in runs):
                break
            await asyncio.sleep(0.5)
    return runs


async def _runs_tagged(*tags: str) -> list[Any]:
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=list(tags))))


async def _artifacts(flow_run_id: Any) -> list[Any]:
    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


async def _flagged_events(client_id: str, expected: int) -> list[Any]:
    """The flagged-day events of a client, as the server stored them (written asynchronously)."""
    async with get_client() as client:
        for _ in range(60):
            page = await client.read_events(limit=50, filter=EventFilter(
                event=EventNameFilter(name=[t.FLAGGED_EVENT]),
                resource=EventResourceFilter(id=[f"toporder.client.{client_id}"])))
            if len(page.events) >= expected:
                return list(page.events)
            await asyncio.sleep(0.5)
    return []


def test_catch_up_runs_each_client_s_days_as_a_task_run_and_summarizes(ledger: Engine) -> None:
    day1, day2, day3 = date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26)
    deliver(ledger, activate(ledger, "alpha", date(2026, 11, 1)), day1, 3)
    deliver(ledger, activate(ledger, "bravo", date(2026, 11, 1), territory="corse"), day1, 3,
            faults={day2: frozenset({"unbalanced"})})
    deliver(ledger, activate(ledger, "charlie", day2), day2, 2)

    state = asyncio.run(catch_up(day1, day3, concurrency=4, return_state=True))

    # Red, named after who must act on how many days.
    assert (state.type.value, state.name) == ("FAILED", "1 for Toporder"), state.message
    assert state.message == ("9 client-days: 7 posted, 1 flagged (1 POS data error), "
                             "1 refused")
    catch_up_id = state.state_details.flow_run_id
    # Each client's days are a task run of the catch-up named after them, no subflow.
    assert asyncio.run(_subflow_runs(catch_up_id)) == []
    runs = asyncio.run(_client_days_task_runs(catch_up_id, 3))
    by_name = {run.name: run for run in runs}
    assert sorted(by_name) == ["alpha 2026-11-24 to 2026-11-26", "bravo 2026-11-24 to 2026-11-26",
                               "charlie 2026-11-24 to 2026-11-26"]
    alpha, bravo, charlie = (by_name[f"{c} 2026-11-24 to 2026-11-26"]
                             for c in ("alpha", "bravo", "charlie"))
    # Each ends in its most pressing day's state, counting its days and naming those to see.
    assert (alpha.state.type.value, alpha.state.name) == ("COMPLETED", "Posted")
    assert alpha.state.message == "3 client-days: 3 posted"
    assert (bravo.state.type.value, bravo.state.name) == ("FAILED", "POS data error")
    assert bravo.state.message.startswith(
        "3 client-days: 2 posted, 1 flagged (1 POS data error); 2026-11-25 POS data error: "
        "Toporder must correct the closure")
    assert (charlie.state.type.value, charlie.state.name) == ("CANCELLED", "Refused")
    with session_scope(ledger) as session:
        numbers = {c: sorted(e.entry.date
                             for e in journal.entries_between(session, c, day1, day3))
                   for c in ("alpha", "bravo", "charlie")}
    assert numbers == {"alpha": [day1, day2, day3], "bravo": [day1, day3],
                       "charlie": [day2, day3]}
    assert statuses(ledger, "charlie")[day1] == "refused"
    artifacts = asyncio.run(_artifacts(catch_up_id))
    [summary] = [a for a in artifacts if a.key is None]
    assert "| flagged: POS data error | 1 |" in summary.data
    # The failures of each client-day to look at, on its client's task run; no entry of a
    # posted day unless asked (posted_artifacts).
    assert {(a.key, a.task_run_id) for a in artifacts if a.key and a.task_run_id} == {
        ("client-charlie", charlie.id)}
    assert "| bravo | 2026-11-25 | POS data error | Toporder |" in summary.data
    # The flagged day is a flow run of its own, as a dispatched day would be: its name, tags,
    # state, and its client's artifact.
    [flagged] = asyncio.run(_runs_tagged("client:bravo", "needs-action"))
    assert flagged.name == "bravo 2026-11-25" and flagged.parent_task_run_id is None
    assert (flagged.state.type.value, flagged.state.name) == ("FAILED", "POS data error")
    assert {"toporder-sync", "territory:corse", "day:2026-11-25", "needs:toporder"} <= set(
        flagged.tags)
    [client_artifact] = asyncio.run(_artifacts(flagged.id))
    assert client_artifact.key == "client-bravo" and "payments: debit" in client_artifact.data
    # Its recent days link each run by its kind: the posted day to its client's task run.
    assert "| 2026-11-24 | Posted | nobody | http://127.0.0.1:" in client_artifact.data
    assert f"/runs/task-run/{bravo.id} |" in client_artifact.data
    # The board of each day of the range: the flagged day links its run.
    boards = {a.key: a for a in artifacts if a.key and a.key.startswith("board-")}
    assert sorted(boards) == ["board-2026-11-24", "board-2026-11-25", "board-2026-11-26"]
    [row] = boards["board-2026-11-25"].data if isinstance(
        boards["board-2026-11-25"].data, list) else json.loads(boards["board-2026-11-25"].data)
    assert (row["client"], row["state"], row["who must act"]) == (
        "bravo", "POS data error", "Toporder")
    assert row["run"].endswith(str(flagged.id))

    again = asyncio.run(catch_up(day1, day1, ["alpha"], posted_artifacts=True,
                                 return_state=True))
    assert again.message == "1 client-days: 1 posted"
    [rerun] = asyncio.run(_client_days_task_runs(again.state_details.flow_run_id, 1))
    assert rerun.name == "alpha 2026-11-24"
    [entry] = [a for a in asyncio.run(_artifacts(again.state_details.flow_run_id))
               if a.key and a.task_run_id]
    assert entry.task_run_id == rerun.id and entry.key == "client-alpha"
    assert "| 511500 |" in entry.data


@pytest.mark.skipif(not core_processes.fork_available(), reason="workers are forked on Linux")
def test_a_catch_up_computes_its_days_in_worker_processes_unless_told_not_to(
        ledger: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """``processes``: the pure stages of each day in a worker, the rest here, same ledger."""
    first = date(2026, 11, 24)
    deliver(ledger, activate(ledger, "alpha", date(2026, 11, 1)), first, 3,
            faults={first + timedelta(days=1): frozenset({"unbalanced"})})
    deliver(ledger, activate(ledger, "bravo", date(2026, 11, 1)), first, 3)
    in_workers: list[int] = []  # worker processes alive as each day is computed
    assess = core_processes.CoreProcesses.assess

    def counted(self: core_processes.CoreProcesses, *args: Any, **kwargs: Any) -> Any:
        answer = assess(self, *args, **kwargs)
        in_workers.append(len(multiprocessing.active_children()))
        return answer

    monkeypatch.setattr(core_processes.CoreProcesses, "assess", counted)
    state = asyncio.run(catch_up(first, first + timedelta(days=2), processes=1,
                                 return_state=True))

    assert state.message == "6 client-days: 5 posted, 1 flagged (1 POS data error)"
    assert len(in_workers) == 6
    assert in_workers == [1] * 6
    assert set(statuses(ledger, "alpha").values()) == {"posted", "flagged"}

    deliver(ledger, activate(ledger, "charlie", date(2026, 11, 1)), first, 3)
    state = asyncio.run(catch_up(first, first + timedelta(days=2), ["charlie"], processes=0,
                                 return_state=True))
    assert state.message == "3 client-days: 3 posted"
    assert in_workers[6:] == [0] * 3  # no worker: computed in the days' threads


def test_a_catch_up_posts_a_client_s_days_in_date_order_without_false_gaps(
        ledger: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Identity 6 reads the closure posted for the day before: run at once, a client's days
    were posted out of order and the later ones warned of closures missing that were not
    (before the days of a client ran in one task run, 4 of these 12 days did). The client is
    read from the ledger once for its 12 days."""
    first = date(2026, 11, 10)
    deliver(ledger, activate(ledger, "alpha", date(2026, 11, 1)), first, 12)
    reads: list[str] = []
    read_client = day.client_and_source

    def counted(engine: Engine, client_id: str) -> Any:
        reads.append(client_id)
        return read_client(engine, client_id)

    monkeypatch.setattr(day, "client_and_source", counted)

    state = asyncio.run(catch_up(first, first + timedelta(days=11), concurrency=10,
                                 return_state=True))

    assert state.message == "12 client-days: 12 posted"
    assert reads == ["alpha"]
    [run] = asyncio.run(_client_days_task_runs(state.state_details.flow_run_id, 1))
    assert (run.state.name, run.state.message) == ("Posted", "12 client-days: 12 posted")
    with session_scope(ledger) as session:
        entries = journal.entries_between(session, "alpha", first, first + timedelta(days=11))
        warned = [s.business_date for s in ledger_days.day_statuses(session, "alpha")
                  if s.warnings]
    assert [e.entry.date for e in sorted(entries, key=lambda e: e.number)] == [
        first + timedelta(days=n) for n in range(12)]
    assert warned == []


def test_a_day_failing_unexpectedly_stops_its_client_s_later_days_only(
        ledger: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    first = date(2026, 11, 24)
    deliver(ledger, activate(ledger, "alpha", date(2026, 11, 1)), first, 3)
    deliver(ledger, activate(ledger, "bravo", date(2026, 11, 1)), first, 3)
    post_day = t._post_day

    def failing(client_id: str, business_date: date | None, *args: Any) -> Any:
        if (client_id, business_date) == ("alpha", first + timedelta(days=1)):
            raise KeyError("a bug")
        return post_day(client_id, business_date, *args)

    monkeypatch.setattr(t, "_post_day", failing)
    state = asyncio.run(catch_up(first, first + timedelta(days=2), concurrency=2,
                                 return_state=True))

    assert state.is_failed() and state.name == "2 for the data team"
    assert state.message == "6 client-days: 4 posted, 1 error, 1 not run"
    assert statuses(ledger, "alpha") == {first: "posted", first + timedelta(days=1): "received",
                                         first + timedelta(days=2): "received"}
    assert set(statuses(ledger, "bravo").values()) == {"posted"}
    runs = asyncio.run(_client_days_task_runs(state.state_details.flow_run_id, 2))
    [alpha] = [run for run in runs if run.name.startswith("alpha")]
    assert (alpha.state.type.value, alpha.state.name) == ("FAILED", "Unexpected error")
    assert alpha.state.message == (
        "3 client-days: 1 posted, 1 error, 1 not run; 2026-11-25 Unexpected error: "
        "KeyError: 'a bug'; 2026-11-26 Not run: 2026-11-25 ended 'Unexpected error' "
        "first; run the catch-up again from 2026-11-25")


def test_a_day_that_hangs_is_abandoned_and_its_client_s_later_days_not_run(
        ledger: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    first = date(2026, 11, 24)
    deliver(ledger, activate(ledger, "alpha", date(2026, 11, 1)), first, 2)
    post_day = t._post_day

    def hanging(client_id: str, business_date: date | None, *args: Any) -> Any:
        if business_date == first:
            time.sleep(1.0)
        return post_day(client_id, business_date, *args)

    monkeypatch.setattr(t, "_post_day", hanging)
    monkeypatch.setattr(t, "DAY_TIMEOUT", 0.2)
    state = asyncio.run(catch_up(first, first + timedelta(days=1), return_state=True))

    assert state.message == "2 client-days: 1 error, 1 not run"
    [run] = asyncio.run(_client_days_task_runs(state.state_details.flow_run_id, 1))
    assert run.state.message.startswith(
        "2 client-days: 1 error, 1 not run; 2026-11-24 Unexpected error: TimeoutError: the "
        "day ran over 0.2 s; 2026-11-25 Not run: ")
    time.sleep(1.0)  # the abandoned day's thread ends; its claim kept any other run off it
    assert statuses(ledger, "alpha")[first + timedelta(days=1)] == "received"


def test_a_fleet_run_keeps_the_heap_it_started_with_frozen_only_while_it_runs() -> None:
    """``runtime.frozen_heap``: frozen while the client-days run, given back to the collector
    after, and a heap someone else froze stays frozen."""
    seen: list[int] = []

    async def run_day(client_day: fleet.ClientDay) -> list[fleet.DayOutcome]:
        seen.append(gc.get_freeze_count())
        return [fleet.DayOutcome(client_day.client_id, client_day.business_date,
                                 Outcome.POSTED, "entry n°1 posted")]

    plan = [fleet.ClientDay(f"c{n}", "metropole", date(2026, 11, 24)) for n in range(3)]
    assert gc.get_freeze_count() == 0
    state = asyncio.run(run_client_days(plan, 2, "heap", run_day))
    assert (state.name, state.message) == ("All posted", "3 client-days: 3 posted")
    assert len(seen) == 3 and min(seen) > 0
    assert gc.get_freeze_count() == 0

    gc.freeze()
    try:
        with runtime.frozen_heap():
            pass
        assert gc.get_freeze_count() > 0  # not unfrozen (0) by frozen_heap
    finally:
        gc.unfreeze()


def test_a_day_claimed_by_a_live_run_is_left_alone(ledger: Engine) -> None:
    day = date(2026, 11, 27)
    deliver(ledger, activate(ledger, "alpha", date(2026, 11, 1)), day, 1)
    assert service.claim(ledger, "alpha", day, run_id="the-other-run", now=NOW,
                         lease=timedelta(minutes=15))
    before = statuses(ledger, "alpha")

    state = asyncio.run(post_client_day("alpha", day, return_state=True))

    assert state.is_cancelled() and state.name == "Already running", state.message
    assert statuses(ledger, "alpha") == before
    with session_scope(ledger) as session:
        assert journal.entries_between(session, "alpha", day, day) == []
    service.release(ledger, "alpha", day, run_id="the-other-run")
    assert asyncio.run(post_client_day("alpha", day, return_state=True)).name == "Posted"


async def _run_scheduled(flow: Any, parameters: dict[str, Any], at: datetime) -> tuple[Any, Any]:
    """Run ``flow`` as a worker runs a scheduled deployment run: from a Scheduled flow run.

    ``at`` must be in the past: the engine waits for a scheduled time still to come.
    """
    async with get_client() as client:
        flow_run = await client.create_flow_run(flow, parameters=parameters,
                                                state=Scheduled(scheduled_time=at))
        state = await run_flow_async(flow, flow_run=flow_run, parameters=parameters,
                                     return_type="state")
        return state, await client.read_flow_run(flow_run.id)


def test_a_client_day_run_gives_its_outcome_as_a_value(ledger: Engine) -> None:
    day = date(2026, 11, 27)
    deliver(ledger, activate(ledger, "alpha", date(2026, 11, 1)), day, 1)

    state = asyncio.run(post_client_day("alpha", day, return_state=True))
    done = asyncio.run(t.outcome_of_run(state, "alpha", day))

    assert (done.client_id, done.business_date, done.outcome, done.message, done.run_id) == (
        "alpha", day, Outcome.POSTED, state.message, str(state.state_details.flow_run_id))


@pytest.mark.parametrize("state", [
    State(type=StateType.COMPLETED, name="Posted", message="named so, carrying no outcome"),
    State(type=StateType.CRASHED, name="Crashed", message="the worker died"),
    State(type=StateType.CANCELLED, name="Cancelled", message="cancelled from the UI"),
], ids=["a name alone", "crashed", "cancelled by hand"])
def test_a_client_day_run_that_ended_without_its_outcome_is_an_unexpected_error(
        state: State[Any]) -> None:
    done = asyncio.run(t.outcome_of_run(state, "alpha", date(2026, 11, 27)))
    assert done.outcome is Outcome.UNEXPECTED_ERROR
    assert done.message == f"{state.name}: {state.message}"


def test_a_scheduled_run_processes_the_day_before_its_start_and_is_named_after_it(
    ledger: Engine,
) -> None:
    deliver(ledger, activate(ledger, "alpha", date(2026, 11, 1)), date(2026, 11, 20), 1)
    # Scheduled at 06:00 in Paris on the 21st: the business day is the 20th.
    state, flow_run = asyncio.run(_run_scheduled(
        post_client_day, {"client_id": "alpha"}, datetime(2026, 11, 21, 5, 0, tzinfo=UTC)))

    assert state.name == "Posted", state.message
    assert flow_run.name == "alpha 2026-11-20"
    assert {"client:alpha", "territory:metropole"} <= set(flow_run.tags)
    assert statuses(ledger, "alpha") == {date(2026, 11, 20): "posted"}


def test_a_missing_closure_waits_until_the_deadline_then_is_missing(
    ledger: Engine, clock: Callable[[datetime], None],
) -> None:
    day = date(2026, 11, 20)
    activate(ledger, "alpha", date(2026, 11, 1))

    clock(datetime(2026, 11, 21, 10, 59, tzinfo=UTC))  # 11:59 in Paris, deadline at noon
    waiting = asyncio.run(post_client_day("alpha", day, return_state=True))
    # Not green: nothing is posted yet; not red: nobody has anything to do yet.
    assert waiting.is_cancelled() and waiting.name == "Waiting for closure", waiting.message
    assert statuses(ledger, "alpha") == {day: "waiting"}

    clock(datetime(2026, 11, 21, 11, 0, tzinfo=UTC))
    missing = asyncio.run(post_client_day("alpha", day, return_state=True))
    assert missing.is_failed() and missing.name == "Missing closure"
    assert statuses(ledger, "alpha") == {day: "missing"}


def test_dispatch_runs_the_clients_due_and_those_still_waiting(
    ledger: Engine, clock: Callable[[datetime], None],
) -> None:
    day = date(2026, 11, 20)
    deliver(ledger, activate(ledger, "alpha", date(2026, 11, 1), run_hour=8), day, 1)
    activate(ledger, "bravo", date(2026, 11, 1), run_hour=6)  # its closure is late
    deliver(ledger, activate(ledger, "charlie", date(2026, 11, 1), run_hour=6), day, 1)

    # The 06:00 dispatch: bravo waits, charlie is posted, alpha is not due yet.
    clock(datetime(2026, 11, 21, 5, 0, tzinfo=UTC))
    first, _ = asyncio.run(_run_scheduled(dispatch_daily, {"timezone": "Europe/Paris",
                                                           "hour": 6},
                                          datetime(2026, 11, 21, 5, 0, tzinfo=UTC)))
    assert first.message == "2 client-days: 1 posted, 1 waiting", first.message
    assert (first.type.value, first.name) == ("CANCELLED", "1 waiting")
    assert statuses(ledger, "alpha") == {day: "received"}

    # The 08:00 dispatch runs alpha, and bravo again: its closure has come.
    deliver(ledger, repository_integration_id(ledger, "bravo"), day, 1)
    clock(datetime(2026, 11, 21, 7, 0, tzinfo=UTC))
    second, flow_run = asyncio.run(_run_scheduled(
        dispatch_daily, {"timezone": "Europe/Paris", "hour": 8},
        datetime(2026, 11, 21, 7, 0, tzinfo=UTC)))
    assert second.message == "2 client-days: 2 posted", second.message
    assert (second.type.value, second.name) == ("COMPLETED", "All posted")
    runs = asyncio.run(_client_day_runs(flow_run))
    assert {run.name for run in runs} == {"alpha 2026-11-20", "bravo 2026-11-20"}
    assert {"client:alpha", "territory:metropole"} <= set(
        next(run for run in runs if run.name.startswith("alpha")).tags)
    assert statuses(ledger, "charlie") == {day: "posted"}


def test_sharded_dispatches_share_an_hour_s_clients_out_once_each(
    ledger: Engine, clock: Callable[[datetime], None],
) -> None:
    day, start = date(2026, 11, 20), datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
    clients = ["alpha", "bravo", "charlie", "delta", "echo"]
    for client_id in clients:
        deliver(ledger, activate(ledger, client_id, date(2026, 11, 1), run_hour=6), day, 1)
    clock(start)
    posted: list[str] = []
    for shard in (0, 1):
        state, flow_run = asyncio.run(_run_scheduled(
            dispatch_daily, {"timezone": "Europe/Paris", "hour": 6, "shard": shard,
                             "shards": 2}, start))
        assert flow_run.name == f"dispatch Europe/Paris 6h #{shard}/2"
        names = sorted(run.name for run in asyncio.run(_client_day_runs(flow_run)))
        expected = [f"{c} {day}" for c in clients if fleet.in_shard(c, shard, 2)]
        assert names == expected and state.message == f"{len(expected)} client-days: " \
            f"{len(expected)} posted", (names, state.message)
        posted += names
    assert sorted(posted) == [f"{c} {day}" for c in clients]


def repository_integration_id(engine: Engine, client_id: str) -> str:
    with session_scope(engine) as session:
        return ledger_clients.get_client(session, client_id).integration_id


def test_a_flagged_day_emits_an_event_an_automation_reacts_to(ledger: Engine) -> None:
    day = date(2026, 11, 27)
    deliver(ledger, activate(ledger, "delta", date(2026, 11, 1)), day, 1,
            faults={day: frozenset({"unbalanced"})})

    state = asyncio.run(post_client_day("delta", day, return_state=True))

    assert state.name == "POS data error"
    [event] = asyncio.run(_flagged_events("delta", 1))
    assert event.resource.id == "toporder.client.delta"
    assert event.resource.name == "delta"
    assert event.payload["client"] == "delta"
    assert event.payload["business_date"] == "2026-11-27"
    assert event.payload["state"] == "POS data error"
    assert event.payload["category"] == "pos"
    assert event.payload["rules"] and event.payload["message"]


def test_the_flagged_day_automation_is_accepted_by_the_server() -> None:
    async def create() -> list[Any]:
        files = automations.read(ROOT / "automations")
        async with get_client() as client:
            first = await automations.install(files, "https://hooks.slack.com/services/x",
                                              client)
            again = await automations.install(files, "https://hooks.slack.com/services/x",
                                              client)
            assert [(s.name, s.id) for s in first] == [(s.name, s.id) for s in again]
            assert all(s.created for s in first) and not any(s.created for s in again)
            created = await client.read_automations_by_name("toporder-flagged-day")
        return [first[0].id, *created]

    # Created once, then updated in place: installing twice leaves one automation.
    block_id, automation = asyncio.run(create())
    assert automation.trigger.expect == {t.FLAGGED_EVENT}
    [action] = automation.actions
    assert action.type == "send-notification" and action.block_document_id == block_id
    assert "{{ event.payload.client }}" in action.subject
