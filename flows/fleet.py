"""Many client-days at once, each its own ``post-client-day`` subflow run, at bounded concurrency.

``catch-up`` runs every (client, day) of a date range; ``dispatch-daily`` is the scheduled entry
point of one (timezone, hour): the clients due then, plus those whose day still waits for its
closure. Both run the same machinery: at most ``concurrency`` subflows at once, each returning
its final state (``return_state=True``) so that one client's failure never stops the others, and
a summary artifact counting posted / flagged (by state name) / refused / missing / waiting /
already running. The flow completes with that summary as its message; it fails only when a
client-day crashed unexpectedly (an error that is not a flagged day).

Async subflows run in this process: ~0.15 s of orchestration each instead of a fresh Python
process per deployment run (measured on prefect 3.9.1, see issue 3).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from prefect import flow, tags
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from toporder_sync import fleet
from toporder_sync.core import calendar
from toporder_sync.flows.daily import post_client_day
from toporder_sync.ledger.repository import ClientRecord
from toporder_sync.tasks import runtime
from toporder_sync.tasks.runtime import engine, ledger_task


@ledger_task(name="select-clients")
async def select_clients(client_ids: list[str] | None) -> list[ClientRecord]:
    return await asyncio.to_thread(fleet.select_clients, engine(), client_ids)


@ledger_task(name="select-dispatch")
async def select_dispatch(timezone: str, hour: int, business_date: date, shard: int,
                          shards: int) -> list[fleet.ClientDay]:
    return await asyncio.to_thread(fleet.select_dispatch, engine(), timezone=timezone, hour=hour,
                                   business_date=business_date, shard=shard, shards=shards)


async def _run_one(client_day: fleet.ClientDay, gate: asyncio.Semaphore) -> fleet.DayOutcome:
    async with gate:
        with tags(f"client:{client_day.client_id}", f"territory:{client_day.territory}"):
            try:
                state = await post_client_day(client_day.client_id, client_day.business_date,
                                              return_state=True)
            except Exception as exc:  # one client-day never stops the others
                # e.g. the server answering 503 while creating the subflow run: counted as
                # crashed in the summary, the other client-days go on.
                return fleet.DayOutcome(client_day.client_id, client_day.business_date,
                                        "CRASHED", "Crashed", f"{type(exc).__name__}: {exc}")
    return fleet.DayOutcome(client_day.client_id, client_day.business_date, state.type.value,
                            state.name or "", state.message or "")


async def run_client_days(plan: Sequence[fleet.ClientDay], concurrency: int,
                          title: str) -> State[Any]:
    """Run each client-day as a subflow, ``concurrency`` at once; summarize them all."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    gate = asyncio.Semaphore(concurrency)
    outcomes = await asyncio.gather(*(_run_one(client_day, gate) for client_day in plan))
    summary = fleet.summarize(outcomes)
    await acreate_markdown_artifact(summary.markdown(title), description=summary.line())
    if summary.crashed:
        return Failed(name="Client-days crashed", message=summary.line())
    return Completed(message=summary.line())


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
      validate_parameters=True)
async def catch_up(date_from: date, date_to: date, clients: list[str] | None = None,
                   concurrency: int = 10, shard: int = 0, shards: int = 1) -> State[Any]:
    """``shard``/``shards``: this run takes only its share of the clients (``fleet.in_shard``),
    so that ``shards`` runs started together cover them all once, on as many workers."""
    chosen = [client for client in await select_clients(clients)
              if fleet.in_shard(client.client_id, shard, shards)]
    plan = fleet.catch_up_plan(chosen, date_from, date_to)
    return await run_client_days(
        plan, concurrency, f"Catch-up {date_from} to {date_to}{_shard_title(shard, shards)}")


@flow(name="dispatch-daily", flow_run_name=_run_name("dispatch {timezone} {hour}h"),
      description="The scheduled run of one (timezone, hour): the clients due, and those whose "
                  "closure is still awaited.",
      validate_parameters=True)
async def dispatch_daily(timezone: str, hour: int, concurrency: int = 10, shard: int = 0,
                         shards: int = 1) -> State[Any]:
    """``shard``/``shards``: set by ``schedules sync --shards N`` on each of the hour's N
    schedules, so that N dispatch runs share the hour's clients out among the workers."""
    day = calendar.previous_business_day(runtime.scheduled_start(), timezone)
    plan = await select_dispatch(timezone, hour, day, shard, shards)
    return await run_client_days(
        plan, concurrency, f"Dispatch {timezone} {hour}h for {day}{_shard_title(shard, shards)}")
