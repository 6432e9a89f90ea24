"""The empty Prefect work the bench divides by: imported only by the bench's child processes.

* ``empty_flow``: a default (sync) flow that does nothing, the cost of one flow run;
* ``empty_mapped_tasks``: an async flow mapping an empty (sync) task over ``n`` numbers with
  the default task runner (a thread pool), the orchestration floor of ``n`` units of work in
  one run (the issue's "1,000 empty mapped tasks"). Async like ``catch-up``, so that neither
  rate carries the heartbeat-thread join of a sync flow run's exit (BENCHMARKS.md,
  "Heartbeats").
"""

from __future__ import annotations

from prefect import flow, task


@flow(name="bench-empty-flow")
def empty_flow() -> None:
    return None


@task(name="bench-empty-task")
def empty_task(number: int) -> int:
    return number


@flow(name="bench-empty-mapped-tasks")
async def empty_mapped_tasks(n: int) -> int:
    return len(empty_task.map(range(n)).result())
