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
        return t.error_state(client_id, business_date, exc)
    client = result.client
    await runtime.label_run(None if business_date else f"{client_id} {result.business_date}",
                            [f"client:{client_id}", f"territory:{client.territory.value}"])
    return await t.final_state(result)
