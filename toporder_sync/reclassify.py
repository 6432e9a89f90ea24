"""Moving posted days onto the account a payment method is now mapped to.

A method Toporder never sent before is posted to 471000 "Autres méthodes de paiement" with a
warning, until the accountant maps it (``mapping set``) or changes that account (``clients
set-account CLIENT other_methods``). ``survey`` finds the client's days whose live entry carries
such a method on another account than the one today's settings send it to (where the entry
holds each method is re-derived from the day's closure by ``core.placement``), and ``rerun``
runs each through the normal client-day path (``runner.run_days``: a flow run per day,
``service.post``, ``journal.post_entry``), oldest first: one reversal and one new entry per day
(PCG art. 420-5: an entry posted is reversed, never edited), with the day's artifact, its
Pennylane push and its notifications, as for a corrected closure.

Each day is one posting transaction, so a reclassification stopped half-way (a crash, Ctrl-C)
leaves each day untouched or reclassified; ``survey`` again finds only the days still to do,
and a day already moved is found on its account: a second run changes nothing.

Never touched, and said so: a day before the client's activation, a day whose latest closure
is not the one posted (flagged, or not yet run: its own run decides), a day whose entry is not
explained by its closure under today's settings. The ledger records no lock date for a client's
periods (``NO_LOCK_DATE``): none is checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from sqlalchemy import Engine

from toporder_sync import checkpoints
from toporder_sync.core import accounts, pipeline
from toporder_sync.core.closure import LineCache
from toporder_sync.core.model import ClientSettings, MatchRule
from toporder_sync.core.money import format_display
from toporder_sync.core.placement import Placement, placements
from toporder_sync.ledger import clients, journal
from toporder_sync.ledger import days as ledger_days
from toporder_sync.ledger.db import session_scope
from toporder_sync.outcome import EXIT_DONE, EXIT_FLAGGED, EXIT_REFUSED
from toporder_sync.runner import DayRun, run_days

NO_LOCK_DATE = "no lock date is recorded for a client's periods: none is checked"

# Which moves of a day's methods a reclassification is about.
Concern = Callable[[Placement], bool]


def method_moves(method: str) -> Concern:
    """The moves of the method named exactly ``method`` (``mapping set``)."""
    return lambda placed: placed.method == method and placed.moves


def unrecognised_moves(placed: Placement) -> bool:
    """The moves of the methods no rule recognises (``clients set-account … other_methods``)."""
    return placed.rule is MatchRule.FALLBACK and placed.moves


@dataclass(frozen=True, slots=True)
class Day:
    """A posted day whose live entry (number ``entry_number``) carries ``moves``."""

    business_date: date
    entry_number: int
    moves: tuple[Placement, ...]


@dataclass(frozen=True, slots=True)
class Untouched:
    """A day left as it is, and why; ``moves``: what its entry carries elsewhere, if known;
    ``exit_code``: 3 (refused) before the activation, else 1 (somebody must act on it)."""

    business_date: date
    reason: str
    moves: tuple[Placement, ...]
    exit_code: int = EXIT_FLAGGED


@dataclass(frozen=True, slots=True)
class Survey:
    """A client's days to reclassify (``due``, oldest first) and those left as they are."""

    client_id: str
    due: tuple[Day, ...]
    untouched: tuple[Untouched, ...]

    @property
    def concerned(self) -> int:
        """Days whose entry carries a concerned method elsewhere, to touch or not."""
        return len(self.due) + sum(1 for left in self.untouched if left.moves)

    @property
    def unexplained(self) -> int:
        """Days whose entry its closure does not explain under today's settings: whether they
        carry a concerned method elsewhere is not known."""
        return sum(1 for left in self.untouched if not left.moves)


def survey(engine: Engine, client_id: str, concern: Concern) -> Survey:
    """The client's days whose live entry carries a move ``concern`` is about (read only;
    RefusedError for an unknown client)."""
    client, _, placed_days = _placed_days(engine, client_id)
    due: list[Day] = []
    untouched: list[Untouched] = []
    for day, placed in placed_days:
        if placed is None:
            untouched.append(Untouched(
                day.business_date,
                "its entry is not explained by its closure under today's settings (another "
                "setting changed since it was posted); `rerun` posts it with today's", ()))
            continue
        moves = tuple(p for p in placed if concern(p))
        if not moves:
            continue
        if day.business_date < client.activated_on:
            untouched.append(Untouched(
                day.business_date, f"before the client's activation on {client.activated_on}",
                moves, EXIT_REFUSED))
        elif day.state == "flagged":
            untouched.append(Untouched(
                day.business_date,
                "its latest closure is flagged: once it is corrected, its run posts it", moves))
        elif day.state != "posted":
            untouched.append(Untouched(
                day.business_date, f"its latest closure is not the one posted (the day is "
                f"{day.state}): its own run decides", moves))
        else:
            due.append(Day(day.business_date, day.entry.number, moves))
    return Survey(client_id, tuple(due), tuple(untouched))


def _placed_days(engine: Engine, client_id: str) -> tuple[
        clients.ClientRecord, ClientSettings,
        list[tuple[journal.LiveDay, tuple[Placement, ...] | None]]]:
    """The client, its settings, and each day with a live entry with where that entry carries
    each method (``core.placement``; None: not explained, or its closure no longer reads)."""
    with session_scope(engine) as session:
        client = clients.get_client(session, client_id)
        settings = clients.client_settings(session, client_id)
        live = journal.live_days(session, client_id)
    placed_days = []
    lines = LineCache()  # a restaurant's days repeat the same ticket lines
    for day in live:
        closure, _ = pipeline.read(day.closure_raw, f"closure of {day.business_date}",
                                   integration_id=client.integration_id, lines=lines)
        placed_days.append(
            (day, None if closure is None else placements(closure, settings, day.entry.entry)))
    return client, settings, placed_days


@dataclass(frozen=True, slots=True)
class Reclassified:
    """What became of a day: ``reclassified`` (a reversal and a new entry), ``unchanged`` (its
    run posted nothing new), ``failed`` (its run did not post it: ``run`` says why)."""

    day: Day
    result: Literal["reclassified", "unchanged", "failed"]
    run: DayRun
    entry_number: int | None


def rerun(engine: Engine, found: Survey, progress: Callable[[DayRun], None] | None = None
          ) -> list[Reclassified]:
    """Run each day of ``found.due`` through the client-day flow, oldest first (``engine``:
    the ledger of ``TOPORDER_SYNC_DATABASE_URL``, which the flow runs post to), then read
    which of them got a new entry."""
    def after(done: DayRun) -> None:
        if progress is not None:
            progress(done)
        checkpoints.reached(f"reclassified:{done.business_date.isoformat()}")

    runs = run_days([(found.client_id, day.business_date) for day in found.due], progress=after)
    if not runs:
        return []
    with session_scope(engine) as session:
        numbers = {status.business_date: status.entry_number for status in
                   ledger_days.day_statuses(session, found.client_id,
                                            date_from=found.due[0].business_date,
                                            date_to=found.due[-1].business_date)}
    results = []
    for day, run in zip(found.due, runs, strict=True):
        number = numbers.get(day.business_date)
        result: Literal["reclassified", "unchanged", "failed"] = (
            "failed" if run.exit_code != EXIT_DONE
            else "unchanged" if number == day.entry_number else "reclassified")
        results.append(Reclassified(day, result, run, number))
    return results


@dataclass(frozen=True, slots=True)
class OnOtherMethods:
    """Per method, the days whose live entry carries it on the client's account of the
    methods no rule recognises (``account``, 471000 unless overridden); ``unexplained``: days
    whose entry its closure does not explain under today's settings (not counted)."""

    account: str
    days: Counter[str]
    unexplained: int


def on_other_methods(engine: Engine, client_id: str) -> OnOtherMethods:
    """How many live entries of the client carry each method on its other-methods account."""
    _, settings, placed_days = _placed_days(engine, client_id)
    account = settings.account_overrides.get(
        accounts.OTHER_METHODS, accounts.FIXED_ACCOUNTS[accounts.OTHER_METHODS])
    counted: Counter[str] = Counter()
    unexplained = 0
    for _day, placed in placed_days:
        if placed is None:
            unexplained += 1
            continue
        counted.update({p.method for p in placed if p.posted_on == account})
    return OnOtherMethods(account, counted, unexplained)


def describe(moves: Sequence[Placement]) -> str:
    """``'Lydia' 12.50 from 471000 to 512100``, for each move."""
    return "; ".join(f"{p.method!r} {format_display(p.amount)} from {p.posted_on} to "
                     f"{p.belongs_on}" for p in moves)
