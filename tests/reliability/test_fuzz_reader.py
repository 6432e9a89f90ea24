"""Class 3, bad inputs: Hypothesis feeds hostile closures to the reader, on both backends.

Each try is a valid closure with values swapped at random paths for hostile ones
(``strategies_hostile``: huge and long numbers, every Unicode category with NUL and lone
surrogates, extreme dates, wrong types, deep nesting). The property: ``service.receive``
either refuses it (``ClosureRejected`` naming the rule and the field of each problem, or
``RefusedError``) with nothing stored, or stores it; then the day's run ends in an outcome a
person can act on (posted, flagged with findings naming rule and field, nothing to post,
refused, waiting, missing), never an exception nor "Unexpected error", and the invariants of
the ledger hold. PostgreSQL is where NUL in text fails, so both backends run it.

The number of tries per backend is ``RELIABILITY_HYPOTHESIS`` (default 300); the profile
``reliability-fuzz`` makes them the same on every run.
"""

from __future__ import annotations

import itertools
import os
from datetime import timedelta

from hypothesis import given, note, settings
from sqlalchemy import Engine, func, select

from reliability import invariants, support, tally
from reliability.strategies_hostile import FUZZ_SETTINGS, HostileClosure, hostile_closures
from toporder_sync.core.errors import ClosureRejected, RefusedError
from toporder_sync.day import client_record
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import ClientRow, ClosureRow

EXAMPLES = int(os.environ.get("RELIABILITY_HYPOTHESIS", "300"))
# Outcomes a person can act on (``Outcome.kind``); "error" (an unexpected error, or still
# unavailable) and "already running" (nothing else runs here) are failures of the property.
KNOWN_OUTCOMES = frozenset({"posted", "flagged", "nothing to post", "refused", "waiting",
                            "missing"})


def _stored(engine: Engine, client_id: str) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(ClosureRow)
                              .where(ClosureRow.client_id == client_id)) or 0


def test_hostile_closures_are_refused_at_reading_or_run_to_a_known_outcome(
        engine: Engine) -> None:
    support.activate(engine, "hostile")
    with session_scope(engine) as session:
        row = session.get(ClientRow, "hostile")
        assert row is not None
        integration_id = row.integration_id
    client = client_record(engine, "hostile")
    tries = itertools.count()
    kind = f"hypothesis: reader ({engine.dialect.name})"

    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES)
    @given(hostile_closures(integration_id, support.DAYS))
    def receive_and_run(hostile: HostileClosure) -> None:
        n = next(tries)
        tally.tried("bad_input", kind)
        note(f"{hostile!r}\nraw: {hostile.raw[:600]!r}")
        before = _stored(engine, client.client_id)
        try:
            received = support.receive(engine, hostile.raw,
                                       now=support.NOW + timedelta(seconds=n % 3600))
        except ClosureRejected as rejected:
            assert rejected.findings, "a refusal names its problems"
            assert all(f.rule and f.field and f.message for f in rejected.findings), \
                rejected.findings
            assert _stored(engine, client.client_id) == before, "refused but stored"
            return
        except RefusedError as refused:
            assert str(refused)
            assert _stored(engine, client.client_id) == before, "refused but stored"
            return
        result = support.run(engine, client, received.business_date, run_id=f"hostile-{n}")
        assert result.outcome.kind in KNOWN_OUTCOMES, (result.outcome, result.findings)
        if result.outcome.kind == "flagged":
            assert result.findings
            assert all(f.rule and f.field and f.message for f in result.findings), \
                result.findings
        found = tally.record(invariants.check(
            engine, delivered=[(client.client_id, hostile.raw)],
            only=[(client.client_id, received.business_date)]), f"hypothesis reader #{n}")
        assert not found, found.describe()

    receive_and_run()
