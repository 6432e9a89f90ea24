"""The demo: a week of closures for four demo clients, from a simulated Toporder, through the flows.

Everything runs on the embedded defaults, with nothing to set up: a fresh SQLite ledger in the
demo folder, Prefect's local mode, and in this process, each on a free port of 127.0.0.1, the
simulated Toporder (``simulator.server``, fixed seed) and the push receiver (``receiver``).
Two clients are ``pull`` clients: the flow fetches their closures from the simulator's API
(``TOPORDER_API_URL``/``TOPORDER_API_TOKEN`` are set for this process). Two are ``push``
clients: the simulator posts their closures to the receiver, signed with the push secret the
ledger issued to each.

It shows the whole product once: activation, closures pushed and pulled, one flow run per
client-day, a day before activation refused, a 429 of the API retried after its Retry-After, an
unknown payment method posted to 471000 with a warning, an unbalanced closure flagged for the
POS, a closure never pushed (the day missing), a mapping fixed and its day rerun (the first entry
reversed, the corrected one posted), the outbox relay telling the simulator of each flagged day
through its webhook, a status table and FEC files. The last line, ``demo: {json}``, sums it up
for scripts and tests.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import httpx
from sqlalchemy import Engine

from toporder_sync import notifications, outbox, receiver
from toporder_sync.core.fec import FecEntry, write_fec
from toporder_sync.core.model import Territory
from toporder_sync.ledger import clients, connections, inbox, journal
from toporder_sync.ledger import days as ledger_days
from toporder_sync.ledger.db import DATABASE_URL_ENV, get_engine, session_scope, upgrade
from toporder_sync.ledger.tables import ClosureSourceKind
from toporder_sync.outcome import EXIT_FLAGGED, EXIT_MISSING, Outcome
from toporder_sync.pennylane import sink  # noqa: F401 (registers its outbox handler)
from toporder_sync.runner import DayRun, run_days
from toporder_sync.simulator.faults import FaultRule
from toporder_sync.simulator.server import (
    Simulation,
    SimulatorConfig,
    create_app,
    push,
    serve_in_thread,
)
from toporder_sync.toporder_api import API_TOKEN_ENV, API_URL_ENV

DAYS = 7
# The simulator's seed: the same closures and faults on every run of the demo.
SEED = 2026
# Seconds the simulator's 429 asks the pull client to wait before asking again.
RETRY_AFTER = 1


@dataclass(frozen=True, slots=True)
class DemoClient:
    client_id: str
    name: str
    venue: str
    territory: Territory
    timezone: str
    source: ClosureSourceKind


# The pull clients are both in metropolitan France: the simulator's API serves one territory.
CLIENTS = (
    DemoClient("petit-zinc", "Le Petit Zinc", "restaurant", Territory.METROPOLE, "Europe/Paris",
               "pull"),
    DemoClient("fournil-bastille", "Le Fournil de la Bastille", "bakery", Territory.METROPOLE,
               "Europe/Paris", "pull"),
    DemoClient("bar-du-port", "Bar du Port", "bar", Territory.CORSE, "Europe/Paris", "push"),
    DemoClient("epicerie-creole", "Épicerie Créole", "shop", Territory.DOM, "America/Martinique",
               "push"),
)


@dataclass(frozen=True, slots=True)
class Story:
    """Where the demo's faults strike: each a client and a business day of the week."""

    unknown_method: tuple[str, date]
    unbalanced: tuple[str, date]
    throttled: tuple[str, date]  # the API's first answer for that day is a 429
    unpushed: tuple[str, date]  # Toporder never pushes that closure

    @classmethod
    def of_week(cls, start: date) -> Story:
        end = start + timedelta(days=DAYS - 1)
        # The closure never pushed is the week's last: no later closure of that register is
        # checked against it, so only that day is affected.
        return cls(("petit-zinc", start + timedelta(days=2)),
                   ("fournil-bastille", start + timedelta(days=4)),
                   ("fournil-bastille", start + timedelta(days=1)),
                   ("epicerie-creole", end))


class DemoToporder(Simulation):
    """The simulator, told the demo's story: each pull client's venue, and each fault of its
    configuration striking only the client-days ``places`` names rather than days drawn from
    the seed (the integration identifiers are new on every run, the story is not)."""

    def __init__(self, config: SimulatorConfig, *, venues: Mapping[str, str],
                 places: Mapping[str, frozenset[tuple[str, date]]]) -> None:
        super().__init__(config)
        self._venues = dict(venues)
        self._places = dict(places)
        # The closures API counts requests per "<integration id>/<business day>".
        self._request_places = {name: frozenset(f"{iid}/{day.isoformat()}" for iid, day in where)
                                for name, where in places.items()}

    def venue(self, integration_id: str) -> str:
        return self._venues.get(integration_id) or super().venue(integration_id)

    def strikes_day(self, name: str, integration_id: str, day: date) -> FaultRule | None:
        if (integration_id, day) not in self._places.get(name, frozenset()):
            return None
        return super().strikes_day(name, integration_id, day)

    def strikes_request(self, name: str, key: str, number: int) -> FaultRule | None:
        if key not in self._request_places.get(name, frozenset()):
            return None
        return super().strikes_request(name, key, number)


def run_demo(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ledger_file = directory / "ledger.db"
    for stale in (ledger_file, *directory.glob("ledger.db-*")):
        stale.unlink(missing_ok=True)
    os.environ[DATABASE_URL_ENV] = f"sqlite:///{ledger_file.resolve()}"
    engine = get_engine(os.environ[DATABASE_URL_ENV])
    upgrade(engine)
    now = datetime.now(UTC)
    # The week ends the day before yesterday in Paris, so that every day is over (and past its
    # deadline) in every demo client's timezone whatever the hour the demo runs.
    end = now.astimezone(ZoneInfo("Europe/Paris")).date() - timedelta(days=2)
    start = end - timedelta(days=DAYS - 1)
    story = Story.of_week(start)
    click.echo(f"Demo ledger: {ledger_file} — business days {start} to {end}\n")

    ids = _activate(engine, start, now)
    names = {iid: client_id for client_id, iid in ids.items()}
    token = secrets.token_urlsafe(24)
    toporder = DemoToporder(
        SimulatorConfig(seed=SEED, start=start, token=token, faults=(
            FaultRule("429", first=1, retry_after=RETRY_AFTER),
            FaultRule("unknown_method"), FaultRule("unbalanced"))),
        venues={ids[c.client_id]: c.venue for c in CLIENTS},
        places={"429": frozenset({_placed(ids, story.throttled)}),
                "unknown_method": frozenset({_placed(ids, story.unknown_method)}),
                "unbalanced": frozenset({_placed(ids, story.unbalanced)})},
    )
    with ExitStack() as servers:
        simulator = serve_in_thread(create_app(toporder))
        servers.callback(simulator.stop)
        inbound = serve_in_thread(receiver.create_app(engine))
        servers.callback(inbound.stop)
        os.environ[API_URL_ENV] = simulator.base_url
        os.environ[API_TOKEN_ENV] = token
        click.echo(f"\nSimulated Toporder (seed {SEED}) on {simulator.base_url}, push receiver "
                   f"on {inbound.base_url}")
        _set_webhooks(engine, toporder, simulator.base_url, ids, now)
        pushed = _push(engine, inbound.base_url, ids, start, story, now)
        click.echo("Pull clients: the flow fetches each day's closure from the simulator's API.\n")

        before = start - timedelta(days=1)
        refused = run_days([("petit-zinc", before)])[0]
        click.echo(f"A day before activation, asked anyway: {refused.state_name}: "
                   f"{refused.message}\n")

        client_days = [(c.client_id, start + timedelta(days=i))
                       for c in CLIENTS for i in range(DAYS)]
        with click.progressbar(length=len(client_days), label="Running client-days") as bar:
            results = run_days(client_days, progress=lambda _run: bar.update(1))
        _print_runs(results)
        retried = _report_retries(toporder, names, results)

        with session_scope(engine) as session:
            clients.set_mapping(session, "petit-zinc", "Lydia", "511600", now=now)
        click.echo("\nMapped 'Lydia' to 511600 for petit-zinc and reran its day: ", nl=False)
        rerun = run_days([story.unknown_method])[0]
        click.echo(f"{rerun.state_name}: {rerun.message}\n")

        saved = _save_closures(engine, directory / "closures", start, end)
        click.echo(f"{saved} closures received (pushed or pulled), saved in "
                   f"{directory / 'closures'}\n")
        _print_days(engine, directory, start, end)
        notified = _relay(engine, simulator.base_url, names)

    sources = {c.client_id: c.source for c in CLIENTS}
    posted = [r for r in results if r.outcome.done]
    summary: dict[str, Any] = {
        "client_days": len(results), "posted": len(posted),
        "flagged": sum(1 for r in results if r.exit_code == EXIT_FLAGGED),
        "missing": sum(1 for r in results if r.exit_code == EXIT_MISSING),
        "posted_by_source": {kind: sum(1 for r in posted if sources[r.client_id] == kind)
                             for kind in ("pull", "push")},
        "pushed": pushed,
        "pulled": len({(s.integration_id, s.business_date) for s in toporder.requests
                       if s.status == 200}),
        "pull_retries": retried,
        "flagged_days": [{"client": r.client_id, "business_date": r.business_date.isoformat(),
                          "state": r.state_name}
                         for r in results if r.exit_code in (EXIT_FLAGGED, EXIT_MISSING)],
        "notified": notified,
        "ledger": str(ledger_file),
    }
    click.echo("demo: " + json.dumps(summary))


def _activate(engine: Engine, start: date, now: datetime) -> dict[str, str]:
    """Activate the demo clients on ``start`` and set their sources; client -> integration id."""
    ids: dict[str, str] = {}
    for client in CLIENTS:
        with session_scope(engine) as session:
            record = clients.activate_client(
                session, client.client_id, name=client.name, activated_on=start,
                territory=client.territory.value, timezone=client.timezone, now=now)
            connections.set_source(session, client.client_id, client.source)
        ids[client.client_id] = record.integration_id
        click.echo(f"activated {client.client_id:<17} {client.territory.value:<9} "
                   f"{client.source:<4} integration id {record.integration_id[:12]}…")
    return ids


def _placed(ids: Mapping[str, str], where: tuple[str, date]) -> tuple[str, date]:
    client_id, day = where
    return ids[client_id], day


def _set_webhooks(engine: Engine, toporder: Simulation, base_url: str, ids: Mapping[str, str],
                  now: datetime) -> None:
    """Send every client's notifications to the simulator, which gets each client's secret."""
    for client_id, integration_id in ids.items():
        with session_scope(engine) as session:
            secret = notifications.set_webhook(session, client_id,
                                               f"{base_url}/webhooks/{integration_id}", now=now)
        if secret is not None:
            toporder.set_webhook_secret(integration_id, secret)
    click.echo(f"Webhooks: each client's notifications go to {base_url}/webhooks/<integration "
               "id>, signed with the secret the ledger issued to it")


def _push(engine: Engine, receiver_url: str, ids: Mapping[str, str], start: date, story: Story,
          now: datetime) -> int:
    """Toporder pushes the push clients' closures, signed; the number stored by the receiver."""
    stored = 0
    for client in CLIENTS:
        if client.source != "push":
            continue
        with session_scope(engine) as session:
            secret = connections.issue_push_secret(session, client.client_id).secret
        register = Simulation(SimulatorConfig(seed=SEED, start=start, venue=client.venue,
                                              territory=client.territory,
                                              timezone=client.timezone))
        days = [start + timedelta(days=i) for i in range(DAYS)]
        skipped = [d for d in days if (client.client_id, d) == story.unpushed]
        answers = push(register, receiver_url, ids[client.client_id], secret,
                       [d for d in days if d not in skipped])
        created = sum(1 for a in answers if a.status == 201)
        stored += created
        line = (f"Toporder pushed {len(answers)} closures of {client.client_id} to the receiver, "
                f"signed with its push secret: {created} stored (HTTP 201)")
        if skipped:
            line += f"; the closure of {skipped[0]} was never pushed"
        click.echo(line)
    return stored


def _print_runs(results: list[DayRun]) -> None:
    for run in results:
        if not run.outcome.done or run.outcome is Outcome.POSTED_WITH_WARNINGS:
            click.echo(f"  {run.client_id} {run.business_date}: {run.state_name}: "
                       f"{run.message[:140]}")


def _report_retries(toporder: Simulation, names: Mapping[str, str],
                    results: Sequence[DayRun]) -> list[dict[str, Any]]:
    """The pull client-days the API first failed, then served: what the pipeline survived."""
    statuses: dict[tuple[str, date], list[int]] = {}
    for served in toporder.requests:
        statuses.setdefault((served.integration_id, served.business_date), []).append(
            served.status)
    final = {(r.client_id, r.business_date): r.state_name for r in results}
    retried = []
    for (integration_id, day), codes in statuses.items():
        if codes[0] == 200 or 200 not in codes:
            continue
        client_id = names[integration_id]
        tries = codes[: codes.index(200) + 1]
        click.echo(f"\nPull fault survived: the simulator answered the first request for "
                   f"{client_id} {day} with HTTP {codes[0]} (Retry-After {RETRY_AFTER} s); the "
                   f"API client waited and asked again (HTTP {', '.join(map(str, tries))}): "
                   f"{final.get((client_id, day), 'not run')}")
        retried.append({"client": client_id, "business_date": day.isoformat(),
                        "statuses": tries})
    return retried


def _save_closures(engine: Engine, folder: Path, start: date, end: date) -> int:
    """Write the closures the ledger received, byte for byte, one file per client-day."""
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("*.json"):
        stale.unlink()
    saved = 0
    for client in CLIENTS:
        for offset in range((end - start).days + 1):
            day = start + timedelta(days=offset)
            with session_scope(engine) as session:
                stored = inbox.latest_closure(session, client.client_id, day)
            if stored is not None:
                (folder / f"{client.client_id}-{day}.json").write_bytes(stored.raw)
                saved += 1
    return saved


def _print_days(engine: Engine, directory: Path, start: date, end: date) -> None:
    for client in CLIENTS:
        with session_scope(engine) as session:
            days = ledger_days.day_statuses(session, client.client_id)
            stored = journal.entries_between(session, client.client_id, start, end)
        click.echo(f"{client.client_id} ({client.source}):")
        for day in days:
            detail = "; ".join(f.message for f in (*day.messages, *day.warnings))
            click.echo(f"  {day.business_date}  {day.state:<8} {day.error_category or '':<6} "
                       f"{day.piece_ref or '':<6} {detail[:90]}")
        out = directory / f"{client.client_id}-FEC.txt"
        lines = write_fec([FecEntry(s.number, s.entry, s.posted_at.date()) for s in stored], out)
        click.echo(f"  FEC: {out} ({len(stored)} entries, {lines} lines)\n")


def _relay(engine: Engine, base_url: str, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Run the outbox relay once, then list what the simulator's webhook received."""
    handlers = {topic: factory(engine) for topic, factory in outbox.HANDLER_FACTORIES.items()}
    try:
        report = outbox.relay(engine, handlers, now=lambda: datetime.now(UTC))
    finally:
        for handler in handlers.values():
            close = getattr(handler, "close", None)
            if callable(close):
                close()
    click.echo(f"Relay: {report.claimed} notification(s) due: {report.sent} sent, "
               f"{report.retried} to retry, {report.deferred} waiting, {report.dead} dead")
    answer = httpx.get(f"{base_url}/webhooks", timeout=10)
    answer.raise_for_status()
    received = []
    for webhook in answer.json()["webhooks"]:
        data = webhook["payload"]["data"]
        rules = sorted({e["rule"] for e in data["errors"]})
        received.append({"client": names.get(webhook["integration_id"], "?"),
                         "business_date": data["business_date"], "state": data["state"],
                         "category": data["category"], "rules": rules})
    received.sort(key=lambda n: (n["client"], n["business_date"]))
    click.echo(f"The simulated Toporder received {len(received)} signed notification(s):")
    for n in received:
        click.echo(f"  {n['client']:<17} {n['business_date']}  {n['state']:<8} "
                   f"category {n['category']:<4} rule {', '.join(n['rules'])}")
    return received


__all__ = ["CLIENTS", "DemoToporder", "run_demo"]
