"""One flow run per client-day: claim → admit → fetch → validate → map → build → load → report.

The flow holds no accounting rule: it sequences the tasks and turns their outcome into a final
state a person can read in the Prefect UI — ``Posted``, ``Waiting for closure`` (the closure is
not in yet, the deadline not passed: a later pass retries), ``Already running`` (Cancelled:
another live run holds the day's claim in the ledger), or ``Failed`` named after who must act
(``POS data error``, ``Mapping error``, ``Missing closure``, ``Refused``) with a message saying
what to fix; each flagged or missing day also emits the event ``toporder.day.flagged``.

A scheduled run gets no business date: it processes the day before its scheduled start in the
client's timezone, and renames itself ``<client> <day>`` once that day is known. It is async
because an async flow run skips the ~1 s heartbeat-thread join that every sync flow run pays at
exit (measured on prefect 3.9.1).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed

from toporder_sync import fleet, report
from toporder_sync.core import calendar
from toporder_sync.core.errors import Category, Finding, error_category, pos_error
from toporder_sync.core.model import MethodMatch
from toporder_sync.ledger.repository import ClientRecord
from toporder_sync.sources import FetchedClosure
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


MISSING = fleet.MISSING
MISSING_ACTION = "Toporder must send the closure of this day."


async def _fail(client_id: str, day: date, category: Category, findings: tuple[Finding, ...],
                name: str | None = None, action: str | None = None) -> State[Any]:
    title = name or STATE_NAMES[category]
    action = action or ACTIONS[category]
    if category is not Category.REFUSED:
        t.announce(client_id, day, title, category, findings)
    await t.publish(client_id, day, report.failure_markdown(client_id, day, title, findings,
                                                            action),
                    f"{title}: {client_id} {day}")
    return Failed(name=title, message=f"{action} {report.summary(findings)}")


async def _flag(client_id: str, day: date, fetched: FetchedClosure, category: Category,
                findings: tuple[Finding, ...], matches: tuple[MethodMatch, ...]) -> State[Any]:
    await t.flag(client_id, day, "flagged", category, findings, fetched.closure_id, matches)
    return await _fail(client_id, day, category, tuple(f for f in findings if f.is_error))


def _run_name() -> str:
    """``<client> <day>``; a scheduled run renames itself once its day is known."""
    parameters = flow_run.get_parameters()
    return f"{parameters['client_id']} {parameters.get('business_date') or 'scheduled'}"


@flow(name="post-client-day", flow_run_name=_run_name,
      description="Post one client's closure of one business day as a sales-journal entry.",
      validate_parameters=True)
async def post_client_day(client_id: str, business_date: date | None = None) -> State[Any]:
    client = await t.client_record(client_id)
    day = business_date or calendar.previous_business_day(runtime.scheduled_start(),
                                                          client.timezone)
    await runtime.label_run(None if business_date else f"{client_id} {day}",
                            [f"client:{client_id}", f"territory:{client.territory.value}"])
    run_id = runtime.current_flow_run_id()
    if run_id is None or not await t.claim(client_id, day, run_id):
        return Cancelled(name=fleet.ALREADY_RUNNING,
                         message=f"another run of {client_id} {day} is in progress; "
                                 "this one changed nothing")
    try:
        return await _post_day(client, day)
    finally:
        await t.release(client_id, day, run_id)


async def _post_day(client: ClientRecord, business_date: date) -> State[Any]:
    client_id = client.client_id
    admission = await t.admit(client, business_date)
    if admission.refusal is not None:
        finding = Finding(Category.REFUSED, "refused", "business_date", admission.refusal)
        return await _fail(client_id, business_date, Category.REFUSED, (finding,))
    fetched = await t.fetch(client_id, business_date)
    if fetched is None:
        missing = pos_error("closure_missing", "closure",
                            f"no closure received for {business_date}")
        if calendar.awaiting_closure(business_date, timezone=client.timezone,
                                     deadline_hour=client.deadline_hour, now=runtime.now()):
            await t.flag(client_id, business_date, "waiting", None, (missing,), None)
            deadline = calendar.closure_deadline(business_date, client.timezone,
                                                 client.deadline_hour)
            return Completed(name=fleet.WAITING,
                             message=f"no closure received for {business_date} yet; waited "
                                     f"for until {deadline.isoformat()}, then flagged missing")
        await t.flag(client_id, business_date, "missing", Category.POS, (missing,), None)
        return await _fail(client_id, business_date, Category.POS, (missing,), name=MISSING,
                           action=MISSING_ACTION)
    closure, findings = await t.validate(fetched, client_id, client.integration_id,
                                   admission.settings)
    if closure is None:
        return await _flag(client_id, business_date, fetched, Category.POS, findings, ())
    mapping = await t.map_methods(closure, admission.settings)
    findings = (*findings, *mapping.findings)
    category = error_category(findings)
    if category is not None:
        return await _flag(client_id, business_date, fetched, category, findings,
                           mapping.matches)
    matches = mapping.matches
    entry = await t.build(closure, admission.settings, mapping)
    warnings = tuple(f for f in findings if not f.is_error)
    if not entry.lines:
        await t.flag(client_id, business_date, "empty", None, warnings, fetched.closure_id,
                     matches)
        return Completed(name=fleet.NOTHING_TO_POST,
                         message=f"{closure.piece_ref}: the closure has no amount to post")
    posted = await t.load(client_id, business_date, fetched.closure_id, entry, matches,
                          warnings)
    await t.publish(client_id, business_date,
                    report.entry_markdown(client_id, entry, posted.status, posted.number,
                                          warnings),
                    f"{posted.status}: {entry.label}")
    message = f"entry n°{posted.number} {posted.status} ({entry.piece_ref}, " \
              f"{len(entry.lines)} lines, {entry.total_debit} EUR)"
    if warnings:
        message += f"; warnings: {report.summary(warnings)}"
    return Completed(name=fleet.POSTED_WITH_WARNINGS if warnings else fleet.POSTED,
                     message=message, data={"status": posted.status, "entry_number": posted.number})
