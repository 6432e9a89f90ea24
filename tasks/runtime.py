"""What every task of the project shares: the ledger engine and the retry policy."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

import tenacity
from prefect import Flow, Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff
from prefect.utilities.urls import url_for
from sqlalchemy import Engine

from toporder_sync.core import pipeline
from toporder_sync.core.errors import TransientError
from toporder_sync.core_processes import CoreProcesses
from toporder_sync.day import Assess
from toporder_sync.ledger.db import database_url, get_engine, upgrade
from toporder_sync.outcome import NEEDS_ACTION_TAG, RESOLVED_TAG
from toporder_sync.retrying import RetryPolicy
from toporder_sync.tasks import prefect_private

P = ParamSpec("P")
R = TypeVar("R")

_upgraded: set[str] = set()

# What every flow of the project says of its results: ``persist_result=False`` and this
# ``result_storage``. Prefect keeps no result of a run: the ledger is the record of what it did,
# and its final state says it to a person; a persisted result would be a second copy that no one
# reads. Naming the storage, the local default, unused, also spares the API calls prefect 3.9.1
# makes otherwise on every flow run to learn the server's default result storage
# (undocumented behaviour, hence owned by ``prefect_private``).
RESULT_STORAGE: Path = prefect_private.RESULT_STORAGE


def engine() -> Engine:
    """The ledger engine of this process, its schema upgraded once per process."""
    url = database_url()
    ledger = get_engine(url)
    if url not in _upgraded:
        upgrade(ledger)
        _upgraded.add(url)
    return ledger


# How the client-days of this context run their pure stages: in their own thread, or in the
# worker processes of ``core_processes`` (a catch-up).
_assess: ContextVar[Assess] = ContextVar("assess", default=pipeline.assess)


@contextmanager
def core_processes(processes: int) -> Iterator[None]:
    """The client-days run inside (their task runs, their threads) compute their pure stages
    in ``processes`` worker processes (``core_processes.CoreProcesses``; 0: in their thread).
    Inside a flow run, whose logger gets the warning of a worker that died."""
    with CoreProcesses(processes, warn=get_run_logger().warning) as workers:
        token = _assess.set(workers.assess)  # in the calling thread without workers
        try:
            yield
        finally:
            _assess.reset(token)


# Whether the client-days run inside are a fleet run's, which publishes their boards once at
# its end (``flows.fleet``), rather than runs of their own, which publish their day's board.
_in_fleet_run: ContextVar[bool] = ContextVar("in_fleet_run", default=False)


@contextmanager
def fleet_run() -> Iterator[None]:
    """The client-days started inside belong to a fleet run (``in_fleet_run``)."""
    token = _in_fleet_run.set(True)
    try:
        yield
    finally:
        _in_fleet_run.reset(token)


def in_fleet_run() -> bool:
    return _in_fleet_run.get()


def assess() -> Assess:
    """Where the current context computes a client-day's pure stages (``core_processes``)."""
    return _assess.get()


def now() -> datetime:
    """The clock of every task and flow decision; tests replace it."""
    return datetime.now(UTC)


def scheduled_start() -> datetime:
    """When the current flow run was scheduled to start (now, for a run started by hand)."""
    start = flow_run.get_scheduled_start_time()
    return datetime.fromtimestamp(start.timestamp(), UTC)


async def label_run(name: str | None, tags: list[str]) -> None:
    """Rename the current flow run and add ``tags`` it lacks, in one API call (or none)."""
    run_id = flow_run.get_id()
    if run_id is None:
        return
    current = list(flow_run.get_tags())
    missing = [tag for tag in tags if tag not in current]
    if name is None and not missing:
        return
    async with get_client() as client:
        await client.update_flow_run(UUID(run_id), name=name,
                                     tags=[*current, *missing] if missing else None)


@asynccontextmanager
async def shared_clients() -> AsyncIterator[None]:
    """Let every Prefect run started inside share this process's API clients.

    prefect 3.9.1 opens new clients for each top-level flow run unless one is open in the
    context: an async client for the run, and a sync one each time it looks up the server's
    default result storage (twice per flow run, subflows included). Each new client builds an
    SSL context, loading the CA bundle even for an ``http://`` server, a large share of a
    client-day's flow run (measured: docs/operations.md, "Shared API clients"). Runs started
    inside this
    context, here and in the flows they start, reuse one client of each kind instead
    (``prefect_private.shared_api_clients``: Prefect documents no public way).
    """
    async with prefect_private.shared_api_clients():
        yield


def flush_events(timeout: float = 30.0) -> None:
    """Send what this process emitted (events, and the logs and states they carry) now, so that
    a command's result line is the last line it prints: otherwise Prefect drains its events
    worker at exit, after the command's output, and may log ``Still processing items`` then.

    Prefect documents no public way (``prefect_private.drain_events``)."""
    prefect_private.drain_events(timeout)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep what is alive now out of the garbage collector's reach while inside (``gc.freeze``).

    A fleet run's process holds a large, long-lived heap (prefect, pandas, pandera, SQLAlchemy
    and their caches) that every full collection walks again, for nothing, while the
    client-days allocate. Frozen, it is skipped, which saves the worker CPU on every
    client-day (measured: docs/operations.md, "The heap kept from the garbage collector").
    Objects are still freed by reference counting; on the way out they
    go back to the collector (``gc.unfreeze``), unless the heap was frozen before, by someone
    else, in which case this changes nothing.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# How the ledger names a task run that ran a client-day (a catch-up's ``client-days``), as
# opposed to a flow run, named by its bare id.
TASK_RUN_PREFIX = "task-run:"


def task_run_ref(task_run_id: str) -> str:
    """The run id a task run holds a client-day's claim with, and the ledger keeps."""
    return f"{TASK_RUN_PREFIX}{task_run_id}"


def run_url(run_id: str | None) -> str:
    """Where a person sees the run ``run_id`` (a flow run id, or a ``task_run_ref``): its page
    in the UI of the server in use, or the page's path when no UI address is known (Prefect's
    local mode)."""
    if not run_id:
        return ""
    kind = "flow-run"
    if run_id.startswith(TASK_RUN_PREFIX):
        kind, run_id = "task-run", run_id.removeprefix(TASK_RUN_PREFIX)
    return url_for(kind, obj_id=run_id) or f"/runs/{kind}/{run_id}"


async def record_flow_run(flow: Flow[Any, Any], name: str, *, parameters: dict[str, Any],
                          tags: list[str], state: State[Any]) -> str:
    """A flow run of ``flow`` created in its final ``state``, for a client-day a catch-up ran
    inside a task run: it stands for the day in the Runs page, the board and the events, with
    the name, tags, state and parameters a run of its own would have. Its id."""
    async with get_client() as client:
        run = await client.create_flow_run(flow, name=name, parameters=parameters, tags=tags,
                                           state=state)
    return str(run.id)


async def settle_runs(client_id: str, business_date: date) -> None:
    """The day's earlier runs no longer say it needs somebody: it is settled.

    They keep their state (a person may still read what went wrong) but lose their
    ``needs-action``, ``needs-action:<day>`` and ``needs:<who>`` tags for ``resolved``, so
    that the filters of the runs needing action find only what still does."""
    day_tags = [f"client:{client_id}", f"day:{business_date.isoformat()}", NEEDS_ACTION_TAG]
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=day_tags)))
        for run in runs:
            kept = [tag for tag in run.tags
                    if not tag.startswith((NEEDS_ACTION_TAG, "needs:"))]
            await client.update_flow_run(run.id, tags=[*kept, RESOLVED_TAG])


def current_flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def only_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a lock, a dropped connection or an HTTP 429/5xx; never a data error."""
    return isinstance(state.data, TransientError)


# A client-day's transient failures (the ledger busy, the closure source unreachable): five
# tries, the waits doubling from 1 s up to 8 s with jitter.
TRANSIENT_RETRY = RetryPolicy(attempts=5, backoff=1.0, max_backoff=8.0, patience=None)


async def retry_transient(work: Callable[[], Awaitable[R]], *, what: str,
                          policy: RetryPolicy = TRANSIENT_RETRY) -> R:
    """Await ``work()``; on a ``TransientError`` try again under ``policy`` (the project's one
    retry policy, ``toporder_sync.retrying``). Any other error, or the last TransientError, is
    raised. Each retry is logged to the flow run."""

    def log(state: tenacity.RetryCallState) -> None:
        get_run_logger().warning("%s: %s; retry %d/%d in %.1f s", what,
                                 state.outcome.exception() if state.outcome else "",
                                 state.attempt_number, policy.attempts - 1, state.upcoming_sleep)

    async for attempt in policy.async_retrying(TransientError, before_sleep=log):
        with attempt:
            return await work()
    raise AssertionError("unreachable")  # pragma: no cover


def ledger_task(name: str, *, retries: int = 4) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The decorator of every task of a client-day: retried only when transient.

    The ledger is the source of truth for idempotency: Prefect's result cache stays off, or a
    rerun of a day would replay yesterday's answer instead of looking at the ledger.
    """
    return task(
        name=name,
        cache_policy=NO_CACHE,
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=1),
        retry_jitter_factor=0.5,
        retry_condition_fn=only_transient,
        timeout_seconds=120,
    )
