"""One flow run per client-day: the day is posted, then reported.

The flow holds no accounting rule: it runs the client-day (``tasks.daily.post_day``, the story
of ``toporder_sync.day``: claim → admit → fetch → validate → map → build → load, in a worker
thread) and turns its result into a final state a person can read in the Prefect UI —
``Posted``, ``Posted with warnings``, ``Nothing to post``, ``Waiting for closure`` (the closure
is not in yet, the deadline not passed: a later pass retries), ``Already running`` (Cancelled:
another live run holds the day's claim in the ledger), or ``Failed`` named after who must act
(``POS data error``, ``Mapping error``, ``Missing closure``, ``Refused``) with a message saying
what to fix; each run leaves an artifact (the entry, or the table of failures), and each flagged
or missing day emits the event ``toporder.day.flagged``. A ``TransientError`` (a lock, a dropped
connection, an HTTP 429/5xx) is retried in the run (``tasks.runtime.retry_transient``), then
ends it ``Still unavailable``; any other exception ends it ``Unexpected error`` at once.

A scheduled run gets no business date: it processes the day before its scheduled start in the
client's timezone, and renames itself ``<client> <day>`` once that day is known. It is async
because an async flow run skips the ~1 s heartbeat-thread join that every sync flow run pays at
exit (measured on prefect 3.9.1).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed

from toporder_sync import fleet, report
from toporder_sync.core.errors import Category, Finding, TransientError
from toporder_sync.core.model import Entry
from toporder_sync.day import DayResult
from toporder_sync.ledger.repository import PostResult
from toporder_sync.tasks import daily as t
from toporder_sync.tasks import runtime

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


def _run_name() -> str:
    """``<client> <day>``; a scheduled run renames itself once its day is known."""
    parameters = flow_run.get_parameters()
    return f"{parameters['client_id']} {parameters.get('business_date') or 'scheduled'}"


@flow(name="post-client-day", flow_run_name=_run_name,
      description="Post one client's closure of one business day as a sales-journal entry.",
      validate_parameters=True, timeout_seconds=300)
async def post_client_day(client_id: str, business_date: date | None = None) -> State[Any]:
    run_id = runtime.current_flow_run_id()
    if run_id is None:
        raise RuntimeError("post-client-day runs only as a Prefect flow run")
    try:
        result = await t.post_day(client_id, business_date, runtime.scheduled_start(), run_id)
    except TransientError as exc:  # still failing after its retries
        return Failed(name=TRANSIENT_ERROR, message=f"{exc}; run the day again later")
    except Exception as exc:  # a bug, not a flaky step: never retried
        get_run_logger().exception("%s %s: unexpected error", client_id, business_date)
        return Failed(name=UNEXPECTED_ERROR, message=f"{type(exc).__name__}: {exc}")
    client = result.client
    await runtime.label_run(None if business_date else f"{client_id} {result.business_date}",
                            [f"client:{client_id}", f"territory:{client.territory.value}"])
    return await _report(result)


async def _report(result: DayResult) -> State[Any]:
    """The final state of the run, its artifact and, for a flagged or missing day, its event."""
    client_id, day = result.client.client_id, result.business_date
    match result.outcome:
        case "already_running":
            return Cancelled(name=fleet.ALREADY_RUNNING,
                             message=f"another run of {client_id} {day} is in progress; "
                                     "this one changed nothing")
        case "waiting":
            deadline = result.deadline.isoformat() if result.deadline else "the deadline"
            return Completed(name=fleet.WAITING,
                             message=f"no closure received for {day} yet; waited for until "
                                     f"{deadline}, then flagged missing")
        case "missing":
            return await _fail(result, fleet.MISSING, MISSING_ACTION)
        case "flagged" | "refused":
            category = result.category or Category.POS
            return await _fail(result, STATE_NAMES[category], ACTIONS[category])
        case "empty":
            piece = result.entry.piece_ref if result.entry else str(day)
            return Completed(name=fleet.NOTHING_TO_POST,
                             message=f"{piece}: the closure has no amount to post")
        case "posted" if result.entry is not None and result.posted is not None:
            return await _posted(client_id, day, result.entry, result.posted, result.findings)
    raise ValueError(f"{client_id} {day}: no final state for the outcome {result.outcome!r}")


async def _posted(client_id: str, day: date, entry: Entry, posted: PostResult,
                  warnings: tuple[Finding, ...]) -> State[Any]:
    await t.publish(client_id, day,
                    report.entry_markdown(client_id, entry, posted.status, posted.number,
                                          warnings),
                    f"{posted.status}: {entry.label}")
    message = (f"entry n°{posted.number} {posted.status} ({entry.piece_ref}, "
               f"{len(entry.lines)} lines, {entry.total_debit} EUR)")
    if warnings:
        message += f"; warnings: {report.summary(warnings)}"
    return Completed(name=fleet.POSTED_WITH_WARNINGS if warnings else fleet.POSTED,
                     message=message, data={"status": posted.status, "entry_number": posted.number})


async def _fail(result: DayResult, title: str, action: str) -> State[Any]:
    client_id, day, findings = result.client.client_id, result.business_date, result.findings
    if result.category is not None and result.category is not Category.REFUSED:
        t.announce(client_id, day, title, result.category, findings)
    await t.publish(client_id, day, report.failure_markdown(client_id, day, title, findings,
                                                            action),
                    f"{title}: {client_id} {day}")
    return Failed(name=title, message=f"{action} {report.summary(findings)}")


