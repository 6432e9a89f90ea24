"""``relay-outbox``: deliver the outbox's due messages; one run per round of the relay service.

``toporder-sync relay``, the long-lived relay (docs/relay.md), runs this flow in its own
process for each round that has due messages when PREFECT_API_URL names a server
(``relay_round``): the UI shows a run only when something was due, never one for an idle
minute. One run is one ``outbox.relay`` call (at most ``limit`` messages), in a worker thread
so that its blocking HTTP and database calls do not hold the event loop. Several relays at
once are safe on PostgreSQL (claims skip what another relay holds); on SQLite they take turns
on the database's write lock. The run completes with what it did as its message, and the
``outbox.RelayReport`` as its (unpersisted) result; failed deliveries are the outbox's
business (retried, then dead-lettered), not a failed run.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed

from toporder_sync import (
    notifications,  # noqa: F401 (registers its outbox handler)
    outbox,
)
from toporder_sync.core.errors import TransientError
from toporder_sync.pennylane import sink  # noqa: F401 (registers its outbox handler)
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
        data=report,
    )


async def relay_round(limit: int = 100, max_attempts: int = 8) -> outbox.RelayReport:
    """One round of the relay service: a ``relay-outbox`` flow run in this process; its report.

    The run gets a thread and an event loop of its own. Prefect arms its SIGTERM handler on
    the main thread only, and there it would turn the service's stop into a crashed run; here
    the service's own handler takes the signal, and the round finishes before the service
    stops. A Prefect server that cannot be reached is a ``TransientError``: the messages wait
    in the ledger for the next round.
    """
    return await asyncio.to_thread(asyncio.run, _run_round(limit, max_attempts))


async def _run_round(limit: int, max_attempts: int) -> outbox.RelayReport:
    try:
        state = await relay_outbox(limit=limit, max_attempts=max_attempts, return_state=True)
    except httpx.HTTPError as exc:
        raise TransientError(f"the Prefect server is unavailable: {exc}") from exc
    except RuntimeError as exc:
        # How prefect 3.9.1 says it, the first time this process talks to the server.
        if not isinstance(exc.__cause__, httpx.HTTPError):
            raise
        raise TransientError(f"the Prefect server is unavailable: {exc}") from exc
    report = await state.aresult()  # raises what failed the run (a TransientError of the ledger)
    if not isinstance(report, outbox.RelayReport):
        raise TypeError(f"relay-outbox ended {state.name!r} without its report")
    return report
