"""``toporder-sync pennylane``: push each client's posted entries to its Pennylane company.

* ``configure CLIENT --token-env VAR | --token-block NAME [--journal VT]``: push CLIENT's
  entries from now on, with the API token found in that environment variable or Prefect Secret
  block (the token itself is never stored, printed nor asked for on the command line). The
  token must be there already: a missing one fails here, naming the variable or block.
* ``push CLIENT --from D --to D``: queue CLIENT's entries of those days not yet queued, send
  again those given up on (after a fix on the Pennylane side), then send them all now, in
  ledger order, waiting as Pennylane asks (``pennylane.push``); other clients' entries are
  left to the relay.
* ``status CLIENT [--from D] [--to D] [--json]``: day by day, each entry in ledger order (a
  corrected day: the original, its reversal, the replacement), pushed or not, its id in
  Pennylane, what it waits for and the last error.

Exit codes: 0 done (``push``: every entry of the range is in Pennylane); 1 some entry of the
range is not pushed yet (see ``status``); 2 bad usage or configuration (token missing, client
not set up); 3 unknown client.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Any

import click

from toporder_sync import cli_support, outbox
from toporder_sync.core.errors import ConfigurationError
from toporder_sync.ledger import clients
from toporder_sync.ledger.db import session_scope
from toporder_sync.outcome import EXIT_FLAGGED
from toporder_sync.pennylane import TOPIC, store
from toporder_sync.pennylane.store import PushStatus
from toporder_sync.pennylane.tokens import TokenRef, load_token


@click.group("pennylane")
def pennylane() -> None:
    """Push posted entries and reversals to each client's Pennylane company."""


@pennylane.command("configure")
@click.argument("client")
@click.option("--token-env", metavar="VAR",
              help="Environment variable holding CLIENT's Pennylane API token.")
@click.option("--token-block", metavar="NAME",
              help="Prefect Secret block holding CLIENT's Pennylane API token.")
@click.option("--journal", default=store.DEFAULT_JOURNAL, show_default=True,
              help="Code of the sales journal in CLIENT's Pennylane company.")
def configure(client: str, token_env: str | None, token_block: str | None,
              journal: str) -> None:
    """Push CLIENT's entries to Pennylane, with the token named by --token-env or --token-block.

    Only the token's name is stored. Entries posted from now on are pushed; older ones with
    `toporder-sync pennylane push CLIENT --from D --to D`.
    """
    if (token_env is None) == (token_block is None):
        raise click.UsageError("give exactly one of --token-env VAR or --token-block NAME")
    with cli_support.errors():
        ref = (TokenRef("env", token_env) if token_env is not None
               else TokenRef("block", str(token_block)))
        load_token(ref)  # fail now, naming the variable or block, not at the first push
        now = cli_support.now()
        with session_scope(cli_support.engine()) as session:
            settings = store.configure(session, client, token=ref, journal_code=journal,
                                       now=now)
            # Pushes that waited for this set-up go out at the next relay.
            outbox.wake(session, client, topic=TOPIC, now=now)
    click.echo(f"{client}: entries pushed to Pennylane, journal {settings.journal_code}, "
               f"API token from {ref.describe()}")


@pennylane.command("push")
@click.argument("client")
@click.option("--from", "date_from", required=True, callback=cli_support.day,
              help="First business day YYYY-MM-DD.")
@click.option("--to", "date_to", required=True, callback=cli_support.day,
              help="Last business day YYYY-MM-DD.")
def push(client: str, date_from: date, date_to: date) -> None:
    """Send CLIENT's entries of those days to Pennylane now, in ledger order.

    Entries not yet queued are queued, those given up on are sent again (after a fix on the
    Pennylane side), those waiting for a retry go at once. Exits 0 only when every entry of the
    days is in Pennylane.
    """
    if date_to < date_from:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    from toporder_sync.pennylane.push import push_range
    from toporder_sync.pennylane.sink import PennylaneHandler

    engine = cli_support.engine()
    with cli_support.errors():
        with session_scope(engine) as session:
            clients.get_client(session, client)  # an unknown client is refused
            settings = store.get_settings(session, client)
        if settings is None or not settings.enabled:
            raise ConfigurationError(f"{client} is not set up for Pennylane: "
                                     "toporder-sync pennylane configure CLIENT first")
        load_token(settings.token)
        handler = PennylaneHandler(engine)
        try:
            report = push_range(engine, client, date_from, date_to, handler,
                                now=cli_support.now)
        finally:
            handler.close()
    click.echo(f"{client}: {report.queued} entries queued, {report.sent_again} given up on sent "
               f"again, {report.passes} passes")
    for item in report.statuses:
        click.echo(_line(item))
    missing = report.missing
    click.echo(f"{client}: {len(report.statuses) - len(missing)} of {len(report.statuses)} "
               f"entries of {date_from}..{date_to} in Pennylane")
    if report.wait is not None and missing:
        click.echo(f"{client}: Pennylane asked to wait {report.wait:g} s: the relay sends the "
                   "rest then, or push again later")
    if missing:
        sys.exit(EXIT_FLAGGED)


@pennylane.command("status")
@click.argument("client")
@click.option("--from", "date_from",
              callback=cli_support.day, help="First business day YYYY-MM-DD.")
@click.option("--to", "date_to", callback=cli_support.day, help="Last business day YYYY-MM-DD.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry, in a list.")
def status(client: str, date_from: date | None, date_to: date | None, as_json: bool) -> None:
    """Each entry of CLIENT: number, date, piece, pushed or not, Pennylane id, last error."""
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        statuses = store.push_statuses(session, client, date_from=date_from, date_to=date_to)
    if as_json:
        click.echo(json.dumps([_json(s) for s in statuses], ensure_ascii=False, indent=2))
        return
    if not statuses:
        click.echo("(no entries)")
    for item in statuses:
        click.echo(_line(item))


def _line(item: PushStatus) -> str:
    """``2026-11-27 VT 2/3 n°2 reversal of n°1 Z412-VT2: pushed, Pennylane id 1002``."""
    what = f"n°{item.number} {item.kind}"
    if item.reverses is not None:
        what += f" of n°{item.reverses}"
    if item.replaces is not None:
        what += f" replacing n°{item.replaces}"
    text = (f"{item.business_date} {item.journal} {item.position}/{item.day_entries} {what} "
            f"{item.piece_number}: {item.state}")
    if item.waits_for is not None:
        text += f" for n°{item.waits_for}"
    if item.remote_id is not None:
        text += f", Pennylane id {item.remote_id}"
    if item.last_error and item.waits_for is None:
        text += f"; last error: {item.last_error}"
    return text


def _json(item: PushStatus) -> dict[str, Any]:
    return {
        "entry_number": item.number,
        "kind": item.kind,
        "business_date": item.business_date.isoformat(),
        "journal": item.journal,
        "position": item.position,
        "day_entries": item.day_entries,
        "reverses_entry_number": item.reverses,
        "replaces_entry_number": item.replaces,
        "waits_for_entry_number": item.waits_for,
        "piece_number": item.piece_number,
        "pushed": item.state == "pushed",
        "state": item.state,
        "remote_id": item.remote_id,
        "pushed_at": None if item.pushed_at is None else item.pushed_at.isoformat(),
        "attempts": item.attempts,
        "last_error": item.last_error,
    }
