"""Commands that connect clients to Toporder: source, push secret, receiver, simulator.

* ``clients set-source CLIENT push|pull``: where CLIENT's closures come from.
* ``clients push-secret CLIENT [--rotate]``: prints the key Toporder signs pushed closures
  with, issuing it the first time (this is how it is handed to Toporder).
* ``receiver``: serves ``POST /v1/closures`` (see :mod:`toporder_sync.receiver`).
* ``simulator``: a fake Toporder on 127.0.0.1 (see :mod:`toporder_sync.simulator.server`);
  ``simulator push`` sends its closures to a receiver, signed. Given a ledger (``--database``
  or TOPORDER_SYNC_DATABASE_URL), it plays Toporder for that ledger's fleet: each client's
  territory, timezone, webhook secret and push secret as the ledger holds them.

Exit codes as in :mod:`toporder_sync.cli`: 2 bad usage or configuration, 3 unknown client.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta
from typing import TYPE_CHECKING

import click

from toporder_sync import cli_support, signing
from toporder_sync.core.errors import RefusedError
from toporder_sync.core.model import Territory
from toporder_sync.ledger import connections
from toporder_sync.ledger.db import get_engine, session_scope, upgrade
from toporder_sync.outcome import EXIT_DONE, EXIT_FLAGGED
from toporder_sync.simulator import VENUES

if TYPE_CHECKING:
    from toporder_sync.simulator.server import Simulation


@click.command("set-source")
@click.argument("client")
@click.argument("source", type=click.Choice(connections.SOURCES))
def set_source(client: str, source: str) -> None:
    """Fetch CLIENT's closures from Toporder's API (pull) or take them as pushed (push).

    A pull client needs TOPORDER_API_URL and TOPORDER_API_TOKEN where its days run.
    """
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        got = connections.set_source(session, client, source)
    click.echo(f"{got.client_id}: closures come by {got.source}")


@click.command("push-secret")
@click.argument("client")
@click.option("--rotate", is_flag=True,
              help="Replace the secret now: closures signed with the old one are refused.")
def push_secret(client: str, rotate: bool) -> None:
    """Print the secret Toporder signs CLIENT's pushed closures with (issued if none).

    The secret is printed alone on the last line: give it to Toporder with the integration
    identifier, over a channel fit for a password.
    """
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        issued = connections.issue_push_secret(session, client, rotate=rotate)
    what = "new push secret" if issued.created else "push secret (unchanged)"
    click.echo(f"{client}: {what}; Toporder signs pushed closures with it:")
    click.echo(issued.secret)


@click.command("receiver")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
def receiver(host: str, port: int) -> None:
    """Receive the closures Toporder pushes (POST /v1/closures, signed), until interrupted."""
    from toporder_sync.receiver import serve

    with cli_support.errors():
        engine = cli_support.engine()
    serve(engine, host=host, port=port)


@click.group("simulator", invoke_without_command=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8090, show_default=True)
@click.option("--database", envvar="TOPORDER_SYNC_DATABASE_URL", default=None,
              metavar="URL",
              help="The fleet's ledger (default $TOPORDER_SYNC_DATABASE_URL): each integration "
                   "identifier is served as its client, with its territory, timezone and "
                   "secrets; identifiers it does not know are 404. Unset: any identifier, "
                   "with --territory and --webhook-secret.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Chooses which requests and days the faults strike.")
@click.option("--fault", "faults", multiple=True, metavar="NAME[:key=value,...]",
              help="Inject a fault, e.g. 429:rate=0.3,retry_after=2, 5xx:first=2, "
                   "timeout:delay=15, truncated, garbled, late:requests=3, missing:rate=0.1, "
                   "unbalanced, wrong_vat_rate, unknown_method, renamed_method, webhook_5xx. "
                   "Repeatable.")
@click.option("--start", callback=cli_support.day, default=None,
              help="The day the simulated registers started (closure n°1); default 2026-10-01.")
@click.option("--venue", type=click.Choice(VENUES), default=None,
              help="Every establishment's venue (default: drawn from the identifier).")
@click.option("--territory", type=click.Choice([t.value for t in Territory]), default=None,
              help="Without a ledger: every establishment's territory (default metropole).")
@click.option("--token", envvar="TOPORDER_API_TOKEN", default=None,
              help="Bearer token the API requires (default $TOPORDER_API_TOKEN; unset: any token).")
@click.option("--webhook-secret", default=None,
              help="Without a ledger: the secret error notifications are signed with "
                   "(default: a new one, printed).")
@click.pass_context
def simulator(ctx: click.Context, port: int, database: str | None, seed: int,
              faults: tuple[str, ...], start: date | None, venue: str | None,
              territory: str | None, token: str | None, webhook_secret: str | None) -> None:
    """A fake Toporder on 127.0.0.1: the closures API and the error-notification endpoint.

    Serves GET /v1/integrations/ID/closures/DAY (deterministic per identifier and day),
    POST /webhooks/ID and GET /webhooks, until interrupted. With a ledger, it plays Toporder
    for the ledger's clients: each one's closures carry its territory's VAT rates and its
    timezone, and its notifications are checked with the webhook secret `clients set-webhook`
    issued to it.
    """
    from toporder_sync.simulator.faults import FaultRule
    from toporder_sync.simulator.server import (
        DEFAULT_START,
        Simulation,
        SimulatorConfig,
        ledger_integrations,
    )

    if database is not None and (territory is not None or webhook_secret is not None):
        raise click.UsageError(
            "with a ledger (--database or TOPORDER_SYNC_DATABASE_URL) each client's territory "
            "and webhook secret are the ledger's: --territory and --webhook-secret are for a "
            "simulator without one")
    if database is None and webhook_secret is None and ctx.invoked_subcommand is None:
        webhook_secret = signing.new_secret()
        click.echo("webhook secret (sign error notifications with it):")
        click.echo(webhook_secret)
    with cli_support.errors():
        config = SimulatorConfig(
            seed=seed, faults=tuple(FaultRule.parse(f) for f in faults),
            start=start or DEFAULT_START, venue=venue,
            territory=Territory(territory or Territory.METROPOLE), token=token,
            webhook_secret=webhook_secret,
        )
        integrations, serves = None, f"any identifier ({config.territory})"
        if database is not None:
            ledger = get_engine(database)
            upgrade(ledger)
            integrations = ledger_integrations(ledger)
            serves = ("the clients of the ledger "
                      + ledger.url.render_as_string(hide_password=True))
    ctx.obj = Simulation(config, integrations=integrations)
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from toporder_sync.simulator.server import create_app

    click.echo(f"fake Toporder on http://127.0.0.1:{port} for {serves} (closures from "
               f"{config.start}, seed {seed}, {len(config.faults)} fault rule(s))")
    uvicorn.run(create_app(ctx.obj), host="127.0.0.1", port=port, log_level="info")


@simulator.command("push")
@click.argument("integration_id")
@click.option("--receiver", "receiver_url", default="http://127.0.0.1:8080", show_default=True,
              help="Base URL of the receiver.")
@click.option("--secret", envvar="TOPORDER_PUSH_SECRET", default=None,
              help="The client's push secret (`clients push-secret`); or $TOPORDER_PUSH_SECRET; "
                   "with a ledger, default: the one it issued to the client.")
@click.option("--from", "date_from", required=True,
              callback=cli_support.day, help="First day YYYY-MM-DD.")
@click.option("--to", "date_to", required=True,
              callback=cli_support.day, help="Last day YYYY-MM-DD.")
@click.pass_obj
def simulator_push(simulation: Simulation, integration_id: str, receiver_url: str,
                   secret: str | None, date_from: date, date_to: date) -> None:
    """Push INTEGRATION_ID's closures of --from to --to to a receiver, signed; exit 1 if one
    was not accepted."""
    from toporder_sync.simulator.server import push

    if date_to < date_from:
        raise click.UsageError(f"--to {date_to} is before --from {date_from}")
    with cli_support.errors():
        known = simulation.integration(integration_id)
        if known is None:
            raise RefusedError(f"no client of the ledger has the integration identifier "
                               f"{integration_id!r}")
    secret = secret or known.push_secret
    if secret is None:
        raise click.UsageError("no push secret: give --secret (or $TOPORDER_PUSH_SECRET), or "
                               "issue the client's with `toporder-sync clients push-secret`")
    days = [date_from + timedelta(days=n) for n in range((date_to - date_from).days + 1)]
    results = push(simulation, receiver_url, integration_id, secret, days)
    for result in results:
        click.echo(f"{result.business_date}: HTTP {result.status} {result.answer}")
    sys.exit(EXIT_DONE if all(r.status in (200, 201) for r in results) else EXIT_FLAGGED)
