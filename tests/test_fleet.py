"""Selecting and summarizing many client-days, without Prefect."""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from toporder_sync import fleet
from toporder_sync.core import calendar
from toporder_sync.core.model import Territory
from toporder_sync.ledger.repository import ClientRecord

NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


def client(client_id: str, territory: Territory = Territory.METROPOLE) -> ClientRecord:
    return ClientRecord(client_id=client_id, name=client_id, integration_id="tpo_x",
                        activated_on=date(2026, 11, 1), territory=territory,
                        timezone="Europe/Paris", run_hour=6, deadline_hour=12, active=True,
                        account_overrides={}, created_at=NOW)


@pytest.mark.parametrize(("state_type", "name", "kind"), [
    ("COMPLETED", "Posted", "posted"),
    ("COMPLETED", "Posted with warnings", "posted"),
    ("COMPLETED", "Nothing to post", "nothing to post"),
    ("COMPLETED", "Waiting for closure", "waiting"),
    ("COMPLETED", "Completed", "crashed"),
    ("CANCELLED", "Already running", "already running"),
    ("CANCELLED", "Not run", "not run"),
    ("CANCELLED", "Cancelled", "crashed"),
    ("FAILED", "POS data error", "flagged"),
    ("FAILED", "Mapping error", "flagged"),
    ("FAILED", "Refused", "refused"),
    ("FAILED", "Missing closure", "missing"),
    ("FAILED", "Failed", "crashed"),
    ("CRASHED", "Crashed", "crashed"),
])
def test_each_final_state_counts_on_one_line(state_type: str, name: str, kind: str) -> None:
    assert fleet.outcome_of(state_type, name) == kind


def test_catch_up_plan_gives_each_client_its_days_in_date_order() -> None:
    plan = fleet.catch_up_plan([client("a"), client("b")], date(2026, 11, 1),
                               date(2026, 11, 3))
    days = (date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3))
    assert plan == [fleet.ClientDays("a", days), fleet.ClientDays("b", days)]
    with pytest.raises(ValueError, match="before it starts"):
        fleet.days_between(date(2026, 11, 2), date(2026, 11, 1))


def test_the_most_pressing_day_speaks_for_a_client_s_days() -> None:
    day = date(2026, 11, 27)
    posted = fleet.DayOutcome("a", day, "COMPLETED", "Posted", "entry n°1 posted")
    warned = fleet.DayOutcome("a", day, "COMPLETED", "Posted with warnings", "Z8 after Z6")
    waiting = fleet.DayOutcome("a", day, "COMPLETED", "Waiting for closure", "not yet")
    refused = fleet.DayOutcome("a", day, "FAILED", "Refused", "before activation")
    flagged = fleet.DayOutcome("a", day, "FAILED", "POS data error", "debit ≠ credit")
    crashed = fleet.DayOutcome("a", day, "FAILED", "Unexpected error", "KeyError")
    assert fleet.most_pressing([posted, warned, posted]) is warned
    assert fleet.most_pressing([posted, waiting]) is waiting
    assert fleet.most_pressing([refused, posted, flagged, waiting]) is flagged
    assert fleet.most_pressing([flagged, crashed, refused]) is crashed
    assert sorted(fleet._PRESSING) == sorted(fleet.OUTCOMES), "every outcome has its rank"
    later = fleet.not_run("a", date(2026, 11, 28), crashed)
    assert later.kind == "not run" and fleet.most_pressing([later, refused]) is refused
    assert later.message == ("2026-11-27 ended 'Unexpected error' first; "
                             "run the catch-up again from 2026-11-27")


def test_dispatch_plan_runs_a_due_client_that_also_waits_once() -> None:
    day = date(2026, 11, 27)
    plan = fleet.dispatch_plan([client("a"), client("b")], [client("b"), client("c")], day)
    assert [(p.client_id, p.business_date) for p in plan] == [("a", day), ("b", day), ("c", day)]


def test_summary_counts_flagged_days_by_state_name() -> None:
    day = date(2026, 11, 27)
    outcomes = [
        fleet.DayOutcome("a", day, "COMPLETED", "Posted", "entry n°1 posted"),
        fleet.DayOutcome("b", day, "FAILED", "POS data error", "debit | credit"),
        fleet.DayOutcome("c", day, "FAILED", "Mapping error", "unknown method"),
        fleet.DayOutcome("d", day, "FAILED", "POS data error", "19.6 %"),
        fleet.DayOutcome("e", day, "COMPLETED", "Waiting for closure", "not yet"),
    ]
    summary = fleet.summarize(outcomes)
    assert summary.line() == ("5 client-days: 1 posted, 3 flagged (1 Mapping error, "
                              "2 POS data error), 1 waiting")
    assert summary.crashed == 0
    text = summary.markdown("Catch-up")
    assert "| flagged: POS data error | 2 |" in text and "| refused | 0 |" in text
    assert "| b | 2026-11-27 | POS data error | debit / credit |" in text
    assert "| a | 2026-11-27 |" not in text


@pytest.mark.parametrize(("now", "waiting"), [
    (datetime(2026, 11, 28, 10, 59, tzinfo=UTC), True),  # 11:59 in Paris
    (datetime(2026, 11, 28, 11, 0, tzinfo=UTC), False),  # noon in Paris: the deadline
])
def test_a_closure_is_awaited_until_the_deadline_hour_the_next_day(now: datetime,
                                                                   waiting: bool) -> None:
    record = replace(client("a"), deadline_hour=12)
    assert calendar.awaiting_closure(date(2026, 11, 27), timezone=record.timezone,
                                     deadline_hour=record.deadline_hour, now=now) is waiting


@pytest.mark.parametrize(("state", "attempts", "rerun"), [
    ("waiting", 1, True),
    ("received", 1, True),  # the closure came after a run found none
    ("received", 0, False),  # never run: it runs at its own hour
    ("posted", 1, False),
    ("missing", 3, False),
])
def test_a_day_is_run_again_while_its_closure_is_awaited(state: str, attempts: int,
                                                         rerun: bool) -> None:
    assert fleet.awaits_rerun(state, attempts) is rerun


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_shards_split_the_fleet_into_disjoint_parts_that_cover_it(shards: int) -> None:
    clients = [f"client-{n:04d}" for n in range(1_000)]
    parts = [{c for c in clients if fleet.in_shard(c, shard, shards)} for shard in range(shards)]
    assert sum(len(p) for p in parts) == len(clients)
    assert set().union(*parts) == set(clients)
    # Roughly even: no shard holds more than twice its fair share.
    assert max(len(p) for p in parts) < 2 * len(clients) / shards
    # Stable across processes: CRC-32, not the salted hash().
    assert fleet.in_shard("client-0000", zlib.crc32(b"client-0000") % shards, shards)


def test_a_shard_outside_the_split_is_refused() -> None:
    with pytest.raises(ValueError, match=r"shard 2 is not one of 0\.\.1"):
        fleet.in_shard("a", 2, 2)
