"""What the attacks share: clients, simulated closures, a forked run of a client-day."""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from toporder_sync import checkpoints, day, service, simulator
from toporder_sync.ledger.clients import ClientRecord, activate_client
from toporder_sync.ledger.db import make_engine, session_scope
from toporder_sync.sources import ClosureSource, InboxSource

NOW = datetime(2026, 11, 28, 5, 30, tzinfo=UTC)
ACTIVATED = date(2026, 11, 1)
# Business days every attack may use: 2026-11-01 to 2026-11-27.
DAYS = tuple(ACTIVATED + timedelta(days=n) for n in range(27))
# Past the claim lease of a run that died: its day can be claimed again.
AFTER_LEASE = NOW + day.CLAIM_LEASE + timedelta(minutes=1)
FORK = multiprocessing.get_context("fork")


def activate(engine: Engine, client_id: str, *, on: date = ACTIVATED) -> ClientRecord:
    with session_scope(engine) as session:
        return activate_client(session, client_id, name=f"Client {client_id}", activated_on=on,
                               now=NOW)


def closure(client: ClientRecord, business_date: date, *, number: int = 1,
            perpetual_before: str = "0.00", faults: frozenset[str] = frozenset(),
            venue: str = "restaurant") -> bytes:
    """The simulator's closure of the client-day (byte-identical for the same arguments)."""
    return simulator.dumps(simulator.generate_closure(
        integration_id=client.integration_id, establishment_id="est-1",
        establishment_name=client.name, business_date=business_date, venue=venue,
        territory=client.territory, number=number,
        perpetual_before=Decimal(perpetual_before), faults=faults))


def receive(engine: Engine, raw: bytes, *, now: datetime = NOW) -> service.Received:
    return service.receive(engine, raw, "reliability", now=now)


def run(engine: Engine, client: ClientRecord, business_date: date, *, run_id: str,
        now: datetime = NOW, source: ClosureSource | None = None) -> day.DayResult:
    return day.run_day(engine, client, business_date, source=source or InboxSource(engine),
                       run_id=run_id, now=lambda: now)


def _child(url: str, crash_at: str | None, work: Callable[[Engine], object],
           errors: Any) -> None:
    if crash_at is not None:
        os.environ[checkpoints.CRASH_AT] = crash_at
    else:
        os.environ.pop(checkpoints.CRASH_AT, None)
    engine = make_engine(url)
    try:
        work(engine)
    except BaseException:
        errors.put(traceback.format_exc())
        raise
    finally:
        engine.dispose()


def in_child(url: str, work: Callable[[Engine], object], *, crash_at: str | None,
             timeout: float = 60) -> int:
    """Run ``work(engine)`` in a forked process crashing at ``crash_at``; its exit code
    (``-9``: it was killed at the checkpoint). A Python error in the child is raised here."""
    errors = FORK.SimpleQueue()
    process = FORK.Process(target=_child, args=(url, crash_at, work, errors))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise AssertionError(f"the child did not end within {timeout} s")
    if not errors.empty():
        raise AssertionError("the child raised:\n" + errors.get())
    assert process.exitcode is not None
    return process.exitcode
