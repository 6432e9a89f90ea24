"""One client-day from start to end: claim → admit → fetch → validate → map → build → load.

This is the story of a client-day, told without Prefect: it chains the ledger steps of
``service`` and the pure stages of ``core.pipeline``, and ends with a ``DayResult`` saying what
happened and who must act. ``tasks/daily.py`` runs it in a worker thread, whole, inside a
``post-client-day`` flow run or a catch-up's ``client-days`` task run, again whole when it raises
a ``TransientError``, and turns the result into a final state, an artifact and, for a flagged
day, an event.

Why no Prefect task per step: a task run costs the Prefect server far more than the step it
would wrap, and a morning's fleet could not be run at a task run per step (the measurements
are in docs/architecture.md and docs/operations.md, "Fitting a morning"). Each step is one
ledger transaction and the ledger holds the idempotency, so running the whole story again after
a transient failure is safe: a posted day is not posted twice, an identical rerun changes
nothing.

The day's claim is taken first, in the same transaction as its admission
(``service.claim_and_admit``; for an ``InboxSource``, the closure is read from the inbox in that
transaction too), and always released: two runs of one client-day never run at once, whatever
the orchestrator does. The last transaction of a day, the one that records what became of it
(posted, refused, flagged, empty, waiting, missing), lets go of the claim as it commits: a run
that dies after it leaves the day free, and a rerun finds it settled. The claim of a run that
raised is released in a transaction of its own; a run that dies before its last commit holds
the day until its lease lapses: 90 s (``CLAIM_LEASE``), which the live run renews while the day
runs (``service.ClaimKeeper``), or until ``toporder-sync days release`` frees it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Protocol

from sqlalchemy import Engine

from toporder_sync import checkpoints, service
from toporder_sync.core import calendar, pipeline
from toporder_sync.core.errors import (
    Category,
    ClosureRejected,
    Finding,
    TransientError,
    internal_error,
    pos_error,
    refused,
)
from toporder_sync.core.model import ClientSettings, Entry, MethodMatch
from toporder_sync.ledger import clients
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.journal import PostResult
from toporder_sync.outcome import Outcome
from toporder_sync.service import AlertChange
from toporder_sync.sources import (
    ClosureSource,
    FetchedClosure,
    InboxSource,
    from_inbox,
    source_of_kind,
)


class Assess(Protocol):
    """The pure stages of a client-day (``pipeline.assess``), wherever they run."""

    def __call__(self, raw: bytes, source: str, settings: ClientSettings, *,
                 integration_id: str, known: pipeline.KnownPrevious | None
                 ) -> pipeline.Assessment: ...


# A claim outlives a run that died without releasing it by this much, then lapses; a live run
# renews it every third of it (``service.ClaimKeeper``). 90 s: a renewal may wait SQLite's
# 30 s busy timeout for the ledger's write lock and still land in time, and one renewal
# failing outright is survived; a day whose run was killed is free again within 90 s.
CLAIM_LEASE = timedelta(seconds=90)

@dataclass(frozen=True, slots=True)
class DayResult:
    """What became of a client-day, with what a person needs to read it.

    ``findings`` are the errors of a flagged, missing or refused day, the warnings of a posted
    one. ``entry`` and ``posted`` are set for a posted day, ``entry`` alone for an empty one.
    ``alert``: what the run did to the day's alert (raised, repeated, resolved), if anything.
    ``error``: for an ``UNEXPECTED_ERROR``, the exception, for the run's log.
    """

    client: ClientRecord
    business_date: date
    outcome: Outcome
    category: Category | None = None
    findings: tuple[Finding, ...] = ()
    entry: Entry | None = None
    posted: PostResult | None = None
    deadline: datetime | None = None
    alert: AlertChange | None = None
    error: Exception | None = None


def client_record(engine: Engine, client_id: str) -> ClientRecord:
    with session_scope(engine) as session:
        return clients.client_and_source(session, client_id)[0]


def client_and_source(engine: Engine, client_id: str) -> tuple[ClientRecord, ClosureSource]:
    """The client and where its closures come from, read in one statement."""
    with session_scope(engine) as session:
        client, kind = clients.client_and_source(session, client_id)
    return client, source_of_kind(engine, kind)


def run_day(engine: Engine, client: ClientRecord, business_date: date, *,
            source: ClosureSource, run_id: str, now: Callable[[], datetime],
            lease: timedelta = CLAIM_LEASE, assess: Assess = pipeline.assess) -> DayResult:
    """Run one client-day under its claim; ``already_running`` when another run holds it.

    ``assess``: how the pure stages are run (``pipeline.assess`` in this thread, or
    ``core_processes.CoreProcesses.assess`` in a worker process)."""
    # This ledger's inbox is read in the claim's transaction rather than in one more.
    inbox_read = isinstance(source, InboxSource) and source.engine is engine
    admission = service.claim_and_admit(engine, client, business_date, run_id=run_id,
                                        now=now(), lease=lease, read_inbox=inbox_read)
    if admission is None:
        return DayResult(client, business_date, Outcome.ALREADY_RUNNING)
    keeper = service.ClaimKeeper(engine, client.client_id, business_date, run_id=run_id,
                                 now=now, lease=lease)  # the lease, renewed while the day runs
    try:
        # The day's last transaction lets go of the claim as it commits.
        return _claimed_day(engine, client, business_date, admission, source=source,
                            inbox_read=inbox_read, run_id=run_id, now=now, assess=assess)
    except TransientError:  # retried whole by the caller: nothing to record
        service.release(engine, client.client_id, business_date, run_id=run_id)
        raise
    except Exception as exc:  # a bug or a misconfiguration: the day gets its verdict
        return _internal_error(engine, client, business_date, exc, run_id=run_id, now=now())
    except BaseException:
        service.release(engine, client.client_id, business_date, run_id=run_id)
        raise
    finally:
        keeper.stop()


def _claimed_day(engine: Engine, client: ClientRecord, business_date: date,
                 admission: service.Admission, *, source: ClosureSource, inbox_read: bool,
                 run_id: str, now: Callable[[], datetime], assess: Assess) -> DayResult:
    client_id = client.client_id
    if admission.refusal is not None:  # recorded, and the claim let go of, on admission
        return DayResult(client, business_date, Outcome.REFUSED, Category.REFUSED,
                         (refused("refused", "business_date", admission.refusal),))
    if inbox_read:  # with the claim (``admission.inbox``)
        fetched = from_inbox(client_id, business_date, admission.inbox)
    else:
        try:
            fetched = source.fetch(client_id, business_date)
        except ClosureRejected as rejected:  # e.g. the API served another client's closure
            return _flagged(engine, client, business_date, None, Category.POS,
                            rejected.findings, (), run_id=run_id, now=now())
    if fetched is None:
        return _no_closure(engine, client, business_date, run_id=run_id, now=now())
    # The pure stages, in this thread or a worker process (``assess``): nothing is written.
    assess_closure = partial(assess, fetched.raw, fetched.source, admission.settings,
                             integration_id=client.integration_id)
    assessed = assess_closure(  # the previous closure as read with this one, if it was
        known=None if fetched.previous_of is None
        else pipeline.KnownPrevious(fetched.previous_of, business_date, fetched.previous))
    if assessed.previous_needed:  # the closure is another establishment's or day's
        establishment_id, its_date = assessed.previous_needed
        assessed = assess_closure(known=pipeline.KnownPrevious(
            establishment_id, its_date,
            service.previous_closure(engine, client_id, establishment_id, its_date)))
    checkpoints.reached("after_parse")
    if not assessed.read:
        return _flagged(engine, client, business_date, fetched, Category.POS,
                        assessed.findings, (), run_id=run_id, now=now())
    category = assessed.category
    if category is not None:
        return _flagged(engine, client, business_date, fetched, category, assessed.findings,
                        assessed.matches, run_id=run_id, now=now())
    entry = assessed.entry
    if entry is None:  # a core bug: an entry is built for every closure without errors
        raise RuntimeError(f"{client_id} {business_date}: no entry for a closure without errors")
    warnings = tuple(f for f in assessed.findings if not f.is_error)
    if not entry.lines:
        alert = service.flag(engine, client_id, business_date, state="empty",
                             error_category=None, findings=warnings,
                             closure_id=fetched.closure_id, matches=assessed.matches, now=now(),
                             flow_run_id=run_id, release=True)
        return DayResult(client, business_date, Outcome.NOTHING_TO_POST, None, warnings, entry,
                         alert=alert)
    posted = service.post(engine, client_id, business_date, closure_id=fetched.closure_id,
                          entry=entry, matches=assessed.matches, warnings=warnings, now=now(),
                          flow_run_id=run_id, release=True)
    checkpoints.reached("after_commit")
    return DayResult(client, business_date,
                     Outcome.POSTED_WITH_WARNINGS if warnings else Outcome.POSTED, None,
                     warnings, entry, posted,
                     alert=None if posted.resolved is None
                     else AlertChange("resolved", posted.resolved))


def _internal_error(engine: Engine, client: ClientRecord, business_date: date,
                    exc: Exception, *, run_id: str, now: datetime) -> DayResult:
    """Record the day as ``error`` (the error's type and message, for the data team), letting go
    of the claim, so that no run leaves its day silently ``received``; a rerun after the fix
    proceeds as usual. Toporder is not told: the closure is not at fault. When even that record
    fails, the claim is let go of and the run's error raised, as before."""
    finding = internal_error(exc)
    try:
        alert = service.flag(engine, client.client_id, business_date, state="error",
                             error_category=None, findings=(finding,), closure_id=None,
                             now=now, flow_run_id=run_id, release=True)
    except Exception:
        service.release(engine, client.client_id, business_date, run_id=run_id)
        raise exc from None
    return DayResult(client, business_date, Outcome.UNEXPECTED_ERROR, Category.INTERNAL,
                     (finding,), alert=alert, error=exc)


def _no_closure(engine: Engine, client: ClientRecord, business_date: date, *, run_id: str,
                now: datetime) -> DayResult:
    """Waiting until the client's deadline for the closure, then missing (Toporder is told)."""
    missing = pos_error("closure_missing", "closure", f"no closure received for {business_date}")
    deadline = calendar.closure_deadline(business_date, client.timezone, client.deadline_hour)
    waiting = now < deadline
    alert = service.flag(engine, client.client_id, business_date,
                         state="waiting" if waiting else "missing",
                         error_category=None if waiting else Category.POS, findings=(missing,),
                         closure_id=None, now=now, flow_run_id=run_id, release=True)
    return DayResult(client, business_date, Outcome.WAITING if waiting else Outcome.MISSING,
                     None if waiting else Category.POS, (missing,), deadline=deadline,
                     alert=alert)


def _flagged(engine: Engine, client: ClientRecord, business_date: date,
             fetched: FetchedClosure | None, category: Category, findings: tuple[Finding, ...],
             matches: tuple[MethodMatch, ...], *, run_id: str, now: datetime) -> DayResult:
    alert = service.flag(engine, client.client_id, business_date, state="flagged",
                         error_category=category, findings=findings,
                         closure_id=fetched.closure_id if fetched else None,
                         matches=matches, now=now, flow_run_id=run_id, release=True)
    outcome = Outcome.of_day("flagged", category.value, False)
    if outcome is None:  # the table gives every flagged day an outcome
        raise RuntimeError(f"no outcome for a day flagged {category}")
    return DayResult(client, business_date, outcome, category,
                     tuple(f for f in findings if f.is_error), alert=alert)
