"""``toporder-sync`` commands of the outbox: webhooks, notifications, the relay.

* ``clients set-webhook CLIENT URL`` sets where CLIENT's error notifications go and issues their
  signing secret, printed once, alone on the last line (hand it to Toporder; it is not shown
  again, ``--new-secret`` replaces it).
* ``notifications list`` shows the outbox; ``notifications retry`` puts messages back to
  pending, due now, with a fresh budget of attempts.
* ``relay`` is the relay service (docs/relay.md): it delivers each message as soon as it is
  due, looking at the outbox every ``--interval`` seconds at most, until SIGINT or SIGTERM;
  with PREFECT_API_URL set, each round that has due messages is a ``relay-outbox`` flow run.
  ``--once`` delivers what is due now, then exits.

Exit codes: 0 done (for ``relay``: whatever became of each delivery, see the outbox), 1 the
ledger was unreachable for a moment (``relay --once``), 2 bad usage or configuration (a URL
that is not https), 3 unknown client or event id (nothing changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, get_args

import click
from sqlalchemy import Engine

from toporder_sync import cli_support, notifications, outbox, runner
from toporder_sync.core.errors import RefusedError, TransientError
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import OutboxStatus
from toporder_sync.pennylane import sink  # noqa: F401 (registers its outbox handler)

# The ledger could not be reached for a moment (``relay --once``): try again later.
EXIT_FAILED = 1


@click.command("set-webhook")
@click.argument("client")
@click.argument("url")
@click.option("--new-secret", is_flag=True,
              help="Issue a new signing secret even if CLIENT has one (the old one stops "
                   "working at once).")
def set_webhook(client: str, url: str, new_secret: bool) -> None:
    """Send CLIENT's error notifications to URL (https); prints the signing secret once.

    The secret is issued the first time (or with --new-secret) and printed alone on the last
    line: give it to Toporder, which checks every notification's webhook-signature with it.
    Notifications waiting for a URL go out at the next relay.
    """
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        issued = notifications.set_webhook(session, client, url, now=cli_support.now(),
                                           new_secret=new_secret)
    if issued is None:
        click.echo(f"{client}: notifications go to {url}; signing secret unchanged "
                   "(issued earlier, not shown again; --new-secret replaces it)")
        return
    click.echo(f"{client}: notifications go to {url}; signing secret (give it to Toporder, "
               "it is not shown again):")
    click.echo(issued)


@click.group("notifications")
def notifications_group() -> None:
    """The outbox: notifications to Toporder and other messages waiting for delivery."""


@notifications_group.command("list")
@click.option("--client", "client_id", default=None, help="Only this client's messages.")
@click.option("--status", type=click.Choice(get_args(OutboxStatus)), default=None,
              help="Only messages in this status.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def notifications_list(client_id: str | None, status: OutboxStatus | None,
                       as_json: bool) -> None:
    """Messages, newest first: event id, topic, client, day, status, attempts, last error."""
    with session_scope(cli_support.engine()) as session:
        entries = outbox.list_messages(session, client_id=client_id, status=status)
    rows = [_row(entry) for entry in entries]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("(none)")
        return
    columns = ["event_id", "topic", "client_id", "business_date", "status", "attempts",
               "next_attempt_at", "last_error"]
    table = [{**row, "business_date": row["business_date"] or "",
              "last_error": (row["last_error"] or "")[:80]} for row in rows]
    widths = {c: max(len(c), *(len(str(r[c])) for r in table)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in table:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip())


def _row(entry: outbox.OutboxEntry) -> dict[str, Any]:
    message = entry.message
    return {
        "event_id": message.event_id, "topic": message.topic, "client_id": message.client_id,
        "business_date": None if message.business_date is None
        else message.business_date.isoformat(),
        "status": entry.status, "attempts": message.attempts,
        "next_attempt_at": entry.next_attempt_at.isoformat(timespec="seconds"),
        "last_error": entry.last_error,
        "created_at": entry.created_at.isoformat(timespec="seconds"),
        "sent_at": None if entry.sent_at is None else entry.sent_at.isoformat(timespec="seconds"),
        "payload": message.payload,
    }


@notifications_group.command("retry")
@click.argument("event_ids", nargs=-1)
@click.option("--dead", is_flag=True, help="Every dead message.")
def notifications_retry(event_ids: Sequence[str], dead: bool) -> None:
    """Put EVENT_IDS (or every --dead message) back to pending, due now.

    Each gets a fresh budget of attempts; the next relay delivers it. An unknown event id
    refuses the whole command, changing nothing.
    """
    if not event_ids and not dead:
        raise click.UsageError("give EVENT_ID… or --dead")
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        moved = outbox.retry(session, event_ids=tuple(event_ids), dead=dead, now=cli_support.now())
        unknown = sorted(set(event_ids) - set(moved))
        if unknown:
            raise RefusedError(f"unknown event id(s): {', '.join(unknown)}; nothing changed")
    for event in moved:
        click.echo(f"{event}: pending")
    click.echo(f"{len(moved)} message(s) to deliver again")


@click.command("relay")
@click.option("--once", is_flag=True, help="Deliver the due messages once, then exit.")
@click.option("--interval", type=click.FloatRange(min=1), default=5.0, show_default=True,
              help="Seconds between two looks at the outbox at most (without --once): a new "
                   "message waits that long at most.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Messages delivered per round at most.")
def relay(once: bool, interval: float, limit: int) -> None:
    """Deliver the outbox's due messages (notifications to Toporder…), at least once.

    Without --once, the relay service: it runs until SIGINT or SIGTERM, and idle it only asks
    the ledger when the next message is due. With PREFECT_API_URL set, each round that has
    due messages is a `relay-outbox` flow run on that server. Failed deliveries are retried
    with backoff, then dead-lettered (`notifications list --status dead`, `notifications retry
    --dead`). Several relays may run at once on PostgreSQL; on SQLite run one.
    """
    engine = cli_support.engine()
    if once:
        try:
            report = outbox.relay(engine, _handlers(engine), now=cli_support.now, limit=limit)
        except TransientError as exc:
            # The ledger is busy or unreachable for a moment: the messages wait in it.
            _say_error(exc)
            sys.exit(EXIT_FAILED)
        _say(report)
        return
    on_prefect = bool(os.environ.get("PREFECT_API_URL"))
    # A Ctrl-C before the service's own signal handlers are in place (while Prefect is
    # imported) stops it just as well.
    with contextlib.suppress(KeyboardInterrupt):
        deliver = _prefect_rounds(limit) if on_prefect else _direct_rounds(engine, limit)
        click.echo(f"relay: each message goes out when due; the outbox is looked at every "
                   f"{interval:g} s at most"
                   f"{', each round a relay-outbox flow run' if on_prefect else ''}. "
                   "SIGINT or SIGTERM stops it.", err=True)
        asyncio.run(_serve(engine, deliver, interval))
    click.echo("relay stopped", err=True)


def _handlers(engine: Engine) -> dict[str, outbox.Handler]:
    return {topic: factory(engine) for topic, factory in outbox.HANDLER_FACTORIES.items()}


Round = Callable[[], Awaitable[outbox.RelayReport]]


def _direct_rounds(engine: Engine, limit: int) -> Round:
    def deliver() -> outbox.RelayReport:
        # Handlers made afresh for each round, as the relay-outbox flow makes them for each of
        # its runs: a Pennylane token (a Secret block) changed since the last round is read
        # again, and nothing is held between rounds.
        return outbox.relay(engine, _handlers(engine), now=cli_support.now, limit=limit)

    return functools.partial(asyncio.to_thread, deliver)


def _prefect_rounds(limit: int) -> Round:
    runner.quiet_prefect_defaults()
    # Imported only now: Prefect (seconds of imports) only for a relay that runs flows.
    from toporder_sync.flows.relay import relay_round

    return functools.partial(relay_round, limit)


async def _serve(engine: Engine, deliver: Round, interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async def deliver_and_say() -> outbox.RelayReport:
        report = await deliver()
        if report.claimed:
            _say(report)
        return report

    await outbox.relay_loop(engine, tuple(outbox.HANDLER_FACTORIES), deliver_and_say,
                            stop=stop, interval=interval, now=cli_support.now,
                            on_error=_say_error)


def _say(report: outbox.RelayReport) -> None:
    click.echo(f"{_stamp()}: {report.claimed} due: {report.sent} sent, {report.retried} to "
               f"retry, {report.deferred} waiting for a webhook, {report.dead} dead")


def _say_error(exc: TransientError) -> None:
    click.echo(f"{_stamp()}: {exc}", err=True)


def _stamp() -> str:
    return cli_support.now().isoformat(timespec="seconds")
