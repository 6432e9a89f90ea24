"""The empty Prefect work the bench divides by: imported only by the bench's child processes.

* ``empty_flow``: a default (sync) flow that does nothing, the cost of one flow run;
* ``empty_tasks``: an async flow gathering ``n`` empty async task runs, ``concurrency`` at once,
  the orchestration floor of ``n`` units of work in one run (as ``catch-up`` runs its subflows).
"""

from __future__ import annotations

import asyncio

from prefect import flow, task


@flow(name="bench-empty-flow")
def empty_flow() -> None:
    return None


@task(name="bench-empty-task")
async def empty_task(number: int) -> int:
    return number


@flow(name="bench-empty-tasks")
async def empty_tasks(n: int, concurrency: int) -> int:
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int) -> int:
        async with gate:
            return await empty_task(number)

    return len(await asyncio.gather(*(one(number) for number in range(n))))
