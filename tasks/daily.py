"""The work of a client-day, off the event loop, and what it tells Prefect: a final state, tags,
an artifact and, for a day whose alert was raised or resolved, an event.

``post_day`` runs the whole story of ``toporder_sync.day`` in a worker thread
(``asyncio.to_thread``), so that the event loop, and with it the other client-days of a fleet
run, keeps running while the ledger works. It retries a ``TransientError`` itself, which the
ledger makes safe. ``verdict`` turns its result (or its error) into a ``fleet.DayOutcome``,
whose ``outcome.Outcome`` gives the state a person reads in the UI (``state_of``) and the tags
of a run needing somebody; ``announce`` publishes the client's artifact and the events. The
flow run of a client-day (``flows/daily.py``) and each day of a catch-up's ``client-days``
task run (``client_days`` below) go through the same three steps, so a day reads the same
whichever way it ran.

Why a catch-up runs task runs and the daily dispatch flow runs: a subflow run costs the Prefect
server much more than a task run does (measured: docs/operations.md, "Fitting a morning").
The daily runs keep one flow run per client-day, as their own deployment runs are; a catch-up
of thousands of past days runs each client's days as one task run of its flow run, named
``<client> <first day> to <last day>``, its days in date order. A day of a catch-up that
needs somebody, waits for its closure or resolves an alert also gets a flow run of its own in
its final state (``runtime.record_flow_run``), with the same name, tags, state and artifact as
a ``post-client-day`` run: every client-day a person must look at is found the same way,
whatever ran it. The flow those runs are recorded as is the caller's to give
(``client_days``'s ``day_flow``): tasks never import flows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from functools import cache
from typing import Any
from uuid import UUID

from prefect import Flow, get_run_logger, task
from prefect.artifacts import MarkdownArtifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, StateType
from prefect.events import emit_event
from prefect.runtime import task_run

from toporder_sync import board, day, fleet, report, service
from toporder_sync.core import calendar
from toporder_sync.core.errors import Category, TransientError
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.outcome import NEEDS_ACTION_TAG, PROJECT_TAG, Outcome, Who
from toporder_sync.sources import ClosureSource
from toporder_sync.tasks import runtime
from toporder_sync.tasks.runtime import engine

ACTIONS = {
    Outcome.POS_DATA_ERROR: "Toporder must correct the closure and send it again.",
    Outcome.MAPPING_ERROR: "Fix the mapping or the account settings of this client, then rerun "
                           "the day.",
    Outcome.MISSING: "Toporder must send the closure of this day.",
    Outcome.REFUSED: "Nothing to fix: this day must not be posted (yet).",
    Outcome.UNEXPECTED_ERROR: "The data team must find the cause (the run's log has the "
                              "traceback), fix it, then rerun the day.",
}
# What posting did to the day's entries, in a run's message (``PostResult.status``).
_POSTED_AS = {"posted": "posted", "unchanged": "unchanged",
              "replaced": "posted, replacing the day's earlier entry (reversed)"}
FLAGGED_EVENT = "toporder.day.flagged"
RESOLVED_EVENT = "toporder.day.resolved"
# A client-day failed on an internal error: the data team must act (automations/).
ERROR_EVENT = "toporder.day.error"


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


def verdict_of_error(client_id: str, business_date: date | None, exc: Exception,
                     run_id: str | None) -> fleet.DayOutcome:
    """What a client-day that raised instead of ending in an outcome counts as."""
    the_day = business_date or date.min
    if isinstance(exc, TransientError):  # still failing after its retries
        return fleet.DayOutcome(client_id, the_day, Outcome.STILL_UNAVAILABLE,
                                f"{exc}; run the day again later", run_id)
    # a bug, not a flaky step: never retried
    get_run_logger().error("%s %s: unexpected error", client_id, business_date, exc_info=exc)
    return fleet.DayOutcome(client_id, the_day, Outcome.UNEXPECTED_ERROR,
                            f"{type(exc).__name__}: {exc}", run_id)


def announce_error(done: fleet.DayOutcome) -> None:
    """The event of a client-day that raised instead of ending in an outcome (still
    unavailable after its retries, or a bug before its day was claimed): the data team's."""
    _emit_day_event(ERROR_EVENT, done, {})


def _emit_day_event(name: str, done: fleet.DayOutcome, payload: dict[str, Any]) -> None:
    """Event ``name`` of a client-day: its client as the resource, its run as related, the
    day's state and message in the payload, with ``payload`` added."""
    emit_event(name,
               resource={"prefect.resource.id": f"toporder.client.{done.client_id}",
                         "prefect.resource.name": done.client_id},
               related=([] if done.run_id is None else
                        [{"prefect.resource.id": f"prefect.flow-run.{done.run_id}",
                          "prefect.resource.role": "flow-run"}]),
               payload={"client": done.client_id, "business_date": done.business_date.isoformat(),
                        "state": done.outcome.state_name, "message": done.message,
                        "run_url": runtime.run_url(done.run_id), **payload})


def state_of(done: fleet.DayOutcome) -> State[Any]:
    """The final state of the run of a client-day: its outcome's type and name, and the
    ``DayOutcome`` itself as its data, for the caller in this process (``outcome_of_run``);
    Prefect keeps no result of it (``persist_result=False``)."""
    return State(type=StateType(done.outcome.state_type), name=done.outcome.state_name,
                 message=done.message, data=done)


async def outcome_of_run(state: State[Any], client_id: str,
                         business_date: date) -> fleet.DayOutcome:
    """What the ``post-client-day`` run of ``client_id``'s ``business_date`` that ended in
    ``state`` came to: the ``DayOutcome`` of ``state_of``, never read back from the state's
    name. A run that ended without one (it crashed, was cancelled from the UI...) is an
    unexpected error, its state's name and message saying how."""
    done = None if state.data is None else await state.aresult(raise_on_failure=False)
    if isinstance(done, fleet.DayOutcome):
        return done
    run_id = state.state_details.flow_run_id
    return fleet.DayOutcome(client_id, business_date, Outcome.UNEXPECTED_ERROR,
                            f"{state.name}: {state.message}", str(run_id) if run_id else None)


def run_tags(client: ClientRecord | str, territory: str | None, business_date: date | None,
             outcome: Outcome | None = None) -> list[str]:
    """The tags of a client-day's flow run, whatever ran it: the project, the client, its
    territory and day, and who must act once the outcome needs somebody.

    A run needing somebody also carries ``needs-action:<day>``: the UI's tag filter matches
    runs with any of the tags it is given, so the days of one morning that need somebody are
    found by one tag, not by two."""
    client_id = client if isinstance(client, str) else client.client_id
    tags = [PROJECT_TAG, f"client:{client_id}"]
    if territory:
        tags.append(f"territory:{territory}")
    if business_date is not None:
        tags.append(f"day:{business_date.isoformat()}")
    if outcome is not None and outcome.needs_action:
        tags += outcome.tags
        if business_date is not None:
            tags.append(f"{NEEDS_ACTION_TAG}:{business_date.isoformat()}")
    return tags


# A day of a catch-up that takes longer than this is abandoned as an unexpected error (its
# thread may go on: the day's claim keeps any other run off it), and its client's later days
# are not run.
DAY_TIMEOUT = 300.0


def _days_run_name() -> str:
    parameters = task_run.get_parameters()
    first, last = parameters["business_dates"][0], parameters["business_dates"][-1]
    return f"{parameters['client_id']} {first}" + ("" if first == last else f" to {last}")


@task(name="client-days", task_run_name=_days_run_name, cache_policy=NO_CACHE)
async def client_days(client_id: str, business_dates: list[date], day_flow: Flow[..., Any],
                      posted_artifact: bool = True, territory: str = "") -> State[Any]:
    """A client's days of a catch-up as one task run, oldest first, each day the same story,
    final state, artifact and events as a ``post-client-day`` run. The task run's id holds each
    day's claim in the ledger while it runs.

    One after the other: a day's continuity check (identity 6) reads the closure posted for the
    day before, which must be posted first. A day still unavailable after its retries, or
    failing unexpectedly, stops its client's later days (``Not run``): they would only warn of
    the gap it leaves, or fail the same way. The task run ends in the state of its most
    pressing day (``fleet.most_pressing``), with a message counting the days and naming those
    to look at; its result is every day's ``fleet.DayOutcome``, which the catch-up summarizes.
    Each day that needs somebody, waits for its closure or resolves an alert is also a flow run
    of its own (``runtime.record_flow_run``): the one the Runs page, the board and the events
    link to.

    ``business_dates``: at least one. The client is read from the ledger once, when its first
    day needs it (a read that fails is not kept: the next day reads again).

    ``day_flow``: the flow the days' runs of their own are recorded as (``post-client-day``,
    given by the catch-up: tasks never import flows).

    ``posted_artifact=False``: a posted day leaves no artifact (its entry is in the ledger); a
    day that needs a person still leaves its table of failures.
    """
    task_run_id = task_run.get_id()
    if task_run_id is None:
        raise RuntimeError("client-days runs only as a Prefect task run")
    run_id = runtime.task_run_ref(task_run_id)
    # Called in the days' worker threads, never on the event loop (``engine()`` may upgrade).
    read_client = cache(lambda: day.client_and_source(engine(), client_id))
    outcomes: list[fleet.DayOutcome] = []
    stopped: fleet.DayOutcome | None = None
    for the_day in business_dates:
        if stopped is not None:
            outcomes.append(await _recorded(fleet.not_run(client_id, the_day, stopped),
                                            territory, None, day_flow))
            continue
        outcome = await _catch_up_day(client_id, territory, the_day, run_id, posted_artifact,
                                      read_client, day_flow)
        outcomes.append(outcome)
        if outcome.kind == "error":  # still unavailable after its retries, or a bug
            stopped = outcome
    return days_state(outcomes)


async def _catch_up_day(client_id: str, territory: str, business_date: date, run_id: str,
                        posted_artifact: bool, read_client: ClientAndSource,
                        day_flow: Flow[..., Any]) -> fleet.DayOutcome:
    try:
        result = await asyncio.wait_for(post_day(client_id, business_date, runtime.now(),
                                                 run_id, read_client), DAY_TIMEOUT)
    except Exception as exc:  # turned into the day's final state
        if isinstance(exc, TimeoutError):
            exc = TimeoutError(str(exc) or f"the day ran over {DAY_TIMEOUT:g} s")
        done = await _recorded(verdict_of_error(client_id, business_date, exc, None),
                               territory, None, day_flow)
        announce_error(done)
        return done
    done = verdict(result, None)
    resolved = result.alert is not None and result.alert.change == "resolved"
    if not (done.outcome.needs_action or done.outcome is Outcome.WAITING or resolved):
        if posted_artifact or not done.outcome.done:
            await announce(result, done)
        return done
    done = await _recorded(done, territory, result, day_flow)
    await asyncio.to_thread(service.relink_run, engine(), client_id, business_date,
                            from_run=run_id, to_run=done.run_id or run_id)
    await announce(result, done)
    return done


async def _recorded(done: fleet.DayOutcome, territory: str, result: day.DayResult | None,
                    day_flow: Flow[..., Any]) -> fleet.DayOutcome:
    """``done`` with a flow run of ``day_flow`` of its own, created in its final state."""
    record = await runtime.record_flow_run(
        day_flow, f"{done.client_id} {done.business_date}",
        parameters={"client_id": done.client_id,
                    "business_date": done.business_date.isoformat()},
        tags=run_tags(done.client_id, territory, done.business_date, done.outcome),
        state=state_of(done))
    done = replace(done, run_id=record)
    if result is None:  # nothing recorded in the ledger: the run says it all
        await publish_client(done.client_id, done.business_date,
                             report.failure_markdown(done.client_id, done.business_date,
                                                     done.outcome.state_name, (),
                                                     done.message),
                             f"{done.outcome.state_name}: {done.message}", flow_run_id=record)
    return done


def days_state(outcomes: list[fleet.DayOutcome]) -> State[Any]:
    """The state of a run of client-days (at least one): its most pressing day's, all counted."""
    summary = fleet.summarize(outcomes)
    message = summary.line() + "".join(
        f"; {o.business_date} {o.outcome.state_name}: {o.message}" for o in summary.to_look_at)
    worst = fleet.most_pressing(outcomes).outcome
    return State(type=StateType(worst.state_type), name=worst.state_name, message=message,
                 data=tuple(outcomes))


def verdict(result: day.DayResult, run_id: str | None) -> fleet.DayOutcome:
    """What the client-day came to, with the message its final state carries."""
    client_id, the_day, outcome = result.client.client_id, result.business_date, result.outcome
    if result.error is not None:  # recorded in the ledger as ``error``; the traceback is here
        get_run_logger().error("%s %s: unexpected error", client_id, the_day,
                               exc_info=result.error)
    match outcome:
        case Outcome.ALREADY_RUNNING:
            message = (f"another run of {client_id} {the_day} is in progress; this one "
                       "changed nothing")
        case Outcome.WAITING:
            deadline = result.deadline.isoformat() if result.deadline else "the deadline"
            message = (f"no closure received for {the_day} yet; waited for until {deadline}, "
                       "then flagged missing")
        case Outcome.NOTHING_TO_POST:
            piece = result.entry.piece_ref if result.entry else str(the_day)
            message = f"{piece}: the closure has no amount to post"
        case Outcome.POSTED | Outcome.POSTED_WITH_WARNINGS if (
                result.entry is not None and result.posted is not None):
            entry, posted = result.entry, result.posted
            message = (f"entry n°{posted.number} {_POSTED_AS[posted.status]} "
                       f"({entry.piece_ref}, {len(entry.lines)} lines, "
                       f"{entry.total_debit} EUR)")
            if result.findings:
                message += f"; warnings: {report.summary(result.findings)}"
        case _ if outcome in ACTIONS:
            message = f"{ACTIONS[outcome]} {report.summary(result.findings)}"
            if result.alert is not None and result.alert.change == "repeated":
                message += " (already reported)"
        case _:
            raise ValueError(f"{client_id} {the_day}: no final state for {outcome}")
    if result.alert is not None and result.alert.change == "resolved":
        message += f"; resolves {Outcome[result.alert.alert.outcome].state_name}"
    return fleet.DayOutcome(client_id, the_day, outcome, message, run_id)


async def announce(result: day.DayResult, done: fleet.DayOutcome) -> None:
    """The client's artifact for the day, and the event of an alert raised or resolved.

    A posted day's artifact shows its entry, any other its failures; both list the client's
    recent days and link an alert resolved to the run that raised it."""
    client_id, the_day = result.client.client_id, result.business_date
    alert = result.alert
    lines = [f"# {client_id} {the_day}: {done.outcome.state_name}", "",
             f"Who must act: **{done.outcome.who}**. {done.message}", ""]
    if alert is not None and alert.change == "resolved":
        lines += [f"Resolves the {Outcome[alert.alert.outcome].state_name} raised by run "
                  f"{runtime.run_url(alert.alert.run_id)}.", ""]
    if alert is not None and alert.change == "repeated":
        lines += [f"Already reported by run {runtime.run_url(alert.alert.run_id)}.", ""]
    if result.entry is not None and result.posted is not None:
        lines.append(report.entry_markdown(result.entry, result.posted.number,
                                           result.findings))
    elif done.outcome in ACTIONS:
        lines.append(report.findings_table(result.findings))
    recent = await asyncio.to_thread(board.read_recent, engine(), client_id, the_day)
    lines += ["", "## Recent days", "", board.recent_markdown(recent, runtime.run_url)]
    await publish_client(client_id, the_day, "\n".join(lines),
                         f"{the_day} {done.outcome.state_name}: {done.message}",
                         flow_run_id=done.run_id)
    if alert is None:
        return
    if alert.change == "raised" and done.outcome.who is Who.DATA_TEAM:
        _emit_day_event(ERROR_EVENT, done, {})
    elif alert.change == "raised":
        _emit_day_event(FLAGGED_EVENT, done, {
            "category": (result.category or Category.POS).value, "who": str(done.outcome.who),
            "rules": sorted({f.rule for f in result.findings if f.is_error})})
    elif alert.change == "resolved":
        _emit_day_event(RESOLVED_EVENT, done, {
            "was": Outcome[alert.alert.outcome].state_name,
            "was_run_url": runtime.run_url(alert.alert.run_id)})
        await runtime.settle_runs(client_id, the_day)


async def publish_client(client_id: str, business_date: date, markdown: str, description: str,
                         *, flow_run_id: str | None) -> None:
    """A new version of the client's keyed artifact, on the run that stands for the day."""
    await MarkdownArtifact(
        key=board.client_key(client_id), markdown=markdown, description=description,
        flow_run_id=None if flow_run_id is None else UUID(flow_run_id),
    ).acreate()


async def publish_board(business_date: date, errors: list[fleet.DayOutcome]) -> None:
    """A new version of the business day's board, from the ledger (and the run's errors)."""
    days = await asyncio.to_thread(board.read_day, engine(), business_date)
    if not days and not errors:  # no client was active yet: no board
        return
    made = board.board(business_date, days, errors, runtime.run_url)
    await acreate_table_artifact(list(made.rows) or [{"client": "", "state": "nothing to do"}],
                                 key=board.board_key(business_date),
                                 description=made.description)


__all__ = ["ERROR_EVENT", "FLAGGED_EVENT", "RESOLVED_EVENT", "announce", "announce_error",
           "client_days", "days_state", "outcome_of_run",
           "post_day", "publish_board", "publish_client", "run_tags", "state_of", "verdict",
           "verdict_of_error"]
