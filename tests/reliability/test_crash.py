"""Class 1, crash injection: a client-day killed (SIGKILL) at each checkpoint, then rerun.

For many simulated closures, a forked process runs the client-day with
``TOPORDER_SYNC_CRASH_AT`` set to one checkpoint and dies there; a rerun before the dead run's
claim lapses must end ``already_running`` without touching anything (after the posting's
commit, which let go of the claim, it finds the day posted and changes nothing); a rerun after
it must settle the day; then the invariants must hold. The same again with a corrected closure (the
crash then hits the reversal-and-repost). Finally the outbox relay is killed between a
delivery and its mark: the notification goes out again, same event id, and ends ``sent``.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reliability import invariants, support, tally
from toporder_sync import outbox
from toporder_sync.ledger.db import session_scope
from toporder_sync.ledger.tables import OutboxRow
from toporder_sync.outbox import Message

POST_CHECKPOINTS = ("after_parse", "mid_write", "before_commit", "after_commit")
SEEDS = int(os.environ.get("RELIABILITY_SEEDS", "5"))
# The seed's content fault: most days are valid, some are posted with a warning (an unknown
# payment method), some are flagged (only ``after_parse`` lies on their path).
FAULTS = (frozenset(), frozenset({"unknown_method"}), frozenset(), frozenset({"unbalanced"}),
          frozenset(), frozenset({"wrong_vat_rate"}), frozenset({"renamed_method"}))
VALID = {frozenset(), frozenset({"unknown_method"}), frozenset({"renamed_method"})}


def _assert_invariants(engine: Engine, where: str, delivered: list[tuple[str, bytes]],
                       only: list[tuple[str, date]] | None = None) -> None:
    found = tally.record(invariants.check(engine, delivered=delivered, only=only), where)
    assert not found, f"{where}:\n{found.describe()}"


def _crash_and_rerun(engine: Engine, url: str, client: support.ClientRecord, day: object,
                     checkpoint: str, *, reached: bool,
                     attempt: str) -> tuple[str, tuple[object, ...]]:
    def work(child_engine: Engine) -> None:
        support.run(child_engine, client, day, run_id=f"crash-{attempt}")  # type: ignore[arg-type]

    exit_code = support.in_child(url, work, crash_at=checkpoint)
    assert exit_code == (-9 if reached else 0), (checkpoint, exit_code)
    tally.tried("crash", f"{checkpoint}{'' if reached else ' (not on path)'}",
                counts="fault" if reached else None)
    early = support.run(engine, client, day, run_id=f"early-{attempt}")  # type: ignore[arg-type]
    if reached and checkpoint == "after_commit":
        # the posting let go of the claim as it committed: the day is settled, the rerun
        # changes nothing
        assert early.outcome.kind == "posted", "a day posted is free as its posting commits"
        assert early.posted is not None and early.posted.status == "unchanged", early.posted
    elif reached:
        assert early.outcome.kind == "already running", "a dead run's claim holds until it lapses"
    later = support.run(engine, client, day, run_id=f"rerun-{attempt}",  # type: ignore[arg-type]
                        now=support.AFTER_LEASE)
    assert later.outcome.kind in ("posted", "flagged"), later
    return later.outcome.kind, later.findings


def test_a_client_day_killed_at_any_checkpoint_is_rerun_to_the_same_ledger(
        engine: Engine, ledger_url: str) -> None:
    clients = {cp: support.activate(engine, f"crash-{n}") for n, cp in
               enumerate(POST_CHECKPOINTS)}
    delivered: list[tuple[str, bytes]] = []
    for seed in range(SEEDS):
        day = support.DAYS[seed]
        faults = FAULTS[seed % len(FAULTS)]
        for checkpoint, client in clients.items():
            raw = support.closure(client, day, number=seed + 1, faults=faults)
            support.receive(engine, raw)
            delivered.append((client.client_id, raw))
            reached = checkpoint == "after_parse" or faults in VALID
            outcome = _crash_and_rerun(engine, ledger_url, client, day, checkpoint,
                                       reached=reached, attempt=f"{seed}-{checkpoint}")
            assert outcome[0] == ("posted" if faults in VALID else "flagged"), outcome
            touched = [(client.client_id, day)]
            _assert_invariants(engine, f"crash {checkpoint} seed {seed}", delivered, touched)
            if faults not in VALID:
                continue
            # A corrected closure: the rerun reverses the posted entry and posts the new one.
            corrected = support.closure(client, day, number=seed + 1,
                                        faults=frozenset({"unknown_method"}) - faults)
            support.receive(engine, corrected, now=support.NOW + timedelta(seconds=1))
            delivered.append((client.client_id, corrected))
            _crash_and_rerun(engine, ledger_url, client, day, checkpoint, reached=True,
                             attempt=f"{seed}-{checkpoint}-corrected")
            _assert_invariants(engine, f"crash {checkpoint} seed {seed} corrected", delivered,
                               touched)
            again = support.run(engine, client, day, run_id=f"again-{seed}-{checkpoint}",
                                now=support.AFTER_LEASE)
            assert again.posted is not None and again.posted.status == "unchanged"
    _assert_invariants(engine, "crash: the whole ledger", delivered)


class _FileHandler:
    """Delivers by appending the event id to a file: what the remote side has seen."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def deliver(self, message: Message) -> str | None:
        with self.path.open("a") as out:
            out.write(message.event_id + "\n")
        return None

    def record(self, session: Session, message: Message, remote_ref: str | None) -> None:
        return None


def test_a_relay_killed_after_a_delivery_delivers_it_again_and_marks_it_once(
        engine: Engine, ledger_url: str, tmp_path: Path) -> None:
    client = support.activate(engine, "relay-crash")
    delivered: list[tuple[str, bytes]] = []
    for n in range(3):
        raw = support.closure(client, support.DAYS[n], number=n + 1,
                              faults=frozenset({"unbalanced"}))
        support.receive(engine, raw)
        delivered.append((client.client_id, raw))
        flagged = support.run(engine, client, support.DAYS[n], run_id=f"r{n}")
        assert flagged.outcome.kind == "flagged"
    seen = tmp_path / "delivered.txt"

    def work(child_engine: Engine) -> None:
        outbox.relay(child_engine, {"day.flagged": _FileHandler(seen)},
                     now=lambda: support.NOW)

    assert support.in_child(ledger_url, work, crash_at="relay_after_send") == -9
    tally.tried("crash", "relay_after_send")
    first = seen.read_text().split()
    assert len(first) == 1, "killed after its first delivery"
    # Before the lease runs out nothing is due; after it, everything goes out, once marked.
    later = support.NOW + outbox.LEASE + timedelta(seconds=1)
    report = outbox.relay(engine, {"day.flagged": _FileHandler(seen)}, now=lambda: later)
    assert report.sent == 3
    with session_scope(engine) as session:
        rows = [(row.event_id, row.status) for row in
                session.scalars(select(OutboxRow).where(OutboxRow.topic == "day.flagged"))]
    assert {status for _, status in rows} == {"sent"}
    delivered_ids = seen.read_text().split()
    assert set(delivered_ids) == {event for event, _ in rows}
    assert delivered_ids.count(first[0]) == 2, "at least once: the killed delivery is redone"
    _assert_invariants(engine, "relay crash", delivered)
