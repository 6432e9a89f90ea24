"""Collecting what racing processes report.

Each racing process puts rows on one queue: ``(kind, …)`` for what it saw, ``("error",
traceback)`` if it failed, and ``("done",)`` last, whatever happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any


def reports(results: Any, processes: Sequence[BaseProcess], *,
            wait: float) -> list[tuple[Any, ...]]:
    """Every row the processes reported (without its kind), once each is done and has exited.

    Fails the test with every traceback reported, or when a process exited other than with 0.
    """
    rows: list[tuple[Any, ...]] = []
    errors: list[str] = []
    finished = 0
    while finished < len(processes):
        kind, *report = results.get(timeout=wait)
        if kind == "error":
            errors.append(report[0])
        elif kind == "done":
            finished += 1
        else:
            rows.append(tuple(report))
    for process in processes:
        process.join(wait)
    assert not errors, "\n\n".join(errors)
    assert [process.exitcode for process in processes] == [0] * len(processes)
    return rows
