"""Many client-days at once, at bounded concurrency, and a summary of them all.

``dispatch-daily`` is the scheduled entry point of one (timezone, hour): the clients due then,
plus those whose day still waits for its closure, each client-day its own ``post-client-day``
flow run named ``<client> <day>`` (top-level, see ``as_flow_run``). ``catch-up`` runs every
(client, day) of a date range, each client's days one ``client-days`` task run of the
catch-up's flow run, oldest day first (``tasks.daily.client_days`` says why): each day the same
story, final state name and artifacts as a ``post-client-day`` run, at a fraction of the
server's cost, since a catch-up runs thousands.
Both run the same machinery: at most ``concurrency`` runs at once, each giving the outcome of
its client-days so that one client's failure never stops the others, a summary artifact
counting posted / flagged (by state name) / missing / errors / not run / refused / waiting /
already running, with the days to look at, and a new version of the board of each business
day it ran (``tasks.daily.publish_board``). The run ends in the state its days add up to
(``outcome.fleet_verdict``): Failed, named after the days each one must act on (``3 for
Toporder, 1 mapping``), when any day needs somebody; Cancelled, named after the days not done
(``2 waiting``), when nobody need act but not every day is done; Completed ``All posted``.

Everything runs in this process, sharing its API clients (``runtime.shared_clients``): a flow
run started in a running process costs a fraction of a fresh Python process per deployment run
(measured: docs/operations.md, "One schedule per (timezone, hour)").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any, TypeVar, cast

from prefect import flow, tags
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import State, StateType
from prefect.runtime import flow_run

from toporder_sync import core_processes, fleet
from toporder_sync.core import calendar
from toporder_sync.flows.daily import post_client_day
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.outcome import Outcome
from toporder_sync.tasks import daily as t
from toporder_sync.tasks import prefect_private, runtime
from toporder_sync.tasks.daily import client_days as client_days_task
from toporder_sync.tasks.runtime import engine, ledger_task


@ledger_task(name="select-clients")
async def select_clients(client_ids: list[str] | None) -> list[ClientRecord]:
    return await asyncio.to_thread(fleet.select_clients, engine(), client_ids)


@ledger_task(name="select-dispatch")
async def select_dispatch(timezone: str, hour: int, business_date: date, shard: int,
                          shards: int) -> list[fleet.ClientDay]:
    return await asyncio.to_thread(fleet.select_dispatch, engine(), timezone=timezone, hour=hour,
                                   business_date=business_date, shard=shard, shards=shards)


Unit = TypeVar("Unit", fleet.ClientDay, fleet.ClientDays)
RunUnit = Callable[[Unit], Awaitable[list[fleet.DayOutcome]]]


async def as_flow_run(client_day: fleet.ClientDay) -> list[fleet.DayOutcome]:
    """A ``post-client-day`` flow run of its own, tagged with its client and territory.

    Started from a copy of this context without the dispatch's run in it, so that the client-day
    is a top-level flow run, not a subflow: a subflow also costs the server a placeholder task
    run in the parent (measured: docs/operations.md, "Flow runs of their own, not subflows"),
    and the server is what bounds a morning on two cores. It still shares this process's API
    clients. It carries the tags of every client-day run (``tasks.daily.run_tags``) from its
    creation, so that a posted day needs no further call to the server. Its outcome is the
    value its final state carries (``tasks.daily.outcome_of_run``), never read back from the
    state's name."""
    async def run() -> State[Any]:
        state: State[Any] = await post_client_day(client_day.client_id,
                                                  client_day.business_date, return_state=True)
        return state

    with tags(*t.run_tags(client_day.client_id, client_day.territory,
                          client_day.business_date)):
        detached = prefect_private.context_outside_any_run()
    try:
        state = await asyncio.create_task(run(), context=detached)
        return [await t.outcome_of_run(state, client_day.client_id, client_day.business_date)]
    except Exception as exc:  # one client-day never stops the others
        # e.g. the server answering 503 while creating the flow run
        return [_crashed(client_day.client_id, client_day.business_date, exc)]


def _crashed(client_id: str, business_date: date, exc: Exception | str) -> fleet.DayOutcome:
    message = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return fleet.DayOutcome(client_id, business_date, Outcome.UNEXPECTED_ERROR, message)


def as_task(posted_artifacts: bool) -> RunUnit[fleet.ClientDays]:
    """Each client's days a ``client-days`` task run, named after the client and its days.

    One task run per client rather than per client-day: the days must run one after the other
    anyway (``tasks.daily.client_days``), and every task run costs the Prefect server the
    same CPU, a posted day or an empty task, and the worker some orchestration (measured:
    BENCHMARKS.md, "C: warm processes, an idle server").

    Not tagged: a tagged task run goes through the server's tag concurrency limits as it starts
    and ends, which slows it several times over (measured: docs/operations.md, "The
    measurements behind this design"). The run's name and the catch-up's parameters say whose
    days they are.

    Without ``posted_artifacts`` a posted day leaves no artifact: creating one per posted day
    is a share of the server's CPU that a catch-up of thousands of days does without (measured:
    docs/operations.md, "The measurements behind this design")."""
    async def run_days(unit: fleet.ClientDays) -> list[fleet.DayOutcome]:
        try:
            # An async task called with return_state=True: prefect's stubs type it as the state.
            state = await cast("Awaitable[State[Any]]", client_days_task(
                unit.client_id, list(unit.business_dates), post_client_day, posted_artifacts,
                unit.territory, return_state=True))
            outcomes = await state.aresult(raise_on_failure=False)
        except Exception as exc:  # one client never stops the others
            return [_crashed(unit.client_id, day, exc) for day in unit.business_dates]
        if isinstance(outcomes, tuple) and len(outcomes) == len(unit.business_dates):
            return list(outcomes)
        # The task run ended without its days' outcomes (it crashed, was cancelled from the
        # UI...): each of the client's days counts as crashed; the ledger holds those posted.
        return [_crashed(unit.client_id, day, f"{state.name}: {state.message}")
                for day in unit.business_dates]
    return run_days


async def run_client_days(plan: Sequence[Unit], concurrency: int, title: str,
                          run: RunUnit[Unit]) -> State[Any]:
    """Run each unit of the plan (a client-day, or a client's days) with ``run``,
    ``concurrency`` at once; summarize every client-day.

    ``concurrency`` workers take the units in turn: a run holds the runs in progress and one
    small outcome per client-day, not a pending coroutine for each of thousands of days. The
    heap alive when they start is kept out of the garbage collector's walks meanwhile
    (``runtime.frozen_heap``)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    outcomes: list[list[fleet.DayOutcome]] = [[] for _ in plan]
    turns = iter(enumerate(plan))

    async def worker() -> None:
        for position, unit in turns:
            outcomes[position] = await run(unit)

    with runtime.frozen_heap(), runtime.fleet_run():
        async with runtime.shared_clients():
            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(plan)))))
            summary = fleet.summarize(o for unit in outcomes for o in unit)
            await acreate_markdown_artifact(summary.markdown(title), description=summary.line())
            errors = [o for o in summary.outcomes if o.kind == "error"]
            for business_date in sorted({o.business_date for o in summary.outcomes}):
                await t.publish_board(business_date, errors)
    verdict = summary.verdict
    return State(type=StateType(verdict.state_type), name=verdict.state_name,
                 message=summary.line())


def _shard_title(shard: int, shards: int) -> str:
    return "" if shards == 1 else f", shard {shard}/{shards}"


def _run_name(template: str) -> Callable[[], str]:
    """A run name from the flow's parameters, with its shard when the work is split."""
    def name() -> str:
        parameters = flow_run.get_parameters()
        shard, shards = parameters.get("shard", 0), parameters.get("shards", 1)
        return template.format(**parameters) + ("" if shards == 1 else f" #{shard}/{shards}")
    return name


@flow(name="catch-up", flow_run_name=_run_name("catch-up {date_from} to {date_to}"),
      description="Run every client-day of a date range (all active clients or a list).",
      validate_parameters=True, persist_result=False,
      result_storage=runtime.RESULT_STORAGE)
async def catch_up(date_from: date, date_to: date, clients: list[str] | None = None,
                   concurrency: int = 10, shard: int = 0, shards: int = 1,
                   posted_artifacts: bool = False, processes: int | None = None) -> State[Any]:
    """``concurrency``: clients at once; a client's days run one after the other, oldest first.

    ``processes``: worker processes computing the days' pure stages (reading, validating,
    building the entry), so that they get a core of their own; the ledger work and Prefect's
    stay in this process (``core_processes``). Default: every core but one, at most four
    (one on two cores); 0: in this process's threads.

    ``shard``/``shards``: this run takes only its share of the clients (``fleet.in_shard``),
    so that ``shards`` runs started together cover them all once, on as many workers.

    ``posted_artifacts``: also an artifact with the entry of each posted day (off: a catch-up
    posts thousands; the days that need a person always have theirs, and the summary lists
    them)."""
    chosen = [client for client in await select_clients(clients)
              if fleet.in_shard(client.client_id, shard, shards)]
    plan = fleet.catch_up_plan(chosen, date_from, date_to)
    # Forked before the first day runs (the heap frozen for the garbage collector then, which
    # also spares the workers' copies of it).
    with runtime.frozen_heap(), runtime.core_processes(
            core_processes.default_processes() if processes is None else processes):
        return await run_client_days(
            plan, concurrency, f"Catch-up {date_from} to {date_to}{_shard_title(shard, shards)}",
            as_task(posted_artifacts))


@flow(name="dispatch-daily", flow_run_name=_run_name("dispatch {timezone} {hour}h"),
      description="The scheduled run of one (timezone, hour): the clients due, and those whose "
                  "closure is still awaited.",
      validate_parameters=True, persist_result=False,
      result_storage=runtime.RESULT_STORAGE)
async def dispatch_daily(timezone: str, hour: int, concurrency: int = 10, shard: int = 0,
                         shards: int = 1) -> State[Any]:
    """``shard``/``shards``: set by ``schedules sync --shards N`` on each of the hour's N
    schedules, so that N dispatch runs share the hour's clients out among the workers."""
    day = calendar.previous_business_day(runtime.scheduled_start(), timezone)
    plan = await select_dispatch(timezone, hour, day, shard, shards)
    return await run_client_days(
        plan, concurrency, f"Dispatch {timezone} {hour}h for {day}{_shard_title(shard, shards)}",
        as_flow_run)
