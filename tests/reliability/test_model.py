"""Class 4, model-based: a Hypothesis state machine over what Toporder and the scheduler do.

Rules: receive a closure (valid, with an unknown method, or with a POS error), resend one
already received byte for byte, rerun a day, and crash a run (SIGKILL at a checkpoint, in a
forked process). The model keeps the clock (every step a second later; a crash moves it past
the dead run's claim) and the days that received something new since their last run. After
every step the invariants hold on the whole ledger, the days still to run excepted; at the
end every day is run and the whole ledger is checked with nothing excepted.
"""

from __future__ import annotations

import itertools
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import Engine

from reliability import invariants, support, tally
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.ledger.db import make_engine, upgrade

DAYS = support.DAYS[:2]
VARIANTS = {
    "valid": frozenset(),
    "unknown method": frozenset({"unknown_method"}),
    "renamed method": frozenset({"renamed_method"}),
    "unbalanced": frozenset({"unbalanced"}),
    "wrong VAT rate": frozenset({"wrong_vat_rate"}),
}
CHECKPOINTS = ("after_parse", "mid_write", "before_commit", "after_commit")
_DIR = Path(tempfile.mkdtemp(prefix="toporder-model-"))
_URL = f"sqlite:///{_DIR / 'model.db'}"
_ENGINE: list[Engine] = []
_CLIENTS = itertools.count()


def _engine() -> Engine:
    if not _ENGINE:
        engine = make_engine(_URL)
        upgrade(engine)
        _ENGINE.append(engine)
    return _ENGINE[0]


class ClientDays(RuleBasedStateMachine):
    """One fresh client per example, in one shared SQLite ledger."""

    @initialize()
    def activate(self) -> None:
        self.engine = _engine()
        self.client: ClientRecord = support.activate(self.engine, f"model-{next(_CLIENTS)}")
        self.clock: datetime = support.NOW
        self.delivered: list[tuple[str, bytes]] = []
        self.pending: set[tuple[str, date]] = set()
        self.runs = itertools.count()
        self.received_days: set[date] = set()

    def _tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def _key(self, day: date) -> tuple[str, date]:
        return (self.client.client_id, day)

    # Valid closures twice as likely: the crash rule needs days that get as far as posting.
    @rule(day=st.sampled_from(DAYS),
          variant=st.sampled_from(["valid", "valid", "unknown method", "unknown method",
                                   *sorted(VARIANTS)]))
    def receive(self, day: date, variant: str) -> None:
        raw = support.closure(self.client, day, number=DAYS.index(day) + 1,
                              faults=VARIANTS[variant], venue="bar")
        received = support.receive(self.engine, raw, now=self._tick())
        tally.tried("model", f"receive {variant}",
                    counts="input" if variant in ("unbalanced", "wrong VAT rate") else None)
        self.received_days.add(day)
        if received.created:
            self.pending.add(self._key(day))
        self.delivered.append((self.client.client_id, raw))

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def resend_identical(self, data: st.DataObject) -> None:
        _client_id, raw = data.draw(st.sampled_from(self.delivered))
        received = support.receive(self.engine, raw, now=self._tick())
        tally.tried("model", "resend identical", counts=None)
        assert not received.created, "an identical resend is never stored twice"

    @rule(day=st.sampled_from(DAYS))
    def rerun(self, day: date) -> None:
        result = support.run(self.engine, self.client, day, run_id=f"run-{next(self.runs)}",
                             now=self._tick())
        tally.tried("model", "rerun", counts=None)
        assert result.outcome.kind in ("posted", "flagged", "missing"), result
        self.pending.discard(self._key(day))

    @precondition(lambda self: bool(self.received_days))
    @rule(data=st.data(), checkpoint=st.sampled_from(CHECKPOINTS))
    def crash(self, data: st.DataObject, checkpoint: str) -> None:
        day = data.draw(st.sampled_from(sorted(self.received_days)))
        client, now, run_id = self.client, self._tick(), f"crash-{next(self.runs)}"

        def work(engine: Engine) -> None:
            support.run(engine, client, day, run_id=run_id, now=now)

        exit_code = support.in_child(_URL, work, crash_at=checkpoint)
        assert exit_code in (0, -9)
        tally.tried("model", f"crash at {checkpoint}" + ("" if exit_code else " (not on path)"),
                    counts="fault" if exit_code else None)
        if exit_code == 0:  # the checkpoint was not on this day's path; the run completed
            self.pending.discard(self._key(day))
        # The dead run's claim lapses after its lease.
        self.clock += support.AFTER_LEASE - support.NOW

    @invariant()
    def ledger_is_consistent(self) -> None:
        if not hasattr(self, "engine"):
            return
        found = tally.record(invariants.check(
            self.engine, delivered=self.delivered, pending=self.pending,
            only=[self._key(day) for day in DAYS]), "model step")
        assert not found, found.describe()

    def teardown(self) -> None:
        if not hasattr(self, "engine"):
            return
        for day in DAYS:
            support.run(self.engine, self.client, day, run_id=f"final-{next(self.runs)}",
                        now=self._tick())
        found = tally.record(invariants.check(
            self.engine, delivered=self.delivered,
            only=[self._key(day) for day in DAYS]), "model end")
        assert not found, found.describe()


ClientDays.TestCase.settings = settings(
    max_examples=20, stateful_step_count=12, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow])
test_client_days = ClientDays.TestCase
