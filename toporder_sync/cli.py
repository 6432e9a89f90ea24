"""The ``toporder-sync`` command line: clients, mappings, closures, runs, status, FEC, demo.

Exit codes (``toporder_sync.outcome``, docs/cli.md): 0 done (for ``run``: the day is posted or
had nothing to post); 1 the day is flagged (POS or ledger-side error) or a closure was refused;
2 bad usage or configuration; 3 the day was refused (before activation, not over yet); 4 no
closure was received for the day; 5 the closure is still awaited; 6 another run holds the day;
7 an internal error; 8 unavailable after retries. ``rerun`` of several days exits with the most
pressing of them (``_worst_exit_code``). No command prints a traceback unless ``--debug``.
Prefect is imported only by the commands that run flows, so that the others answer at once.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from toporder_sync import cli_support, service
from toporder_sync import reclassify as reclassification
from toporder_sync.cli_automations import automations_group
from toporder_sync.cli_connect import push_secret, receiver, set_source, simulator
from toporder_sync.cli_days import days
from toporder_sync.cli_notifications import notifications_group, relay, set_webhook
from toporder_sync.cli_pennylane import pennylane
from toporder_sync.cli_schedules import schedules
from toporder_sync.core import accounts
from toporder_sync.core.model import Territory
from toporder_sync.ledger import clients as ledger_clients
from toporder_sync.ledger import days as ledger_days
from toporder_sync.ledger import journal
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import ERROR_CATEGORIES
from toporder_sync.onboarding import clients_csv, registry
from toporder_sync.outcome import (
    EXIT_ALREADY_RUNNING,
    EXIT_FLAGGED,
    EXIT_INTERNAL,
    EXIT_MISSING,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    EXIT_WAITING,
)
from toporder_sync.runner import DEBUG_ENV, run_days

F = TypeVar("F", bound=Callable[..., Any])


@click.group(cls=cli_support.GuardedGroup,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toporder-sync")
@click.option("--debug", is_flag=True,
              help="Show the traceback of an internal error (or TOPORDER_SYNC_DEBUG=1).")
def main(debug: bool) -> None:
    """Post each client's daily Toporder closure as one balanced sales-journal entry.

    The ledger is the SQLAlchemy URL in TOPORDER_SYNC_DATABASE_URL (default: the SQLite file
    ./toporder-sync.db). Exit codes: 0 done; 1 flagged (or a closure refused); 2 bad usage or
    configuration; 3 refused; 4 missing closure; 5 waiting for the closure; 6 already running;
    7 internal error; 8 unavailable, try again later (docs/cli.md).
    """
    if debug:
        os.environ[DEBUG_ENV] = "1"


# --- clients ---------------------------------------------------------------------------------

@main.group()
def clients() -> None:
    """Activate, import and list clients."""


@clients.command("activate")
@click.argument("client")
@click.option("--name", required=True, help="The client's name (shop or company).")
@click.option("--on", "activated_on", required=True, callback=cli_support.day,
              help="Activation date YYYY-MM-DD: no day before it is ever posted.")
@click.option("--territory", type=click.Choice([t.value for t in Territory]),
              default=Territory.METROPOLE.value, show_default=True,
              help="Fixes the VAT rates in force.")
@click.option("--timezone", default=ledger_clients.DEFAULT_TIMEZONE, show_default=True,
              help="IANA timezone.")
@click.option("--run-hour", type=click.IntRange(0, 23), default=ledger_clients.DEFAULT_RUN_HOUR,
              show_default=True,
              help="Local hour of the daily run (it processes the previous business day).")
@click.option("--deadline-hour", type=click.IntRange(0, 23),
              default=ledger_clients.DEFAULT_DEADLINE_HOUR, show_default=True,
              help="Local hour, the day after the business day, until which a missing closure "
                   "is waited for before the day is flagged missing.")
def clients_activate(client: str, name: str, activated_on: date, territory: str,
                     timezone: str, run_hour: int, deadline_hour: int) -> None:
    """Activate CLIENT; prints its integration identifier alone on the last line.

    Give that identifier to Toporder: every closure it sends carries it.
    """
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        record = ledger_clients.activate_client(
            session, client, name=name, activated_on=activated_on, territory=territory,
            timezone=timezone, run_hour=run_hour, deadline_hour=deadline_hour,
            now=cli_support.now())
    click.echo(f"activated {record.client_id} ({record.name}) from {record.activated_on}, "
               f"{record.territory}, {record.timezone}, daily run at {record.run_hour:02d}:00, "
               f"closure waited for until {record.deadline_hour:02d}:00; integration identifier:")
    click.echo(record.integration_id)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def clients_list(as_json: bool) -> None:
    """List clients: activation date, territory, source (push or pull), webhook URL (never a
    secret), timezone, run and deadline hours, active."""
    with session_scope(cli_support.engine()) as session:
        records = registry.list_clients(session)
    rows = [{"client": r.client_id, "name": r.name, "activated_on": r.activated_on.isoformat(),
             "territory": r.territory, "source": r.source, "webhook_url": r.webhook_url,
             "timezone": r.timezone, "run_hour": r.run_hour, "deadline_hour": r.deadline_hour,
             "active": r.active}
            for r in records]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    _table([{**row, "active": "yes" if row["active"] else "no",
             "webhook_url": row["webhook_url"] or ""} for row in rows],
           ["client", "name", "activated_on", "territory", "source", "webhook_url", "timezone",
            "run_hour", "deadline_hour", "active"])


@clients.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def clients_import(file: Path) -> None:
    """Create or update the clients of a CSV FILE, all in one transaction.

    Columns (header row required): id, name, activation_date, and optionally territory,
    timezone, run_hour, deadline_hour, source, webhook_url (empty or absent: the defaults of
    `clients activate`, push, no webhook). A bad file is refused whole, nothing written: every
    problem on stderr as FILE:LINE: column: rule, exit 2. Prints as CSV
    id,integration_id,push_secret,webhook_secret each new client, and each existing one given
    a secret now (hand them to Toporder: not shown again); then a count on stderr. Importing
    the same file again changes nothing and prints no secret. See docs/onboarding.md.
    """
    parsed = clients_csv.parse(file.read_bytes())
    if parsed.problems and not parsed.clients:
        _refuse_clients_file(file, parsed.problems)  # nothing the ledger could add to
    with cli_support.errors():
        try:
            with session_scope(cli_support.engine()) as session:
                result = registry.import_clients(session, parsed, now=cli_support.now())
        except registry.ImportRefused as refused:
            _refuse_clients_file(file, refused.problems)
    if result.issued:
        issued = io.StringIO()
        out = csv.writer(issued, lineterminator="\n")
        out.writerow(["id", "integration_id", "push_secret", "webhook_secret"])
        out.writerows([i.client_id, i.integration_id, i.push_secret or "", i.webhook_secret or ""]
                      for i in result.issued)
        click.echo(issued.getvalue(), nl=False)
    click.echo(f"{result.created} created, {result.updated} updated, "
               f"{result.unchanged} unchanged", err=True)



def _refuse_clients_file(file: Path, problems: Sequence[clients_csv.Problem]) -> NoReturn:
    for problem in problems:
        click.echo(problem.describe(str(file)), err=True)
    click.echo(f"{file}: refused, nothing written ({len(problems)} problem(s))", err=True)
    sys.exit(EXIT_USAGE)


@clients.command("set-schedule")
@click.argument("client")
@click.option("--timezone", default=None, help="IANA timezone.")
@click.option("--run-hour", type=click.IntRange(0, 23), default=None,
              help="Local hour of the daily run.")
@click.option("--deadline-hour", type=click.IntRange(0, 23), default=None,
              help="Local hour, the day after the business day, until which a missing closure "
                   "is waited for.")
def clients_set_schedule(client: str, timezone: str | None, run_hour: int | None,
                         deadline_hour: int | None) -> None:
    """Change when CLIENT's days run; then `schedules sync` moves its schedule."""
    if timezone is None and run_hour is None and deadline_hour is None:
        raise click.UsageError("give at least one of --timezone, --run-hour, --deadline-hour")
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        record = ledger_clients.set_schedule(session, client, timezone=timezone, run_hour=run_hour,
                                             deadline_hour=deadline_hour)
    click.echo(f"{record.client_id}: daily run at {record.run_hour:02d}:00 {record.timezone}, "
               f"closure waited for until {record.deadline_hour:02d}:00")


@clients.command("deactivate")
@click.argument("client")
def clients_deactivate(client: str) -> None:
    """Stop scheduling CLIENT's days (its ledger is kept; `clients reactivate` undoes it)."""
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        ledger_clients.deactivate_client(session, client)
    click.echo(f"{client}: deactivated")


@clients.command("reactivate")
@click.argument("client")
def clients_reactivate(client: str) -> None:
    """Schedule CLIENT's days again after `clients deactivate`."""
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        ledger_clients.reactivate_client(session, client)
    click.echo(f"{client}: active")


@clients.command("set-account")
@click.argument("client")
@click.argument("key")
@click.argument("account")
@click.option("--reclassify", is_flag=True,
              help="For other_methods: then reverse and repost, oldest first, every posted "
                   "day whose entry carries a method no rule recognises on another account.")
def clients_set_account(client: str, key: str, account: str, reclassify: bool) -> None:
    """Override one default account of CLIENT (KEY: revenue:10, vat:20, tips, gift_cards,
    other_methods, cash_shortage, cash_surplus…).

    For other_methods (471000 by default: the methods no rule recognises), then says how many
    posted days carry such a method on another account; --reclassify moves them, as
    `mapping set --reclassify` does.
    """
    if reclassify and key != accounts.OTHER_METHODS:
        raise click.UsageError(f"--reclassify applies to {accounts.OTHER_METHODS} only, the "
                               f"account of the payment methods no rule recognises; {key} "
                               "moves no payment method")
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        ledger_clients.set_account_override(session, client, key, account)
    click.echo(f"{client}: {key} → {account}")
    if key == accounts.OTHER_METHODS:
        _after_a_move(client, reclassification.unrecognised_moves,
                      "a method no rule recognises",
                      ["clients", "set-account", client, key, account], reclassify=reclassify)


# --- mappings and methods --------------------------------------------------------------------

@main.group()
def mapping() -> None:
    """Map Toporder payment methods to accounts, by their exact name."""


@mapping.command("set")
@click.argument("client")
@click.argument("method")
@click.argument("account")
@click.option("--reclassify", is_flag=True,
              help="Then reverse and repost, oldest first, every posted day whose entry "
                   "carries METHOD on another account (PCG art. 420-5).")
def mapping_set(client: str, method: str, account: str, reclassify: bool) -> None:
    """Send METHOD (its exact Toporder name, byte for byte) of CLIENT to ACCOUNT.

    Then says how many posted days carry METHOD on another account (471000, or the account it
    went to before). With --reclassify, runs each of them again through the flow, oldest first:
    a reversal and a new entry per day (an entry posted is never edited, PCG art. 420-5), one
    line per day and a summary. A day before the activation, a day whose latest closure is
    flagged or not yet run is not touched, and said so. Exit 0 only if every such day is on
    its account; else the first of 7, 8, 3, 1, 4, 6, 5 (as `rerun`). Running it again finishes
    what a crash left, and changes nothing once done.
    """
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        ledger_clients.set_mapping(session, client, method, account, now=cli_support.now())
    click.echo(f"{client}: {method!r} → {account}")
    _after_a_move(client, reclassification.method_moves(method), repr(method),
                  ["mapping", "set", client, method, account], reclassify=reclassify)


def _after_a_move(client: str, concern: reclassification.Concern, what: str,
                  command: list[str], *, reclassify: bool) -> None:
    """After an account change: how many posted days carry ``what`` on another account, and
    with ``reclassify`` each of them run again through the flow (``reclassify.rerun``)."""
    engine = cli_support.engine()
    with cli_support.errors():
        found = reclassification.survey(engine, client, concern)
    if not reclassify:
        if found.concerned:
            click.echo(f"{client}: {found.concerned} posted day(s) carry {what} on another "
                       "account; to reverse and repost them on today's accounts: "
                       + shlex.join(["toporder-sync", *command, "--reclassify"]))
        else:
            click.echo(f"{client}: no posted day carries {what} on another account")
        if found.unexplained:
            click.echo(f"{client}: {found.unexplained} posted day(s) not counted: their entry "
                       "is not explained by their closure under today's settings (another "
                       "setting changed since); `rerun` posts them with today's")
        return
    click.echo(f"{client}: {len(found.due)} posted day(s) to reclassify, oldest first, each "
               f"by a reversal and a new entry (PCG art. 420-5); "
               f"{reclassification.NO_LOCK_DATE}")
    codes = []
    for left in found.untouched:
        click.echo(f"{client} {left.business_date}: not touched: {left.reason}"
                   + (f" ({reclassification.describe(left.moves)})" if left.moves else ""))
        codes.append(left.exit_code)
    results: list[reclassification.Reclassified] = []
    if found.due:
        with click.progressbar(length=len(found.due), label=f"{client}: {len(found.due)} day(s)",
                               file=sys.stderr) as bar:
            results = reclassification.rerun(engine, found, progress=lambda _done: bar.update(1))
    for done in results:
        if done.result == "reclassified":
            detail = (f"n°{done.day.entry_number} reversed, n°{done.entry_number} posted: "
                      + reclassification.describe(done.day.moves))
        elif done.result == "unchanged":
            detail = f"n°{done.day.entry_number} kept as it is"
        else:
            detail = done.run.state_name + (f": {done.run.message}" if done.run.message else "")
        click.echo(f"{client} {done.day.business_date}: {done.result}: {detail}")
        codes.append(done.run.exit_code)
    counts = Counter(done.result for done in results)
    click.echo(f"{client}: {counts['reclassified']} reclassified, {counts['unchanged']} "
               f"unchanged, {counts['failed']} failed, {len(found.untouched)} not touched")
    sys.exit(_worst_exit_code(codes))


@mapping.command("list")
@click.argument("client")
def mapping_list(client: str) -> None:
    """List CLIENT's explicit mappings."""
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        ledger_clients.get_client(session, client)
        mappings = ledger_clients.list_mappings(session, client)
    _table([{"method": m, "account": a} for m, a in mappings.items()], ["method", "account"])


@main.command("methods")
@click.argument("client")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def methods(client: str, as_json: bool) -> None:
    """Payment methods seen in CLIENT's closures: first and last day, where each goes, and
    on how many posted days the live entry carries it on the other-methods account (471000
    unless overridden): the days `mapping set … --reclassify` would move."""
    engine = cli_support.engine()
    with cli_support.errors():
        with session_scope(engine) as session:
            ledger_clients.get_client(session, client)
            seen = ledger_days.list_methods(session, client)
        on_other = reclassification.on_other_methods(engine, client)
    rows = [{"name": m.name, "first_seen": m.first_seen.isoformat(),
             "last_seen": m.last_seen.isoformat(), "account": m.account, "rule": m.rule,
             "days_on_other_methods": on_other.days[m.name]}
            for m in seen]
    if on_other.unexplained:
        click.echo(f"{client}: {on_other.unexplained} posted day(s) not counted: their entry "
                   "is not explained by their closure under today's settings", err=True)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    _table(rows, ["name", "first_seen", "last_seen", "account", "rule",
                  "days_on_other_methods"])


# --- closures and runs -----------------------------------------------------------------------

@main.command("receive")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
def receive(files: tuple[Path, ...]) -> None:
    """Store closure FILES in their clients' inboxes, as Toporder's delivery would.

    Refused, with nothing stored: not strict UTF-8 JSON, an unknown integration identifier, a
    day before the client's activation. The rest is checked when the day runs.
    """
    engine = cli_support.engine()
    with cli_support.errors():
        for path in files:
            got = service.receive(engine, path.read_bytes(), str(path), now=cli_support.now())
            what = "stored" if got.created else "already received (identical), not stored again"
            click.echo(f"{path}: {got.client_id} {got.business_date}: {what} "
                       f"(closure #{got.closure_id}, sha256 {got.sha256[:12]}…)")


@main.command("run")
@click.argument("client")
@click.option("--date", "business_date", required=True, callback=cli_support.day,
              help="The business day YYYY-MM-DD.")
def run(client: str, business_date: date) -> None:
    """Run the daily flow for CLIENT's BUSINESS_DATE; exit 0 only when the day is posted."""
    result = run_days([(client, business_date)])[0]
    click.echo(f"{client} {business_date}: {result.state_name}: {result.message}",
               err=result.exit_code != 0)
    sys.exit(result.exit_code)


@main.command("rerun")
@click.argument("client")
@click.option("--from", "date_from", required=True,
              callback=cli_support.day, help="First day YYYY-MM-DD.")
@click.option("--to", "date_to", required=True,
              callback=cli_support.day, help="Last day YYYY-MM-DD.")
def rerun(client: str, date_from: date, date_to: date) -> None:
    """Run CLIENT's days from --from to --to, one flow run per day, oldest first.

    Each day is idempotent (an unchanged day stays as it is) and days before the activation are
    refused by the flow. Exit 0 when every day is posted (or had nothing to post); otherwise the
    first of: 7 internal error, 8 unavailable, 3 refused, 1 flagged, 4 missing, 6 already
    running, 5 waiting.
    """
    if date_to < date_from:
        raise click.UsageError(f"--to {date_to} is before --from {date_from}")
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        ledger_clients.get_client(session, client)
    days = [(client, date_from + timedelta(days=n))
            for n in range((date_to - date_from).days + 1)]
    with click.progressbar(length=len(days), label=f"{client}: {len(days)} day(s)",
                           file=sys.stderr) as bar:
        results = run_days(days, progress=lambda _done: bar.update(1))
    for result in results:
        click.echo(f"{result.client_id} {result.business_date}: {result.state_name}"
                   + (f": {result.message}" if result.message else ""))
    sys.exit(_worst_exit_code([result.exit_code for result in results]))


# The exit code of a batch of days, first found first: the data team's errors, then a request
# partly wrong (refused days), then what Toporder or the accountant must do, then what waits.
_WORST_FIRST = (EXIT_INTERNAL, EXIT_UNAVAILABLE, EXIT_REFUSED, EXIT_FLAGGED, EXIT_MISSING,
                EXIT_ALREADY_RUNNING, EXIT_WAITING)


def _worst_exit_code(codes: list[int]) -> int:
    """The exit code of a batch of days (``_WORST_FIRST``); 0 when every day is done."""
    for code in _WORST_FIRST:
        if code in codes:
            return code
    return max(codes, default=0)


@main.command("status")
@click.argument("client", required=False)
@click.option("--date", "business_date", callback=cli_support.day,
              help="A business day YYYY-MM-DD: every client's state that day (instead of CLIENT).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(client: str | None, business_date: date | None, as_json: bool) -> None:
    """One line per business day of CLIENT, or one line per client for the day --date.

    Give CLIENT or --date, not both: state, category, messages, warnings.
    """
    usage = "give either CLIENT or --date YYYY-MM-DD (exactly one of them)"
    if client is not None and business_date is not None:
        raise click.UsageError(usage)
    if business_date is not None:
        _fleet_status(business_date, as_json)
        return
    if client is None:
        raise click.UsageError(usage)
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        ledger_clients.get_client(session, client)
        days = ledger_days.day_statuses(session, client)
    rows = [{
        "business_date": d.business_date.isoformat(), "state": d.state,
        "error_category": d.error_category,
        "messages": [m.as_dict() for m in d.messages],
        "warnings": [w.as_dict() for w in d.warnings],
        "entry_number": d.entry_number, "piece_ref": d.piece_ref,
    } for d in days]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    _table([{"business_date": d.business_date, "state": d.state,
             "error_category": d.error_category or "",
             "entry": f"n°{d.entry_number} {d.piece_ref}" if d.entry_number else "",
             "detail": "; ".join(f.message for f in (*d.messages, *d.warnings))[:110]}
            for d in days],
           ["business_date", "state", "error_category", "entry", "detail"])


def _fleet_status(business_date: date, as_json: bool) -> None:
    with session_scope(cli_support.engine()) as session:
        fleet = ledger_days.fleet_status(session, business_date)
    counts = fleet_counts(fleet)
    if as_json:
        click.echo(json.dumps({
            "business_date": business_date.isoformat(),
            "counts": counts,
            "clients": [{
                "client_id": f.client_id, "territory": f.territory.value, "state": f.state,
                "error_category": f.error_category,
                "messages": [m.as_dict() for m in f.messages],
                "warnings": [w.as_dict() for w in f.warnings],
            } for f in fleet],
        }, ensure_ascii=False, indent=2))
        return
    _table([{"client": f.client_id, "territory": f.territory.value, "state": f.state,
             "error_category": f.error_category or "",
             "detail": "; ".join(m.message for m in (*f.messages, *f.warnings))[:110]}
            for f in fleet],
           ["client", "territory", "state", "error_category", "detail"])
    parts = []
    for key, count in counts.items():
        if not count or key == "clients" or key.startswith("flagged_"):
            continue
        if key == "flagged":
            by_category = ", ".join(f"{counts[f'flagged_{c}']} {c}" for c in ERROR_CATEGORIES
                                    if counts[f"flagged_{c}"])
            parts.append(f"{count} flagged" + (f" ({by_category})" if by_category else ""))
        else:
            parts.append(f"{count} {key.replace('_', ' ')}")
    click.echo(f"{business_date}: {counts['clients']} client(s)"
               + (f": {', '.join(parts)}" if parts else ""))


def fleet_counts(fleet: list[ledger_days.FleetDay]) -> dict[str, int]:
    """Clients per state of one day, flagged days also per category (``flagged_pos``…)."""
    keys = ["posted", "empty", "flagged", *(f"flagged_{c}" for c in ERROR_CATEGORIES),
            "refused", "missing", "error", "waiting", "received", "not_run"]
    counts = dict.fromkeys(["clients", *keys], 0)
    counts["clients"] = len(fleet)
    for day in fleet:
        counts[day.state] = counts.get(day.state, 0) + 1
        if day.state == "flagged" and day.error_category is not None:
            counts[f"flagged_{day.error_category.value}"] += 1
    return counts


# --- exports ---------------------------------------------------------------------------------

@main.group()
def export() -> None:
    """Export the ledger."""


@export.command("fec")
@click.argument("client")
@click.option("--from", "date_from", required=True,
              callback=cli_support.day, help="First day YYYY-MM-DD.")
@click.option("--to", "date_to", required=True,
              callback=cli_support.day, help="Last day YYYY-MM-DD.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (the legal name is <SIREN>FEC<AAAAMMJJ>.txt).")
def export_fec(client: str, date_from: date, date_to: date, out: Path) -> None:
    """Write CLIENT's entries between two days as an FEC file (art. A47 A-1 LPF)."""
    from toporder_sync.core.fec import FecEntry, write_fec

    if not out.parent.is_dir():
        raise click.BadParameter(f"the folder {str(out.parent)!r} does not exist; create it "
                                 "first", param_hint="--out")
    with cli_support.errors(), session_scope(cli_support.engine()) as session:
        ledger_clients.get_client(session, client)
        stored = journal.entries_between(session, client, date_from, date_to)
    count = write_fec([FecEntry(s.number, s.entry, s.posted_at.date()) for s in stored], out)
    click.echo(f"{out}: {len(stored)} entries, {count} lines (ISO-8859-15, tab-separated)")


# --- demo ------------------------------------------------------------------------------------

@main.command("demo")
@click.option("--dir", "directory", default="demo-output", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where the demo ledger and FEC files go (its ledger is recreated).")
def demo(directory: Path) -> None:
    """A week of simulated closures for a few demo clients, posted through the flows."""
    # The demo prints its own account of every day; Prefect's per-task INFO lines would bury it.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from toporder_sync.demo import run_demo

    run_demo(directory)


main.add_command(schedules)
main.add_command(pennylane)
clients.add_command(set_source)
clients.add_command(push_secret)
main.add_command(receiver)
main.add_command(simulator)
main.add_command(notifications_group)
main.add_command(automations_group)
main.add_command(relay)
main.add_command(days)
clients.add_command(set_webhook)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


if __name__ == "__main__":
    main()
