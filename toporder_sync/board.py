"""The board of a business day and a client's recent days: what the data team watches.

Two kinds of keyed Prefect artifact are made from what this module reads and renders (the flows
publish them, ``tasks.daily``):

* ``board-<day>``, one per business day: a table of every client-day of that day that needs
  somebody (its state, who must act, the message, its run) and of every day resolved after an
  alert (the red run and the run that resolved it), with the counts of the rest in its
  description. Every run that changes days of that date publishes it again, so the UI shows
  its latest version and keeps the others as its history.
* ``client-<id>``, one per client: the day a run just settled (its entry or its failures) and
  the client's recent days.

The ledger is the source of both: a board read after any run says what the ledger holds, not
what one run saw. Days whose run failed before recording anything (the data team's errors)
are added by the run that saw them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Engine

from toporder_sync import report
from toporder_sync.fleet import DayOutcome
from toporder_sync.ledger import days as ledger_days
from toporder_sync.ledger.days import DayStatus, FleetDay
from toporder_sync.ledger.db import session_scope
from toporder_sync.outcome import Outcome, Who, slug

# How many days a client's artifact lists, the newest last.
RECENT_DAYS = 14

RunUrl = Callable[[str | None], str]


def board_key(business_date: date) -> str:
    return f"board-{business_date.isoformat()}"


def client_key(client_id: str) -> str:
    return f"client-{slug(client_id)}"


@dataclass(frozen=True, slots=True)
class Board:
    """A business day's board: its rows (a table artifact) and its description."""

    business_date: date
    rows: tuple[dict[str, str], ...]
    description: str


def read_day(engine: Engine, business_date: date) -> list[FleetDay]:
    with session_scope(engine) as session:
        return ledger_days.fleet_status(session, business_date)


def board(business_date: date, days: Sequence[FleetDay], errors: Sequence[DayOutcome],
          run_url: RunUrl) -> Board:
    """The board of ``business_date`` from the ledger's ``days`` and the data team's
    ``errors`` of the run publishing it (days it could not record)."""
    erred = {o.client_id: o for o in errors if o.business_date == business_date}
    rows: list[dict[str, str]] = []
    counts: Counter[str] = Counter()
    for day in days:
        error = erred.pop(day.client_id, None)
        if error is not None:
            counts[error.outcome.state_name] += 1
            rows.append(_row(day.client_id, error.outcome, error.message, run_url(error.run_id)))
            continue
        outcome = Outcome.of_day(day.state, _category(day), bool(day.warnings))
        if outcome is None:
            counts["Not run yet" if day.state == "not_run" else "Received, not run yet"] += 1
            continue
        alert = day.alert
        if outcome.done and alert is not None and alert.key is None:
            counts["Resolved"] += 1
            was = Outcome[alert.outcome].state_name
            rows.append({**_row(day.client_id, outcome, f"was {was}", run_url(day.flow_run_id)),
                         "state": f"Resolved: {outcome.state_name}",
                         "was": f"{was}: {run_url(alert.run_id)}"})
            continue
        counts[outcome.state_name] += 1
        if outcome.needs_action or outcome is Outcome.WAITING:
            # The red run is the one that raised the alert, not a later identical rerun.
            run_id = alert.run_id if alert is not None and alert.key else day.flow_run_id
            rows.append(_row(day.client_id, outcome, report.summary(day.messages),
                                 run_url(run_id)))
    for error in erred.values():  # clients the ledger does not list for that day
        counts[error.outcome.state_name] += 1
        rows.append(_row(error.client_id, error.outcome, error.message, run_url(error.run_id)))
    rows.sort(key=lambda r: (_ORDER.get(r["who must act"], 9), r["client"]))
    needing = sum(1 for r in rows if r["who must act"] != str(Who.NOBODY))
    described = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    need = "1 client-day needs" if needing == 1 else f"{needing} client-days need"
    description = (f"**{business_date}**: {need} somebody. "
                   f"{len(days)} clients: {described or 'none'}.")
    return Board(business_date, tuple(rows), description)


_ORDER = {str(Who.TOPORDER): 0, str(Who.ACCOUNTANT): 1, str(Who.DATA_TEAM): 2,
          str(Who.NOBODY): 3}


def _category(day: FleetDay | DayStatus) -> str | None:
    return None if day.error_category is None else day.error_category.value


def _row(client_id: str, outcome: Outcome, message: str, run: str) -> dict[str, str]:
    # The message last: the UI's table is read left to right and the message is the longest.
    return {"client": client_id, "state": outcome.state_name, "who must act": str(outcome.who),
            "run": run, "was": "", "message": message}


def read_recent(engine: Engine, client_id: str, business_date: date) -> list[DayStatus]:
    """The client's last ``RECENT_DAYS`` days from ``RECENT_DAYS`` before ``business_date``:
    those before it and any after (a day run again after later days were posted)."""
    with session_scope(engine) as session:
        days = ledger_days.day_statuses(
            session, client_id, date_from=business_date - timedelta(days=RECENT_DAYS - 1))
    return days[-RECENT_DAYS:]


def recent_markdown(days: Sequence[DayStatus], run_url: RunUrl) -> str:
    """The client's recent days as a Markdown table, newest first."""
    if not days:
        return ""
    lines = ["| day | state | who must act | run |", "|---|---|---|---|"]
    for day in reversed(days):
        outcome = Outcome.of_day(day.state, _category(day), bool(day.warnings))
        state = "received, not run yet" if outcome is None else outcome.state_name
        who = "" if outcome is None else str(outcome.who)
        if outcome is not None and outcome.done and day.alert is not None \
                and day.alert.key is None:
            state += f" (resolved {Outcome[day.alert.outcome].state_name}: " \
                     f"{run_url(day.alert.run_id)})"
        lines.append(f"| {day.business_date} | {state} | {who} | {run_url(day.flow_run_id)} |")
    return "\n".join(lines) + "\n"
