"""``relay-outbox``: deliver the outbox's due messages, meant to be scheduled every minute.

One run is one ``outbox.relay`` call (at most ``limit`` messages), in a worker thread so that
its blocking HTTP and database calls do not hold the event loop. Runs overlapping on a slow
minute are safe on PostgreSQL (claims skip what another relay holds); on SQLite they take
turns on the database's write lock. The run completes with what it did as its message; failed
deliveries are the outbox's business (retried, then dead-lettered), not a failed run.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed

from toporder_sync import outbox
from toporder_sync.tasks import runtime
from toporder_sync.tasks.runtime import engine


def _now() -> datetime:
    return datetime.now(UTC)


@flow(name="relay-outbox", description="Deliver the outbox's due messages, at least once.",
      validate_parameters=True, persist_result=False,
      result_storage=runtime.RESULT_STORAGE)
async def relay_outbox(limit: int = 100, max_attempts: int = 8) -> State[Any]:
    ledger = engine()
    handlers = {topic: factory(ledger) for topic, factory in outbox.HANDLER_FACTORIES.items()}
    report = await asyncio.to_thread(outbox.relay, ledger, handlers, now=_now, limit=limit,
                                     max_attempts=max_attempts)
    return Completed(
        name="Relayed",
        message=f"{report.claimed} due: {report.sent} sent, {report.retried} to retry, "
                f"{report.deferred} waiting for a webhook, {report.dead} dead",
    )
