"""Many client-days at once: which ones to run, and what their runs added up to.

Used by the catch-up and dispatch flows (``flows/fleet.py``), which only run what this module
selects and report what it counts. Selection reads the ledger through the repository; the rest
is pure. The names of the client-day flow's final states live here too, because the summary
counts by them: a state name is the interface between a client-day run and the fleet.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Engine

from toporder_sync.ledger import repository
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.repository import ClientRecord

# Final state names of a client-day run.
POSTED = "Posted"
POSTED_WITH_WARNINGS = "Posted with warnings"
NOTHING_TO_POST = "Nothing to post"
WAITING = "Waiting for closure"
ALREADY_RUNNING = "Already running"
REFUSED = "Refused"
MISSING = "Missing closure"
NOT_RUN = "Not run"
POS_DATA_ERROR = "POS data error"
MAPPING_ERROR = "Mapping error"

FLAGGED_STATES = frozenset({POS_DATA_ERROR, MAPPING_ERROR})

# What a run counts as in a summary, in the order a summary lists them.
OUTCOMES: tuple[str, ...] = (
    "posted", "nothing to post", "flagged", "refused", "missing", "waiting", "already running",
    "not run", "crashed",
)
# The same, most pressing first: what a run of several client-days says of them as a whole.
_PRESSING: tuple[str, ...] = (
    "crashed", "flagged", "missing", "refused", "not run", "already running", "waiting",
    "posted", "nothing to post",
)


@dataclass(frozen=True, slots=True)
class ClientDay:
    client_id: str
    territory: str
    business_date: date


@dataclass(frozen=True, slots=True)
class ClientDays:
    """A client's days of a catch-up, in date order: they run one after the other."""

    client_id: str
    business_dates: tuple[date, ...]


@dataclass(frozen=True, slots=True)
class DayOutcome:
    client_id: str
    business_date: date
    state_type: str
    state_name: str
    message: str

    @property
    def kind(self) -> str:
        return outcome_of(self.state_type, self.state_name)


def outcome_of(state_type: str, state_name: str) -> str:
    """The summary line a final state counts on; anything unexpected counts as crashed."""
    state_type = state_type.upper()
    if state_type == "COMPLETED":
        if state_name in (POSTED, POSTED_WITH_WARNINGS):
            return "posted"
        return {NOTHING_TO_POST: "nothing to post", WAITING: "waiting"}.get(state_name, "crashed")
    if state_type == "CANCELLED":
        return {ALREADY_RUNNING: "already running", NOT_RUN: "not run"}.get(state_name,
                                                                            "crashed")
    if state_type == "FAILED":
        if state_name in FLAGGED_STATES:
            return "flagged"
        return {REFUSED: "refused", MISSING: "missing"}.get(state_name, "crashed")
    return "crashed"


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
    return [ClientDays(c.client_id, days) for c in clients]


def not_run(client_id: str, business_date: date, cause: DayOutcome) -> DayOutcome:
    """A day left alone because an earlier day of its client failed (``cause``)."""
    return DayOutcome(client_id, business_date, "CANCELLED", NOT_RUN,
                      f"{cause.business_date} ended {cause.state_name!r} first; "
                      f"run the catch-up again from {cause.business_date}")


def most_pressing(outcomes: Sequence[DayOutcome]) -> DayOutcome:
    """The outcome that speaks for several client-days: the first of the most pressing kind,
    a day posted with warnings before one posted without."""
    return min(outcomes, key=lambda o: (_PRESSING.index(o.kind),
                                        o.state_name != POSTED_WITH_WARNINGS))


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
        known = {c.client_id: c for c in repository.list_clients(session)}
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
        due = repository.due_clients(session, timezone=timezone, hour=hour)
        in_zone = {client.client_id: client for client in repository.list_clients(session)
                   if client.active and client.timezone == timezone}
        # One query for the whole fleet's day, not one per client of the timezone.
        waiting = [in_zone[day.client_id]
                   for day in repository.fleet_status(session, business_date)
                   if day.client_id in in_zone and awaits_rerun(day.state, day.attempts)]
    return [day for day in dispatch_plan(due, waiting, business_date)
            if in_shard(day.client_id, shard, shards)]


@dataclass(frozen=True, slots=True)
class Summary:
    counts: Counter[str]
    flagged: Counter[str]
    outcomes: tuple[DayOutcome, ...]

    @property
    def crashed(self) -> int:
        return self.counts["crashed"]

    @property
    def to_look_at(self) -> list[DayOutcome]:
        """The client-days a person must look at (not posted), oldest first."""
        return sorted((o for o in self.outcomes if o.kind not in ("posted", "nothing to post")),
                      key=lambda o: (o.business_date, o.client_id))

    def line(self) -> str:
        """One line for the flow's state message: every non-zero count, flagged by state."""
        parts = []
        for kind in OUTCOMES:
            if not self.counts[kind]:
                continue
            text = f"{self.counts[kind]} {kind}"
            if kind == "flagged":
                text += " (" + ", ".join(f"{n} {name}" for name, n in
                                         sorted(self.flagged.items())) + ")"
            parts.append(text)
        return f"{len(self.outcomes)} client-days: " + (", ".join(parts) or "none")

    def markdown(self, title: str) -> str:
        rows = [f"| {kind} | {self.counts[kind]} |" for kind in OUTCOMES]
        rows[2:3] = [rows[2], *(f"| flagged: {name} | {n} |"
                                for name, n in sorted(self.flagged.items()))]
        text = f"# {title}\n\n{self.line()}\n\n| outcome | client-days |\n|---|---:|\n"
        text += "\n".join(rows) + "\n"
        attention = self.to_look_at
        if attention:
            text += ("\n## Days to look at\n\n| client | day | state | message |\n"
                     "|---|---|---|---|\n")
            text += "\n".join(
                f"| {o.client_id} | {o.business_date} | {o.state_name} | "
                f"{o.message.replace('|', '/').replace(chr(10), ' ')} |"
                for o in attention
            ) + "\n"
        return text


def summarize(outcomes: Iterable[DayOutcome]) -> Summary:
    kept = tuple(outcomes)
    return Summary(
        counts=Counter(o.kind for o in kept),
        flagged=Counter(o.state_name for o in kept if o.kind == "flagged"),
        outcomes=kept,
    )
