"""The demo: a week of simulated closures for four demo clients, posted through the flows.

Everything runs on the embedded defaults: a fresh SQLite ledger in the demo folder and
Prefect's local mode. It shows the whole product once: activation, closures received, one flow
run per client-day, an unknown payment method posted to 471000 with a warning, an unbalanced
closure flagged for the POS, a day before activation refused, a mapping fixed and its day rerun
(the first entry reversed, the corrected one posted), a status table and FEC files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from toporder_sync import service
from toporder_sync.core import simulator
from toporder_sync.core.fec import FecEntry, write_fec
from toporder_sync.core.model import Territory
from toporder_sync.ledger import repository
from toporder_sync.ledger.db import DATABASE_URL_ENV, get_engine, session_scope, upgrade
from toporder_sync.runner import DayRun, run_days

DAYS = 7


@dataclass(frozen=True, slots=True)
class DemoClient:
    client_id: str
    name: str
    venue: str
    territory: Territory
    timezone: str


CLIENTS = (
    DemoClient("petit-zinc", "Le Petit Zinc", "restaurant", Territory.METROPOLE, "Europe/Paris"),
    DemoClient("fournil-bastille", "Le Fournil de la Bastille", "bakery", Territory.METROPOLE,
               "Europe/Paris"),
    DemoClient("bar-du-port", "Bar du Port", "bar", Territory.CORSE, "Europe/Paris"),
    DemoClient("epicerie-creole", "Épicerie Créole", "shop", Territory.DOM, "America/Martinique"),
)


def run_demo(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ledger_file = directory / "ledger.db"
    for stale in (ledger_file, *directory.glob("ledger.db-*")):
        stale.unlink(missing_ok=True)
    os.environ[DATABASE_URL_ENV] = f"sqlite:///{ledger_file.resolve()}"
    engine = get_engine(os.environ[DATABASE_URL_ENV])
    upgrade(engine)
    now = datetime.now(UTC)
    # The week ends the day before yesterday in Paris, so that every day is over in every
    # demo client's timezone whatever the hour the demo runs.
    end = now.astimezone(ZoneInfo("Europe/Paris")).date() - timedelta(days=2)
    start = end - timedelta(days=DAYS - 1)
    click.echo(f"Demo ledger: {ledger_file} — business days {start} to {end}\n")

    inbox = directory / "closures"
    inbox.mkdir(exist_ok=True)
    for stale_file in inbox.glob("*.json"):
        stale_file.unlink()
    faults = {
        "petit-zinc": {start + timedelta(days=2): frozenset({"unknown_method"})},
        "fournil-bastille": {start + timedelta(days=4): frozenset({"unbalanced"})},
    }
    for client in CLIENTS:
        with session_scope(engine) as session:
            record = repository.activate_client(
                session, client.client_id, name=client.name, activated_on=start,
                territory=client.territory.value, timezone=client.timezone, now=now)
        click.echo(f"activated {client.client_id:<17} {client.territory.value:<9} "
                   f"integration id {record.integration_id[:12]}…")
        documents = simulator.generate_series(
            integration_id=record.integration_id, establishment_id=f"TOP-{client.client_id}",
            establishment_name=client.name, start=start, days=DAYS, venue=client.venue,
            territory=client.territory, first_number=101, perpetual_start=Decimal("25000.00"),
            faults_by_day=faults.get(client.client_id, {}),
        )
        for document in documents:
            raw = simulator.dumps(document)
            path = inbox / f"{client.client_id}-{document['closure']['business_date']}.json"
            path.write_bytes(raw)
            service.receive(engine, raw, str(path), now=now)
    click.echo(f"\n{DAYS * len(CLIENTS)} closures received into the inbox ({inbox})\n")

    before = start - timedelta(days=1)
    refused = run_days([("petit-zinc", before)])[0]
    click.echo(f"A day before activation, asked anyway: {refused.state_name}: {refused.message}\n")

    client_days = [(c.client_id, start + timedelta(days=i)) for c in CLIENTS for i in range(DAYS)]
    with click.progressbar(length=len(client_days), label="Running client-days") as bar:
        results = run_days(client_days, progress=lambda _run: bar.update(1))
    _print_runs(results)

    unknown_day = start + timedelta(days=2)
    with session_scope(engine) as session:
        repository.set_mapping(session, "petit-zinc", "Lydia", "511600", now=now)
    click.echo("\nMapped 'Lydia' to 511600 for petit-zinc and reran its day: ", nl=False)
    rerun = run_days([("petit-zinc", unknown_day)])[0]
    click.echo(f"{rerun.state_name}: {rerun.message}\n")

    for client in CLIENTS:
        with session_scope(engine) as session:
            days = repository.day_statuses(session, client.client_id)
            stored = repository.entries_between(session, client.client_id, start, end)
        click.echo(f"{client.client_id}:")
        for day in days:
            detail = "; ".join(f.message for f in (*day.messages, *day.warnings))
            click.echo(f"  {day.business_date}  {day.state:<8} {day.error_category or '':<6} "
                       f"{day.piece_ref or '':<6} {detail[:90]}")
        out = directory / f"{client.client_id}-FEC.txt"
        lines = write_fec([FecEntry(s.number, s.entry, s.posted_at.date()) for s in stored], out)
        click.echo(f"  FEC: {out} ({len(stored)} entries, {lines} lines)\n")
    posted = sum(1 for r in results if r.exit_code == 0)
    summary = {"client_days": len(results), "posted": posted,
               "flagged": len(results) - posted, "ledger": str(ledger_file)}
    click.echo("demo: " + json.dumps(summary))


def _print_runs(results: list[DayRun]) -> None:
    for run in results:
        if run.exit_code != 0 or "warning" in run.state_name.lower():
            click.echo(f"  {run.client_id} {run.business_date}: {run.state_name}: "
                       f"{run.message[:140]}")


__all__ = ["CLIENTS", "run_demo"]
