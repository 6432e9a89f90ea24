"""Running client-days through the Prefect flow from this process (CLI and demo).

Prefect is imported here lazily, after offline-friendly defaults are set, so that commands
that do not run flows start at once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from toporder_sync.ledger import repository
from toporder_sync.ledger.db import database_url, get_engine, session_scope, upgrade

EXIT_FLAGGED, EXIT_USAGE, EXIT_REFUSED, EXIT_MISSING = 1, 2, 3, 4


def quiet_prefect_defaults() -> None:
    """Offline-friendly Prefect defaults, set before Prefect is imported (never overriding)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect's local mode starts a server in ~15 s on an idle 2-core machine; its default
    # 20 s limit fails a first run on a busy one.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@dataclass(frozen=True, slots=True)
class DayRun:
    client_id: str
    business_date: date
    state_name: str
    message: str
    exit_code: int


def exit_code(state_name: str | None, completed: bool) -> int:
    if completed:
        return 0
    return {"Refused": EXIT_REFUSED, "Missing closure": EXIT_MISSING}.get(state_name or "",
                                                                          EXIT_FLAGGED)


def run_days(client_days: Sequence[tuple[str, date]],
             progress: Callable[[DayRun], None] | None = None) -> list[DayRun]:
    """Run the flow once per client-day, in order, tagged with the client and its territory."""
    quiet_prefect_defaults()
    from prefect import tags

    from toporder_sync.flows.daily import post_client_day
    from toporder_sync.tasks.runtime import shared_clients

    engine = get_engine(database_url())
    upgrade(engine)
    with session_scope(engine) as session:
        territories = {c.client_id: c.territory for c in repository.list_clients(session)}

    async def go() -> list[DayRun]:
        async with shared_clients():
            return await run_each()

    async def run_each() -> list[DayRun]:
        results = []
        for client_id, day in client_days:
            if client_id not in territories:
                repository_error = f"unknown client {client_id!r}"
                results.append(DayRun(client_id, day, "Refused", repository_error, EXIT_REFUSED))
                continue
            with tags(f"client:{client_id}", f"territory:{territories[client_id]}"):
                state = await post_client_day(client_id, day, return_state=True)
            done = DayRun(client_id, day, state.name or state.type.value, state.message or "",
                          exit_code(state.name, state.is_completed()))
            results.append(done)
            if progress is not None:
                progress(done)
        return results

    return asyncio.run(go())
