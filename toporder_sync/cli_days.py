"""``toporder-sync days``: the claims that keep two runs off one client-day, listed and freed.

A run holds its client-day in the ledger while it runs (``day.run_day``) under a short lease
that it renews while alive (``day.CLAIM_LEASE``); a run killed without letting go holds the day
until the lease runs out. ``release`` frees such a claim at once: when its lease has run out,
or when Prefect knows its run dead (the flow run, or the task run or its flow run, of the
holder in a final state: Completed, Failed, Cancelled, Crashed; or a flow run not found on the
API of PREFECT_API_URL). A live claim (its lease running, its run not known dead) is refused:
exit 6, as a run finding its day ``Already running``. Prefect is imported only when a live
claim's run must be looked up. ``list-claims`` shows every claimed day, from the ledger alone.

Exit codes: 0 freed, or nothing to free; 2 bad usage; 3 unknown client; 6 the claim is live.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import date, datetime
from typing import NoReturn
from uuid import UUID

import click

from toporder_sync import cli_support, service
from toporder_sync.ledger.claims import Claim
from toporder_sync.outcome import EXIT_ALREADY_RUNNING
from toporder_sync.runner import quiet_prefect_defaults

# How the ledger names a task run holding a claim (``tasks.runtime.task_run_ref``), spelled
# here too so that the command imports Prefect only when it must ask it.
TASK_RUN_PREFIX = "task-run:"


@click.group("days")
def days() -> None:
    """Client-days' claims: which run holds a day, and freeing a dead run's claim."""


@days.command("release")
@click.argument("client")
@click.option("--date", "business_date", required=True, callback=cli_support.day,
              help="The business day YYYY-MM-DD.")
def release(client: str, business_date: date) -> None:
    """Free CLIENT's day from the claim of a run that is dead: its lease has run out, or
    Prefect knows its run ended (Completed, Failed, Cancelled, Crashed) or not at all.

    A live claim is refused (exit 6): its run is still at work, or may be.
    """
    with cli_support.errors():
        engine = cli_support.engine()
        claim = service.claim_of(engine, client, business_date)
        if claim is None:
            click.echo(f"nothing to free: {client} {business_date} is not claimed")
            return
        now = cli_support.now()
        if claim.lapsed(now):
            reason = f"its lease ran out at {_when(claim.until)}"
            freed = service.free(engine, claim, lapsed_by=now)
        else:
            fate = holder_fate(claim.run_id)
            if not fate.dead:
                _refuse(claim, fate.known)
            reason = fate.known
            freed = service.free(engine, claim)
        if not freed:  # the run let go of the day, or renewed its lease, meanwhile
            now_held = service.claim_of(engine, client, business_date)
            if now_held is not None:
                _refuse(now_held, "it renewed its claim meanwhile"
                        if now_held.run_id == claim.run_id else "it took the day meanwhile")
            click.echo(f"nothing to free: run {claim.run_id} let go of {client} "
                       f"{business_date} meanwhile")
            return
        click.echo(f"freed the claim of run {claim.run_id} on {client} {business_date} "
                   f"({reason})")


@days.command("list-claims")
@click.argument("client", required=False)
def list_claims(client: str | None) -> None:
    """Every claimed client-day (of CLIENT only, if given): its run and until when it holds
    the day. Read from the ledger alone: a live lease may belong to a dead run (``release``
    asks Prefect)."""
    with cli_support.errors():
        found = service.claims(cli_support.engine(), client)
        now = cli_support.now()
        if not found:
            click.echo("no client-day is claimed")
        for claim in found:
            click.echo(f"{claim.client_id} {claim.business_date} run {claim.run_id} until "
                       f"{_when(claim.until)} ("
                       f"{'lease ran out' if claim.lapsed(now) else 'lease running'})")


def _refuse(claim: Claim, known: str) -> NoReturn:
    click.echo(f"refused: run {claim.run_id} holds {claim.client_id} {claim.business_date} "
               f"until {_when(claim.until)} ({known}); it is live, or may be: free it once "
               "its lease runs out, or once Prefect shows its run ended", err=True)
    sys.exit(EXIT_ALREADY_RUNNING)


def _when(instant: datetime | None) -> str:
    return "-" if instant is None else instant.isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Fate:
    """What Prefect says of the run holding a claim: ``dead`` when it knows it ended, or
    never ran on its API; ``known``, in words."""

    dead: bool
    known: str


def holder_fate(run_id: str) -> Fate:
    """Ask the Prefect API of PREFECT_API_URL what became of run ``run_id``: a flow run's id,
    or a task run's (``task-run:<id>``), which is dead too once its flow run ended.

    Only what Prefect states counts: an id that is neither, an API that does not answer, a
    flow run not found by Prefect's local mode (it may have run on a server), or a task run not
    found (Prefect 3 records task runs from their events, seconds later: a running catch-up's
    task run was seen missing) leave the run's fate unknown, not dead."""
    task = run_id.startswith(TASK_RUN_PREFIX)
    try:
        run_uuid = UUID(run_id.removeprefix(TASK_RUN_PREFIX))
    except ValueError:
        return Fate(False, "not a Prefect run id: its fate is unknown")
    quiet_prefect_defaults()
    try:
        return asyncio.run(_ask_prefect(run_uuid, task=task))
    except Exception as exc:  # unreachable API, refused request: nothing is known
        error = (str(exc).splitlines() or [""])[0]
        return Fate(False, f"Prefect did not say what became of it: {type(exc).__name__}"
                           + (f": {error}" if error else ""))


async def _ask_prefect(run_uuid: UUID, *, task: bool) -> Fate:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    kind = "task run" if task else "flow run"
    async with get_client() as client:
        try:
            if task:
                task_run = await client.read_task_run(run_uuid)
                state, flow_run_id = task_run.state, task_run.flow_run_id
            else:
                state, flow_run_id = (await client.read_flow_run(run_uuid)).state, None
        except ObjectNotFound:
            if task:  # recorded from its events, after a delay: absent is not dead
                return Fate(False, f"its {kind} is not known to the Prefect API yet")
            if api is None:  # Prefect's local mode: the run may be on a server
                return Fate(False, f"its {kind} is not found by Prefect's local mode; set "
                                   "PREFECT_API_URL to the server it ran on")
            return Fate(True, f"its {kind} does not exist on the Prefect API at {api}")
        if state is not None and state.is_final():
            return Fate(True, f"its {kind} is {state.name}")
        if flow_run_id is not None:  # a task run left Running by a flow run that ended
            flow_state = (await client.read_flow_run(flow_run_id)).state
            if flow_state is not None and flow_state.is_final():
                return Fate(True, f"the flow run of its {kind} is {flow_state.name}")
        return Fate(False, f"its {kind} is {'in no state' if state is None else state.name}")
