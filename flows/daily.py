"""One flow run per client-day: admit → fetch → validate → map → build → load → report.

The flow holds no accounting rule: it sequences the tasks and turns their outcome into a final
state a person can read in the Prefect UI — ``Posted``, or ``Failed`` named after who must act
(``POS data error``, ``Mapping error``, ``Missing closure``, ``Refused``) with a message saying
what to fix. It is async because an async flow run skips the ~1 s heartbeat-thread join that
every sync flow run pays at exit (measured on prefect 3.9.1).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from toporder_sync import report
from toporder_sync.core.errors import Category, Finding, error_category, pos_error
from toporder_sync.core.model import MethodMatch
from toporder_sync.sources import FetchedClosure
from toporder_sync.tasks import daily as t

STATE_NAMES = {
    Category.POS: "POS data error",
    Category.LEDGER: "Mapping error",
    Category.REFUSED: "Refused",
}
ACTIONS = {
    Category.POS: "Toporder must correct the closure and send it again.",
    Category.LEDGER: "Fix the mapping or the account settings of this client, then rerun the day.",
    Category.REFUSED: "Nothing to fix: this day must not be posted (yet).",
}


MISSING = "Missing closure"
MISSING_ACTION = "Toporder must send the closure of this day."


async def _fail(client_id: str, day: date, category: Category, findings: tuple[Finding, ...],
                name: str | None = None, action: str | None = None) -> State[Any]:
    title = name or STATE_NAMES[category]
    action = action or ACTIONS[category]
    await t.publish(client_id, day, report.failure_markdown(client_id, day, title, findings,
                                                            action),
                    f"{title}: {client_id} {day}")
    return Failed(name=title, message=f"{action} {report.summary(findings)}")


async def _flag(client_id: str, day: date, fetched: FetchedClosure, category: Category,
                findings: tuple[Finding, ...], matches: tuple[MethodMatch, ...]) -> State[Any]:
    t.flag(client_id, day, "flagged", category, findings, fetched.closure_id, matches)
    return await _fail(client_id, day, category, tuple(f for f in findings if f.is_error))


@flow(name="post-client-day", flow_run_name="{client_id} {business_date}",
      description="Post one client's closure of one business day as a sales-journal entry.",
      validate_parameters=True)
async def post_client_day(client_id: str, business_date: date) -> State[Any]:
    admission = t.admit(client_id, business_date)
    if admission.refusal is not None:
        finding = Finding(Category.REFUSED, "refused", "business_date", admission.refusal)
        return await _fail(client_id, business_date, Category.REFUSED, (finding,))
    fetched = t.fetch(client_id, business_date)
    if fetched is None:
        missing = pos_error("closure_missing", "closure",
                            f"no closure received for {business_date}")
        t.flag(client_id, business_date, "missing", Category.POS, (missing,), None)
        return await _fail(client_id, business_date, Category.POS, (missing,), name=MISSING,
                           action=MISSING_ACTION)
    closure, findings = t.validate(fetched, client_id, admission.client.integration_id,
                                   admission.settings)
    if closure is None:
        return await _flag(client_id, business_date, fetched, Category.POS, findings, ())
    mapping = t.map_methods(closure, admission.settings)
    findings = (*findings, *mapping.findings)
    category = error_category(findings)
    if category is not None:
        return await _flag(client_id, business_date, fetched, category, findings,
                           mapping.matches)
    matches = mapping.matches
    entry = t.build(closure, admission.settings, mapping)
    warnings = tuple(f for f in findings if not f.is_error)
    if not entry.lines:
        t.flag(client_id, business_date, "empty", None, warnings, fetched.closure_id, matches)
        return Completed(name="Nothing to post",
                         message=f"{closure.piece_ref}: the closure has no amount to post")
    posted = t.load(client_id, business_date, fetched.closure_id, entry, matches, warnings)
    await t.publish(client_id, business_date,
                    report.entry_markdown(client_id, entry, posted.status, posted.number,
                                          warnings),
                    f"{posted.status}: {entry.label}")
    message = f"entry n°{posted.number} {posted.status} ({entry.piece_ref}, " \
              f"{len(entry.lines)} lines, {entry.total_debit} EUR)"
    if warnings:
        message += f"; warnings: {report.summary(warnings)}"
    return Completed(name="Posted" if not warnings else "Posted with warnings", message=message,
                     data={"status": posted.status, "entry_number": posted.number})
