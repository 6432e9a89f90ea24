"""The work of a client-day, off the event loop, and what it tells Prefect: a final state, an
artifact and, for a flagged day, an event.

``post_day`` runs the whole story of ``toporder_sync.day`` in a worker thread
(``asyncio.to_thread``), so that the event loop, and with it the other client-days of a fleet
run, keeps running while the ledger works. It retries a ``TransientError`` itself, which the
ledger makes safe. ``final_state`` turns its result into the state a person reads in the UI
(``Posted``, ``POS data error``…), with the artifact and the event; the flow run of a client-day
(``flows/daily.py``) and each day of a catch-up's ``client-days`` task run (``client_days``
below) end with it, so a day reads the same whichever way it ran.

Why a catch-up runs task runs and the daily dispatch flow runs: measured on prefect 3.9.1 against
a PostgreSQL-backed server, a subflow run costs the server ~0.25 CPU-s, a task run ~0.03 (the
README's "Fitting a morning"). The daily runs keep one flow run per client-day, as their own
deployment runs are; a catch-up of thousands of past days runs each client's days as one task
run of its flow run, named ``<client> <first day> to <last day>``, its days in date order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, StateType
from prefect.events import emit_event
from prefect.runtime import task_run
from prefect.states import Cancelled, Completed, Failed

from toporder_sync import day, fleet, report
from toporder_sync.core import calendar
from toporder_sync.core.errors import Category, Finding, TransientError
from toporder_sync.core.model import Entry
from toporder_sync.ledger.repository import ClientRecord, PostResult
from toporder_sync.sources import ClosureSource
from toporder_sync.tasks import runtime
from toporder_sync.tasks.runtime import engine

STATE_NAMES = {
    Category.POS: fleet.POS_DATA_ERROR,
    Category.LEDGER: fleet.MAPPING_ERROR,
    Category.REFUSED: fleet.REFUSED,
}
ACTIONS = {
    Category.POS: "Toporder must correct the closure and send it again.",
    Category.LEDGER: "Fix the mapping or the account settings of this client, then rerun the day.",
    Category.REFUSED: "Nothing to fix: this day must not be posted (yet).",
}
MISSING_ACTION = "Toporder must send the closure of this day."
UNEXPECTED_ERROR = "Unexpected error"
TRANSIENT_ERROR = "Still unavailable"
FLAGGED_EVENT = "toporder.day.flagged"


ClientAndSource = Callable[[], tuple[ClientRecord, ClosureSource]]


async def post_day(client_id: str, business_date: date | None, scheduled: datetime,
                   run_id: str, read_client: ClientAndSource | None = None) -> day.DayResult:
    """The client-day; a scheduled run (no date) takes the day before ``scheduled``, locally.

    ``read_client`` gives the client and its source (default: read from the ledger for this
    day alone).
    Retried on a ``TransientError`` (``runtime.retry_transient``): safe, since every step is
    one ledger transaction and the ledger is idempotent."""
    return await runtime.retry_transient(
        lambda: asyncio.to_thread(_post_day, client_id, business_date, scheduled, run_id,
                                  read_client),
        what=f"{client_id} {business_date or 'scheduled'}")


def _post_day(client_id: str, business_date: date | None, scheduled: datetime,
              run_id: str, read_client: ClientAndSource | None = None) -> day.DayResult:
    ledger = engine()
    client, source = (read_client() if read_client
                      else day.client_and_source(ledger, client_id))
    the_day = business_date or calendar.previous_business_day(scheduled, client.timezone)
    return day.run_day(ledger, client, the_day, source=source, run_id=run_id, now=runtime.now,
                       assess=runtime.assess())


def error_state(client_id: str, business_date: date | None, exc: Exception) -> State[Any]:
    """The final state of a client-day that raised instead of ending in an outcome."""
    if isinstance(exc, TransientError):  # still failing after its retries
        return Failed(name=TRANSIENT_ERROR, message=f"{exc}; run the day again later")
    # a bug, not a flaky step: never retried
    get_run_logger().error("%s %s: unexpected error", client_id, business_date, exc_info=exc)
    return Failed(name=UNEXPECTED_ERROR, message=f"{type(exc).__name__}: {exc}")


# A day of a catch-up that takes longer than this is abandoned as an unexpected error (its
# thread may go on: the day's claim keeps any other run off it), and its client's later days
# are not run.
DAY_TIMEOUT = 300.0


def _days_run_name() -> str:
    parameters = task_run.get_parameters()
    first, last = parameters["business_dates"][0], parameters["business_dates"][-1]
    return f"{parameters['client_id']} {first}" + ("" if first == last else f" to {last}")


@task(name="client-days", task_run_name=_days_run_name, cache_policy=NO_CACHE)
async def client_days(client_id: str, business_dates: list[date],
                      posted_artifact: bool = True) -> State[Any]:
    """A client's days of a catch-up as one task run, oldest first, each day the same story,
    final state, artifact and event as a ``post-client-day`` run. The task run's id holds each
    day's claim in the ledger while it runs.

    One after the other: a day's continuity check (identity 6) reads the closure posted for the
    day before, which must be posted first. A day still unavailable after its retries, or
    failing unexpectedly, stops its client's later days (``Not run``): they would only warn of
    the gap it leaves, or fail the same way. The task run ends in the state of its most
    pressing day (``fleet.most_pressing``), with a message counting the days and naming those
    to look at; its result is every day's ``fleet.DayOutcome``, which the catch-up summarizes.

    ``business_dates``: at least one. The client is read from the ledger once, when its first
    day needs it (a read that fails is not kept: the next day reads again).

    ``posted_artifact=False``: a posted day leaves no artifact (its entry is in the ledger); a
    day that needs a person still leaves its table of failures.
    """
    run_id = task_run.get_id()
    if run_id is None:
        raise RuntimeError("client-days runs only as a Prefect task run")
    # Called in the days' worker threads, never on the event loop (``engine()`` may upgrade).
    read_client = cache(lambda: day.client_and_source(engine(), client_id))
    outcomes: list[fleet.DayOutcome] = []
    stopped: fleet.DayOutcome | None = None
    for the_day in business_dates:
        if stopped is not None:
            outcomes.append(fleet.not_run(client_id, the_day, stopped))
            continue
        outcome = day_outcome(client_id, the_day,
                              await _day_state(client_id, the_day, run_id, posted_artifact,
                                               read_client))
        outcomes.append(outcome)
        if outcome.kind == "crashed":  # still unavailable after its retries, or a bug
            stopped = outcome
    return days_state(outcomes)


def day_outcome(client_id: str, business_date: date, state: State[Any]) -> fleet.DayOutcome:
    """What a client-day's final state counts as in a fleet run's summary."""
    return fleet.DayOutcome(client_id, business_date, state.type.value, state.name or "",
                            state.message or "")


async def _day_state(client_id: str, business_date: date, run_id: str,
                     posted_artifact: bool, read_client: ClientAndSource) -> State[Any]:
    try:
        result = await asyncio.wait_for(post_day(client_id, business_date, runtime.now(),
                                                 run_id, read_client), DAY_TIMEOUT)
    except TimeoutError as exc:
        return error_state(client_id, business_date,
                           TimeoutError(str(exc) or f"the day ran over {DAY_TIMEOUT:g} s"))
    except Exception as exc:  # turned into the day's final state
        return error_state(client_id, business_date, exc)
    return await final_state(result, posted_artifact=posted_artifact)


def days_state(outcomes: list[fleet.DayOutcome]) -> State[Any]:
    """The state of a run of client-days (at least one): its most pressing day's, all counted."""
    summary = fleet.summarize(outcomes)
    message = summary.line() + "".join(f"; {o.business_date} {o.state_name}: {o.message}"
                                       for o in summary.to_look_at)
    worst = fleet.most_pressing(outcomes)
    return State(type=StateType(worst.state_type), name=worst.state_name, message=message,
                 data=tuple(outcomes))


async def final_state(result: day.DayResult, *, posted_artifact: bool = True) -> State[Any]:
    """The final state of the run, its artifact and, for a flagged or missing day, its event.

    A posted day's artifact (its entry) only when ``posted_artifact``; every other day that
    ends Failed has its table of failures."""
    client_id, the_day = result.client.client_id, result.business_date
    match result.outcome:
        case "already_running":
            return Cancelled(name=fleet.ALREADY_RUNNING,
                             message=f"another run of {client_id} {the_day} is in progress; "
                                     "this one changed nothing")
        case "waiting":
            deadline = result.deadline.isoformat() if result.deadline else "the deadline"
            return Completed(name=fleet.WAITING,
                             message=f"no closure received for {the_day} yet; waited for until "
                                     f"{deadline}, then flagged missing")
        case "missing":
            return await _fail(result, fleet.MISSING, MISSING_ACTION)
        case "flagged" | "refused":
            category = result.category or Category.POS
            return await _fail(result, STATE_NAMES[category], ACTIONS[category])
        case "empty":
            piece = result.entry.piece_ref if result.entry else str(the_day)
            return Completed(name=fleet.NOTHING_TO_POST,
                             message=f"{piece}: the closure has no amount to post")
        case "posted" if result.entry is not None and result.posted is not None:
            return await _posted(client_id, the_day, result.entry, result.posted,
                                 result.findings, artifact=posted_artifact)
    raise ValueError(f"{client_id} {the_day}: no final state for the outcome {result.outcome!r}")


async def _posted(client_id: str, the_day: date, entry: Entry, posted: PostResult,
                  warnings: tuple[Finding, ...], *, artifact: bool) -> State[Any]:
    if artifact:
        await publish(client_id, the_day,
                      report.entry_markdown(client_id, entry, posted.status, posted.number,
                                            warnings),
                      f"{posted.status}: {entry.label}")
    message = (f"entry n°{posted.number} {posted.status} ({entry.piece_ref}, "
               f"{len(entry.lines)} lines, {entry.total_debit} EUR)")
    if warnings:
        message += f"; warnings: {report.summary(warnings)}"
    # No data on the state: prefect links a task's result (and its items) to a copy of its
    # final state in the flow run's context for as long as the flow runs, ~2.4 KB per posted
    # day of a 10,000-day catch-up. The message says it all; the ledger holds the entry.
    return Completed(name=fleet.POSTED_WITH_WARNINGS if warnings else fleet.POSTED,
                     message=message)


async def _fail(result: day.DayResult, title: str, action: str) -> State[Any]:
    client_id, the_day, findings = result.client.client_id, result.business_date, result.findings
    if result.category is not None and result.category is not Category.REFUSED:
        announce(client_id, the_day, title, result.category, findings)
    await publish(client_id, the_day, report.failure_markdown(client_id, the_day, title,
                                                              findings, action),
                  f"{title}: {client_id} {the_day}")
    return Failed(name=title, message=f"{action} {report.summary(findings)}")


async def publish(client_id: str, business_date: date, markdown: str, description: str) -> None:
    await acreate_markdown_artifact(
        markdown, key=report.artifact_key(client_id, business_date), description=description
    )


def announce(client_id: str, business_date: date, state_name: str, category: Category,
             findings: tuple[Finding, ...]) -> None:
    """Emit the event an automation reacts to (``automations/flagged-day.yaml``)."""
    payload: dict[str, Any] = {
        "client": client_id,
        "business_date": business_date.isoformat(),
        "state": state_name,
        "category": category.value,
        "rules": sorted({f.rule for f in findings}),
        "message": report.summary(findings),
    }
    emit_event(FLAGGED_EVENT, resource={"prefect.resource.id": f"toporder.client.{client_id}",
                                        "prefect.resource.name": client_id},
               payload=payload)


__all__ = ["FLAGGED_EVENT", "announce", "client_days", "day_outcome", "days_state", "error_state",
           "final_state", "post_day", "publish"]
