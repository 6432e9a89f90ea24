"""Selecting and summarizing many client-days, without Prefect."""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from toporder_sync import fleet
from toporder_sync.core import calendar
from toporder_sync.core.model import Territory
from toporder_sync.ledger.clients import ClientRecord
from toporder_sync.outcome import PRESSING, Outcome, Verdict, Who, fleet_verdict

NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


def client(client_id: str, territory: Territory = Territory.METROPOLE) -> ClientRecord:
    return ClientRecord(client_id=client_id, name=client_id, integration_id="tpo_x",
                        activated_on=date(2026, 11, 1), territory=territory,
                        timezone="Europe/Paris", run_hour=6, deadline_hour=12, active=True,
                        account_overrides={}, created_at=NOW)


# The one table every state name, colour, exit code and summary line is derived from.
@pytest.mark.parametrize(("outcome", "state_type", "name", "who", "exit_code", "kind"), [
    (Outcome.POSTED, "COMPLETED", "Posted", Who.NOBODY, 0, "posted"),
    (Outcome.POSTED_WITH_WARNINGS, "COMPLETED", "Posted with warnings", Who.NOBODY, 0,
     "posted"),
    (Outcome.NOTHING_TO_POST, "COMPLETED", "Nothing to post", Who.NOBODY, 0,
     "nothing to post"),
    (Outcome.WAITING, "CANCELLED", "Waiting for closure", Who.NOBODY, 5, "waiting"),
    (Outcome.ALREADY_RUNNING, "CANCELLED", "Already running", Who.NOBODY, 6,
     "already running"),
    (Outcome.REFUSED, "CANCELLED", "Refused", Who.NOBODY, 3, "refused"),
    (Outcome.NOT_RUN, "CANCELLED", "Not run", Who.DATA_TEAM, 7, "not run"),
    (Outcome.POS_DATA_ERROR, "FAILED", "POS data error", Who.TOPORDER, 1, "flagged"),
    (Outcome.MAPPING_ERROR, "FAILED", "Mapping error", Who.ACCOUNTANT, 1, "flagged"),
    (Outcome.MISSING, "FAILED", "Missing closure", Who.TOPORDER, 4, "missing"),
    (Outcome.STILL_UNAVAILABLE, "FAILED", "Still unavailable", Who.DATA_TEAM, 8, "error"),
    (Outcome.UNEXPECTED_ERROR, "FAILED", "Unexpected error", Who.DATA_TEAM, 7, "error"),
])
def test_each_outcome_has_one_state_one_exit_code_and_one_summary_line(
        outcome: Outcome, state_type: str, name: str, who: Who, exit_code: int,
        kind: str) -> None:
    assert (outcome.state_type, outcome.state_name, outcome.who, outcome.exit_code,
            outcome.kind) == (state_type, name, who, exit_code, kind)
    # Green only when nobody has anything to do; red exactly when somebody must act.
    assert outcome.done is (state_type == "COMPLETED")
    assert (state_type == "FAILED") is (outcome.needs_action and outcome is not Outcome.NOT_RUN)
    assert outcome.tags == (("needs-action", who.tag) if who is not Who.NOBODY else ())


def test_each_outcome_has_a_state_of_its_own() -> None:
    # A person tells the outcomes apart by their state in the UI; the code never needs to:
    # a run's outcome travels as the value (``tasks.daily.outcome_of_run``).
    states = [(outcome.state_type, outcome.state_name) for outcome in Outcome]
    assert len(set(states)) == len(states)


@pytest.mark.parametrize(("state", "category", "warned", "outcome"), [
    ("posted", None, False, Outcome.POSTED),
    ("posted", None, True, Outcome.POSTED_WITH_WARNINGS),
    ("empty", None, False, Outcome.NOTHING_TO_POST),
    ("flagged", "pos", False, Outcome.POS_DATA_ERROR),
    ("flagged", "ledger", False, Outcome.MAPPING_ERROR),
    ("missing", "pos", False, Outcome.MISSING),
    ("waiting", None, False, Outcome.WAITING),
    ("refused", None, False, Outcome.REFUSED),
    ("received", None, False, None),
    ("not_run", None, False, None),
])
def test_a_day_in_the_ledger_reads_as_the_outcome_of_its_last_run(
        state: str, category: str | None, warned: bool, outcome: Outcome | None) -> None:
    assert Outcome.of_day(state, category, warned) is outcome


@pytest.mark.parametrize(("outcomes", "verdict"), [
    ([Outcome.POSTED, Outcome.POSTED_WITH_WARNINGS, Outcome.NOTHING_TO_POST],
     ("COMPLETED", "All posted")),
    ([Outcome.POSTED, Outcome.WAITING, Outcome.WAITING, Outcome.REFUSED],
     ("CANCELLED", "1 refused, 2 waiting")),
    ([Outcome.POSTED, Outcome.POS_DATA_ERROR, Outcome.MISSING, Outcome.POS_DATA_ERROR,
      Outcome.MAPPING_ERROR, Outcome.WAITING],
     ("FAILED", "3 for Toporder, 1 mapping")),
    ([Outcome.MAPPING_ERROR, Outcome.UNEXPECTED_ERROR, Outcome.NOT_RUN],
     ("FAILED", "1 mapping, 2 for the data team")),
])
def test_a_fleet_run_is_named_after_the_days_each_one_must_act_on(
        outcomes: list[Outcome], verdict: tuple[str, str]) -> None:
    assert fleet_verdict(outcomes) == Verdict(*verdict)


def test_catch_up_plan_gives_each_client_its_days_in_date_order() -> None:
    plan = fleet.catch_up_plan([client("a"), client("b", Territory.DOM)], date(2026, 11, 1),
                               date(2026, 11, 3))
    days = (date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3))
    assert plan == [fleet.ClientDays("a", "metropole", days),
                    fleet.ClientDays("b", "dom", days)]
    with pytest.raises(ValueError, match="before it starts"):
        fleet.days_between(date(2026, 11, 2), date(2026, 11, 1))


def test_the_most_pressing_day_speaks_for_a_client_s_days() -> None:
    day = date(2026, 11, 27)
    posted = fleet.DayOutcome("a", day, Outcome.POSTED, "entry n°1 posted")
    warned = fleet.DayOutcome("a", day, Outcome.POSTED_WITH_WARNINGS, "Z8 after Z6")
    waiting = fleet.DayOutcome("a", day, Outcome.WAITING, "not yet")
    refused = fleet.DayOutcome("a", day, Outcome.REFUSED, "before activation")
    flagged = fleet.DayOutcome("a", day, Outcome.POS_DATA_ERROR, "debit ≠ credit")
    crashed = fleet.DayOutcome("a", day, Outcome.UNEXPECTED_ERROR, "KeyError")
    assert fleet.most_pressing([posted, warned, posted]) is warned
    assert fleet.most_pressing([posted, waiting]) is waiting
    assert fleet.most_pressing([refused, posted, flagged, waiting]) is flagged
    assert fleet.most_pressing([flagged, crashed, refused]) is crashed
    assert sorted(PRESSING, key=lambda o: o.name) == sorted(Outcome, key=lambda o: o.name), \
        "every outcome has its rank"
    later = fleet.not_run("a", date(2026, 11, 28), crashed)
    assert later.kind == "not run" and fleet.most_pressing([later, refused]) is later
    assert later.message == ("2026-11-27 ended 'Unexpected error' first; "
                             "run the catch-up again from 2026-11-27")


def test_dispatch_plan_runs_a_due_client_that_also_waits_once() -> None:
    day = date(2026, 11, 27)
    plan = fleet.dispatch_plan([client("a"), client("b")], [client("b"), client("c")], day)
    assert [(p.client_id, p.business_date) for p in plan] == [("a", day), ("b", day), ("c", day)]


def test_summary_counts_flagged_days_by_state_name() -> None:
    day = date(2026, 11, 27)
    outcomes = [
        fleet.DayOutcome("a", day, Outcome.POSTED, "entry n°1 posted"),
        fleet.DayOutcome("b", day, Outcome.POS_DATA_ERROR, "debit | credit"),
        fleet.DayOutcome("c", day, Outcome.MAPPING_ERROR, "unknown method"),
        fleet.DayOutcome("d", day, Outcome.POS_DATA_ERROR, "19.6 %"),
        fleet.DayOutcome("e", day, Outcome.WAITING, "not yet"),
    ]
    summary = fleet.summarize(outcomes)
    assert summary.line() == ("5 client-days: 1 posted, 3 flagged (1 Mapping error, "
                              "2 POS data error), 1 waiting")
    assert summary.errors == 0
    assert summary.verdict == Verdict("FAILED", "2 for Toporder, 1 mapping")
    text = summary.markdown("Catch-up")
    assert text.startswith("# Catch-up: 2 for Toporder, 1 mapping\n")
    assert "| flagged: POS data error | 2 |" in text and "| refused | 0 |" in text
    assert "| b | 2026-11-27 | POS data error | Toporder | debit / credit |" in text
    assert "| e | 2026-11-27 | Waiting for closure | nobody | not yet |" in text
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
