"""One flow run per client-day: the day is posted, then reported.

The flow holds no accounting rule: it runs the client-day (``tasks.daily.post_day``, the story
of ``toporder_sync.day``: claim → admit → fetch → validate → map → build → load, in a worker
thread) and ends in the state of its ``outcome.Outcome``: ``Posted``, ``Posted with
warnings`` and ``Nothing to post`` (Completed); ``POS data error`` and ``Missing closure``
(Failed, Toporder must act), ``Mapping error`` (Failed, the accountant), ``Still unavailable``
and ``Unexpected error`` (Failed, the data team); ``Waiting for closure`` (a later sweep runs
the day again), ``Already running`` and ``Refused`` (Cancelled: nobody need act). Each run is
tagged with the project, its client, territory and day, and a run needing somebody with
``needs-action`` and ``needs:<who>``; it leaves a new version of its client's artifact, and an
alert raised or resolved emits ``toporder.day.flagged`` or ``toporder.day.resolved``. A run
started on its own (not by a dispatch, which does it once for all its days) also publishes
its day's board.

A scheduled run gets no business date: it processes the day before its scheduled start in the
client's timezone, and renames itself ``<client> <day>`` once that day is known. It is async
because an async flow run skips the heartbeat-thread join that every sync flow run waits for at
exit, most of an empty sync flow run's time (measured: BENCHMARKS.md, "Heartbeats").
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from toporder_sync.tasks import daily as t
from toporder_sync.tasks import runtime


def _run_name() -> str:
    """``<client> <day>``; a scheduled run renames itself once its day is known."""
    parameters = flow_run.get_parameters()
    return f"{parameters['client_id']} {parameters.get('business_date') or 'scheduled'}"


@flow(name="post-client-day", flow_run_name=_run_name,
      description="Post one client's closure of one business day as a sales-journal entry.",
      validate_parameters=True, timeout_seconds=300,
      persist_result=False, result_storage=runtime.RESULT_STORAGE)
async def post_client_day(client_id: str, business_date: date | None = None) -> State[Any]:
    run_id = runtime.current_flow_run_id()
    if run_id is None:
        raise RuntimeError("post-client-day runs only as a Prefect flow run")
    try:
        result = await t.post_day(client_id, business_date, runtime.scheduled_start(), run_id)
    except Exception as exc:  # turned into the run's final state
        done = t.verdict_of_error(client_id, business_date, exc, run_id)
        await runtime.label_run(None, t.run_tags(client_id, None, business_date, done.outcome))
        t.announce_error(done)
        if business_date is not None and not runtime.in_fleet_run():
            await t.publish_board(business_date, [done])
        return t.state_of(done)
    done = t.verdict(result, run_id)
    await runtime.label_run(
        None if business_date else f"{client_id} {result.business_date}",
        t.run_tags(result.client, result.client.territory.value, result.business_date,
                   done.outcome))
    await t.announce(result, done)
    if not runtime.in_fleet_run():
        await t.publish_board(result.business_date, [])
    return t.state_of(done)
