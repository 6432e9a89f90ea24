"""The empty Prefect work the bench divides by: imported only by the bench's child processes.

* ``empty_flow``: a default (sync) flow that does nothing, the cost of one flow run;
* ``empty_mapped_tasks``: a default (sync) flow mapping an empty task over ``n`` numbers with
  its default task runner, the orchestration floor of ``n`` units of work in one run (the
  issue's "1,000 empty mapped tasks").
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
def empty_mapped_tasks(n: int) -> int:
    return len(empty_task.map(range(n)).result())
