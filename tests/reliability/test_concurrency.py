"""Class 2, concurrency: two processes run the same client-day at the same moment.

Two forked processes, each with its own engine as two flow runs would have, walk the same
list of client-days; a barrier releases both at once before each ``day.run_day`` (the real
claim, the real posting). Each time exactly one entry must exist, and the other run must end
cleanly: ``already_running`` (it lost the claim) or ``posted`` with ``unchanged`` (it claimed
after the winner had released the day, and found the work done).
"""

from __future__ import annotations

import os
import traceback
from collections import defaultdict
from datetime import date
from typing import Any

import racing
from sqlalchemy import Engine, func, select

from reliability import invariants, support, tally
from toporder_sync import simulator
from toporder_sync.ledger.db import make_engine, session_scope
from toporder_sync.ledger.tables import EntryRow

PAIRS = int(os.environ.get("RELIABILITY_PAIRS", "100"))
CLIENTS = 4
WAIT = 60


def _racer(url: str, name: str, work: list[tuple[str, date]], barrier: Any,
           results: Any) -> None:
    engine = make_engine(url)
    try:
        from toporder_sync.day import client_record
        clients = {cid: client_record(engine, cid) for cid in {cid for cid, _ in work}}
        for client_id, day in work:
            barrier.wait(WAIT)
            result = support.run(engine, clients[client_id], day, run_id=f"{name}-{day}")
            status = None if result.posted is None else result.posted.status
            results.put(("day", client_id, day, result.outcome.kind, status))
    except BaseException:
        barrier.abort()
        results.put(("error", traceback.format_exc()))
    finally:
        engine.dispose()
        results.put(("done",))


def test_two_runs_of_one_client_day_at_once_post_one_entry(engine: Engine,
                                                           ledger_url: str) -> None:
    per_client = -(-PAIRS // CLIENTS)
    assert per_client <= len(support.DAYS)
    delivered = []
    for n in range(CLIENTS):
        client = support.activate(engine, f"race-{n}")
        faults = {support.DAYS[d]: frozenset({"unknown_method"})
                  for d in range(n, per_client, 5)}
        series = simulator.generate_series(
            integration_id=client.integration_id, establishment_id="est-1",
            establishment_name=client.name, start=support.DAYS[0], days=per_client,
            venue=("bar", "shop", "bakery", "restaurant")[n], faults_by_day=faults)
        for document in series:
            raw = simulator.dumps(document)
            support.receive(engine, raw)
            delivered.append((client.client_id, raw))
    work = sorted(((f"race-{n}", support.DAYS[d]) for n in range(CLIENTS)
                   for d in range(per_client)), key=lambda item: (item[1], item[0]))[:PAIRS]
    barrier = support.FORK.Barrier(2)
    results = support.FORK.Queue()
    racers = [support.FORK.Process(target=_racer,
                                   args=(ledger_url, name, work, barrier, results))
              for name in ("left", "right")]
    for racer in racers:
        racer.start()
    outcomes: dict[tuple[str, date], list[tuple[str, str | None]]] = defaultdict(list)
    for client_id, day, outcome, status in racing.reports(results, racers, wait=WAIT):
        outcomes[(client_id, day)].append((outcome, status))
    assert len(outcomes) == len(work)
    lost_claim = 0
    with session_scope(engine) as session:
        counts = {(c, d): n for c, d, n in session.execute(
            select(EntryRow.client_id, EntryRow.business_date, func.count())
            .group_by(EntryRow.client_id, EntryRow.business_date))}
    for key, pair in outcomes.items():
        tally.tried("concurrency", "same client-day, two processes")
        assert counts.get(key) == 1, f"{key}: {counts.get(key)} entries, {pair}"
        ordered = sorted(pair)
        if ordered[0][0] == "already running":
            lost_claim += 1
            assert ordered == [("already running", None), ("posted", "posted")], (key, pair)
        else:
            assert ordered == [("posted", "posted"), ("posted", "unchanged")], (key, pair)
    found = tally.record(invariants.check(engine, delivered=delivered), "concurrency")
    assert not found, found.describe()
    # The race is real only if the claim was contended at least once.
    assert lost_claim > 0, "no run ever found the day claimed: the barrier did not race them"
