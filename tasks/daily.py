"""The work of a client-day, off the event loop, and what its flow tells Prefect besides its
final state: an artifact and, for a flagged day, an event.

``post_day`` runs the whole story of ``toporder_sync.day`` in a worker thread
(``asyncio.to_thread``), so that the event loop, and with it the other subflows of a catch-up,
keeps running while the ledger works. It is not a Prefect task: one task run per client-day
cost the Prefect server ~0.13 CPU-s and the worker ~0.07 more, a fifth of a client-day's
orchestration, for a step the flow run already shows (measured, see the README's "Fitting a
morning"). It retries a ``TransientError`` itself, which the ledger makes safe.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

from prefect.artifacts import acreate_markdown_artifact
from prefect.events import emit_event

from toporder_sync import day, report
from toporder_sync.core import calendar
from toporder_sync.core.errors import Category, Finding
from toporder_sync.tasks import runtime
from toporder_sync.tasks.runtime import engine


async def post_day(client_id: str, business_date: date | None, scheduled: datetime,
                   run_id: str) -> day.DayResult:
    """The client-day; a scheduled run (no date) takes the day before ``scheduled``, locally.

    Retried on a ``TransientError`` (``runtime.retry_transient``): safe, since every step is
    one ledger transaction and the ledger is idempotent."""
    return await runtime.retry_transient(
        lambda: asyncio.to_thread(_post_day, client_id, business_date, scheduled, run_id),
        what=f"{client_id} {business_date or 'scheduled'}")


def _post_day(client_id: str, business_date: date | None, scheduled: datetime,
              run_id: str) -> day.DayResult:
    ledger = engine()
    client, source = day.client_and_source(ledger, client_id)
    the_day = business_date or calendar.previous_business_day(scheduled, client.timezone)
    return day.run_day(ledger, client, the_day, source=source, run_id=run_id, now=runtime.now)


async def publish(client_id: str, business_date: date, markdown: str, description: str) -> None:
    await acreate_markdown_artifact(
        markdown, key=report.artifact_key(client_id, business_date), description=description
    )


FLAGGED_EVENT = "toporder.day.flagged"


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


__all__ = ["FLAGGED_EVENT", "announce", "post_day", "publish"]
