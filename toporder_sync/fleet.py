"""Many client-days at once: which ones to run, and what their runs added up to.

Used by the catch-up and dispatch flows (``flows/fleet.py``), which only run what this module
selects and report what it counts. Selection reads the ledger (``ledger.clients``,
``ledger.days``); the rest is pure. A client-day's outcome is an ``outcome.Outcome``, never a
state name read back.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Engine

from toporder_sync.ledger import clients as ledger_clients
from toporder_sync.ledger import days as ledger_days
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.ledger.db import session_scope
from toporder_sync.outcome import KINDS, PRESSING, Outcome, Verdict, fleet_verdict


@dataclass(frozen=True, slots=True)
class ClientDay:
    client_id: str
    territory: str
    business_date: date


@dataclass(frozen=True, slots=True)
class ClientDays:
    """A client's days of a catch-up, in date order: they run one after the other."""

    client_id: str
    territory: str
    business_dates: tuple[date, ...]


@dataclass(frozen=True, slots=True)
class DayOutcome:
    """What one run of a client-day came to, as a fleet run counts it.

    ``run_id``: the Prefect flow run that stands for the day in the UI, when there is one."""

    client_id: str
    business_date: date
    outcome: Outcome
    message: str
    run_id: str | None = None

    @property
    def kind(self) -> str:
        return self.outcome.kind


def days_between(date_from: date, date_to: date) -> list[date]:
    if date_to < date_from:
        raise ValueError(f"the range ends ({date_to}) before it starts ({date_from})")
    return [date_from + timedelta(days=n) for n in range((date_to - date_from).days + 1)]


def catch_up_plan(clients: Sequence[ClientRecord], date_from: date,
                  date_to: date) -> list[ClientDays]:
    """Every day of the range for each client, a client's days together and in date order.

    A client's days must run one after the other, oldest first: the continuity check of a day
    (identity 6) reads the closure posted for the day before, so a day posted before its
    predecessor warns of a closure missing that is not (seen when a catch-up ran a client's
    days at once). Days before a client's activation are kept: the client-day run refuses them
    itself, so a catch-up reports them as refused instead of silently skipping them.
    """
    days = tuple(days_between(date_from, date_to))
    return [ClientDays(c.client_id, c.territory.value, days) for c in clients]


def not_run(client_id: str, business_date: date, cause: DayOutcome) -> DayOutcome:
    """A day left alone because an earlier day of its client failed (``cause``)."""
    return DayOutcome(client_id, business_date, Outcome.NOT_RUN,
                      f"{cause.business_date} ended {cause.outcome.state_name!r} first; "
                      f"run the catch-up again from {cause.business_date}")


def most_pressing(outcomes: Sequence[DayOutcome]) -> DayOutcome:
    """The outcome that speaks for several client-days: the first of the most pressing."""
    return min(outcomes, key=lambda o: PRESSING.index(o.outcome))


def dispatch_plan(due: Iterable[ClientRecord], waiting: Iterable[ClientRecord],
                  business_date: date) -> list[ClientDay]:
    """The clients due at this hour, then those whose day still waits for its closure, once each.

    A waiting day is run again at every dispatch of its timezone until its closure arrives or
    its deadline passes; the client-day run then flags it missing.
    """
    plan: dict[str, ClientDay] = {}
    for client in (*due, *waiting):
        plan.setdefault(client.client_id,
                        ClientDay(client.client_id, client.territory.value, business_date))
    return list(plan.values())


def in_shard(client_id: str, shard: int, shards: int) -> bool:
    """Whether the client belongs to ``shard`` of ``shards``: a stable split of the fleet.

    CRC-32 of the identifier, not ``hash()``: the split must be the same in every process and
    on every machine, so that ``shards`` dispatch runs cover each client exactly once.
    """
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not one of 0..{shards - 1}")
    return zlib.crc32(client_id.encode()) % shards == shard


def select_clients(engine: Engine, client_ids: Sequence[str] | None) -> list[ClientRecord]:
    """The named clients (all must exist), or every active client when none is named."""
    with session_scope(engine) as session:
        known = {c.client_id: c for c in ledger_clients.list_clients(session)}
    if client_ids is None:
        return [c for c in known.values() if c.active]
    unknown = sorted(set(client_ids) - set(known))
    if unknown:
        raise ValueError(f"unknown clients: {', '.join(unknown)}")
    return [known[c] for c in dict.fromkeys(client_ids)]


def awaits_rerun(state: str, attempts: int) -> bool:
    """A day already run that must run again: still waiting for its closure, or the closure
    it waited for has just come (a new closure puts a day back to ``received``)."""
    return state == "waiting" or (state == "received" and attempts > 0)


def select_dispatch(engine: Engine, *, timezone: str, hour: int, business_date: date,
                    shard: int = 0, shards: int = 1) -> list[ClientDay]:
    """The client-days a dispatch of (timezone, hour) runs for ``business_date``, in its shard."""
    with session_scope(engine) as session:
        due = ledger_clients.due_clients(session, timezone=timezone, hour=hour)
        in_zone = {client.client_id: client for client in ledger_clients.list_clients(session)
                   if client.active and client.timezone == timezone}
        # One query for the whole fleet's day, not one per client of the timezone.
        waiting = [in_zone[day.client_id]
                   for day in ledger_days.fleet_status(session, business_date)
                   if day.client_id in in_zone and awaits_rerun(day.state, day.attempts)]
    return [day for day in dispatch_plan(due, waiting, business_date)
            if in_shard(day.client_id, shard, shards)]


@dataclass(frozen=True, slots=True)
class Summary:
    counts: Counter[str]
    flagged: Counter[str]
    outcomes: tuple[DayOutcome, ...]

    @property
    def errors(self) -> int:
        """Days that ended in an error for the data team (still unavailable, unexpected)."""
        return self.counts["error"]

    @property
    def verdict(self) -> Verdict:
        """The state a run of these client-days ends in (``outcome.fleet_verdict``)."""
        return fleet_verdict(o.outcome for o in self.outcomes)

    @property
    def to_look_at(self) -> list[DayOutcome]:
        """The client-days not done (not posted), oldest first."""
        return sorted((o for o in self.outcomes if not o.outcome.done),
                      key=lambda o: (o.business_date, o.client_id))

    def line(self) -> str:
        """One line for the flow's state message: every non-zero count, flagged by state."""
        parts = []
        for kind in KINDS:
            if not self.counts[kind]:
                continue
            text = f"{self.counts[kind]} {kind}"
            if kind == "flagged":
                text += " (" + ", ".join(f"{n} {name}" for name, n in
                                         sorted(self.flagged.items())) + ")"
            parts.append(text)
        return f"{len(self.outcomes)} client-days: " + (", ".join(parts) or "none")

    def markdown(self, title: str) -> str:
        rows = [f"| {kind} | {self.counts[kind]} |" for kind in KINDS]
        rows[2:3] = [rows[2], *(f"| flagged: {name} | {n} |"
                                for name, n in sorted(self.flagged.items()))]
        text = (f"# {title}: {self.verdict.state_name}\n\n{self.line()}\n\n"
                "| outcome | client-days |\n|---|---:|\n")
        text += "\n".join(rows) + "\n"
        attention = self.to_look_at
        if attention:
            text += ("\n## Days to look at\n\n| client | day | state | who must act | message |\n"
                     "|---|---|---|---|---|\n")
            text += "\n".join(
                f"| {o.client_id} | {o.business_date} | {o.outcome.state_name} | "
                f"{o.outcome.who} | {o.message.replace('|', '/').replace(chr(10), ' ')} |"
                for o in attention
            ) + "\n"
        return text


def summarize(outcomes: Iterable[DayOutcome]) -> Summary:
    kept = tuple(outcomes)
    return Summary(
        counts=Counter(o.kind for o in kept),
        flagged=Counter(o.outcome.state_name for o in kept if o.kind == "flagged"),
        outcomes=kept,
    )
