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

from toporder_sync.ledger import clients
from toporder_sync.ledger.db import database_url, get_engine, session_scope, upgrade
from toporder_sync.outcome import Outcome

__all__ = ["DEBUG_ENV", "DayRun", "run_days"]

# Set by ``toporder-sync --debug``: tracebacks are shown.
DEBUG_ENV = "TOPORDER_SYNC_DEBUG"


def quiet_prefect_defaults() -> None:
    """Offline-friendly Prefect defaults, set before Prefect is imported (never overriding)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect's local mode takes most of its default 20 s limit to start a server on an idle
    # 2-core machine (BENCHMARKS.md, "The order of a run"): that limit fails a first run on a
    # busy one.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@dataclass(frozen=True, slots=True)
class DayRun:
    client_id: str
    business_date: date
    outcome: Outcome
    message: str

    @property
    def state_name(self) -> str:
        return self.outcome.state_name

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


def run_days(client_days: Sequence[tuple[str, date]],
             progress: Callable[[DayRun], None] | None = None) -> list[DayRun]:
    """Run the flow once per client-day, in order, tagged with the client and its territory."""
    quiet_prefect_defaults()
    from prefect import tags

    from toporder_sync.flows.daily import post_client_day
    from toporder_sync.tasks.daily import outcome_of_run, run_tags
    from toporder_sync.tasks.prefect_private import (
        console_without_tracebacks,
        mute_server_stop_line,
    )
    from toporder_sync.tasks.runtime import flush_events, shared_clients

    if os.environ.get(DEBUG_ENV, "") in ("", "0"):
        console_without_tracebacks()

    engine = get_engine(database_url())
    upgrade(engine)
    with session_scope(engine) as session:
        territories = {c.client_id: c.territory for c in clients.list_clients(session)}

    async def go() -> list[DayRun]:
        async with shared_clients():
            return await run_each()

    async def run_each() -> list[DayRun]:
        results = []
        for client_id, day in client_days:
            if client_id not in territories:
                repository_error = f"unknown client {client_id!r}"
                results.append(DayRun(client_id, day, Outcome.REFUSED, repository_error))
                continue
            with tags(*run_tags(client_id, territories[client_id].value, day)):
                state = await post_client_day(client_id, day, return_state=True)
            outcome = await outcome_of_run(state, client_id, day)
            done = DayRun(client_id, day, outcome.outcome, outcome.message)
            results.append(done)
            if progress is not None:
                progress(done)
        return results

    try:
        return asyncio.run(go())
    finally:
        # The caller's result lines come last: what Prefect still has to send goes now, and
        # the line it would still log at exit in local mode is left out.
        flush_events()
        mute_server_stop_line()
