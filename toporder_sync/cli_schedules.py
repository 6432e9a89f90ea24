"""``toporder-sync schedules``: keep the ``dispatch-daily`` schedules in step with the clients.

``sync`` reads the distinct (timezone, run hour) of the active clients, and the hours until
their deadlines, from the ledger and makes the deployment's schedules match (see
:mod:`toporder_sync.schedules`); run it after activating, deactivating or moving clients, or
from cron. ``list`` shows the schedules on the server next to the number of active clients
whose run hour each one is (0 for an hourly sweep of waiting days). Both talk to the Prefect
server of PREFECT_API_URL. Exit codes: 0 done, 2 configuration (no PREFECT_API_URL, server
unreachable, deployment not deployed, bad timezone or hour in the registry).
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import click

from toporder_sync import fleet
from toporder_sync import schedules as sched
from toporder_sync.core.errors import ConfigurationError
from toporder_sync.ledger import clients
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.ledger.db import database_url, get_engine, session_scope, upgrade
from toporder_sync.outcome import EXIT_USAGE
from toporder_sync.runner import quiet_prefect_defaults

_DEPLOYMENT = click.option("--deployment", default=sched.DEPLOYMENT, show_default=True,
                           help="The dispatch deployment, as FLOW_NAME/DEPLOYMENT_NAME.")
_SHARDS = click.option("--shards", type=click.IntRange(min=1), default=1, show_default=True,
                       envvar="TOPORDER_SYNC_SHARDS",
                       help="Split each hour's clients into this many dispatch runs that start "
                            "together, for workers on several machines (env "
                            "TOPORDER_SYNC_SHARDS).")


def _registry() -> tuple[list[tuple[str, int]], list[ClientRecord]]:
    """The (timezone, run hour) slots and the active clients."""
    engine = get_engine(database_url())
    upgrade(engine)
    with session_scope(engine) as session:
        return (clients.schedule_slots(session),
                [c for c in clients.list_clients(session) if c.active])


def _slots(run_slots: list[tuple[str, int]], active: list[ClientRecord],
           shards: int) -> tuple[sched.Slot, ...]:
    """Run slots and sweep hours (see :func:`toporder_sync.schedules.sweep_hours`)."""
    sweeps = sched.sweep_hours((c.timezone, c.run_hour, c.deadline_hour) for c in active)
    return sched.desired_slots([*run_slots, *sweeps], shards)


def _fail(exc: ConfigurationError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_USAGE)


@click.group("schedules")
def schedules() -> None:
    """The daily schedules: one per local hour at which active clients run or wait."""


@schedules.command("sync")
@click.option("--dry-run", is_flag=True, help="Print what would change, change nothing.")
@_DEPLOYMENT
@_SHARDS
def schedules_sync(dry_run: bool, deployment: str, shards: int) -> None:
    """Create, correct and delete the deployment's schedules to match the client registry."""
    quiet_prefect_defaults()
    try:
        sched.api_url()  # before touching the ledger: nothing to sync without a server
        done = asyncio.run(sched.sync(_slots(*_registry(), shards), deployment=deployment,
                                      dry_run=dry_run))
    except ConfigurationError as exc:
        _fail(exc)
        return
    for line in sched.describe(done):
        click.echo(f"{'would ' if dry_run else ''}{line}")
    paused = [e.slug for e, _ in done.keep if not e.active]
    if paused:
        click.echo(f"paused by hand, left paused: {', '.join(str(p) for p in paused)}")
    total = len(done.keep) + len(done.update) + len(done.create)
    verb = "would make" if dry_run else "made"
    click.echo(f"{deployment}: {total} schedules; {verb} {len(done.create)} created, "
               f"{len(done.update)} updated, {len(done.delete)} deleted")


@schedules.command("list")
@_DEPLOYMENT
@_SHARDS
def schedules_list(deployment: str, shards: int) -> None:
    """The deployment's schedules on the server, with the active clients each one runs."""
    quiet_prefect_defaults()
    try:
        existing = asyncio.run(sched.read(deployment))
        run_slots, active = _registry()
        wanted = {s.slug: s for s in _slots(run_slots, active, shards)}
    except ConfigurationError as exc:
        _fail(exc)
        return
    counts = Counter(
        sched.Slot(c.timezone, c.run_hour, shard, shards).slug for c in active
        for shard in range(shards) if fleet.in_shard(c.client_id, shard, shards))
    rows = []
    for e in sorted(existing, key=lambda e: e.slug or ""):
        state = "in step" if e.slug in wanted and e.matches(wanted[e.slug]) else "out of step"
        rows.append((e.slug or "(no slug)", e.cron or "(not cron)", e.timezone or "",
                     "yes" if e.active else "paused", str(counts.get(e.slug or "", 0)), state))
    rows += [(slug, slot.cron, slot.timezone, "-", str(counts.get(slug, 0)), "not on server")
             for slug, slot in sorted(wanted.items())
             if slug not in {e.slug for e in existing}]
    if not rows:
        click.echo("(none)")
        return
    header = ("slug", "cron", "timezone", "active", "clients", "state")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if any(r[-1] != "in step" for r in rows):
        click.echo("run `toporder-sync schedules sync` to bring the schedules in step")
