"""The schedules plan: desired slots from the registry, diffed against the deployment's."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from toporder_sync.core.errors import ConfigurationError
from toporder_sync.schedules import (
    ExistingSchedule,
    Plan,
    Slot,
    desired_slots,
    plan,
    sweep_hours,
)

PARIS6, PARIS7 = Slot("Europe/Paris", 6), Slot("Europe/Paris", 7)
REUNION6 = Slot("Indian/Reunion", 6)


def on_server(n: int, slot: Slot, *, slug: str | None = "same", active: bool = True,
              **drift: Any) -> ExistingSchedule:
    return ExistingSchedule(
        schedule_id=UUID(int=n), slug=slot.slug if slug == "same" else slug,
        cron=drift.get("cron", slot.cron), timezone=drift.get("timezone", slot.timezone),
        parameters=drift.get("parameters", slot.parameters), active=active)


def test_a_slot_is_a_daily_cron_in_its_timezone_with_its_own_parameters() -> None:
    assert (PARIS6.slug, PARIS6.cron, PARIS6.parameters) == (
        "Europe/Paris@06", "0 6 * * *", {"timezone": "Europe/Paris", "hour": 6})


def test_desired_slots_are_distinct_and_sorted() -> None:
    pairs = [("Indian/Reunion", 6), ("Europe/Paris", 7), ("Europe/Paris", 6),
             ("Europe/Paris", 6)]
    assert desired_slots(pairs) == (PARIS6, PARIS7, REUNION6)


@pytest.mark.parametrize(("pair", "message"), [
    (("Europe/Pariss", 6), "unknown timezone 'Europe/Pariss'"),
    (("../etc/passwd", 6), "unknown timezone"),
    (("Europe/Paris", 24), "run hour 24"),
    (("Europe/Paris", -1), "run hour -1"),
])
def test_a_bad_timezone_or_hour_is_refused(pair: tuple[str, int], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        desired_slots([pair])


@pytest.mark.parametrize(("clients", "expected"), [
    ([], set()),
    ([("Europe/Paris", 6, 9)], {("Europe/Paris", 7), ("Europe/Paris", 8), ("Europe/Paris", 9)}),
    ([("Europe/Paris", 6, 8), ("Europe/Paris", 7, 8)], {("Europe/Paris", 7), ("Europe/Paris", 8)}),
    ([("Europe/Paris", 6, 7), ("Indian/Reunion", 6, 7)],
     {("Europe/Paris", 7), ("Indian/Reunion", 7)}),
    ([("Europe/Paris", 6, 6), ("Europe/Paris", 9, 3)], set()),
    ([("Europe/Paris", 22, 23)], {("Europe/Paris", 23)}),
], ids=["none", "hourly until the deadline", "overlapping windows", "per timezone",
        "deadline at or before the run", "late evening"])
def test_sweeps_run_each_hour_after_a_run_until_its_deadline(
        clients: list[tuple[str, int, int]], expected: set[tuple[str, int]]) -> None:
    assert sweep_hours(clients) == expected


p6, p7 = on_server(1, PARIS6), on_server(2, PARIS7)
paused6 = on_server(3, PARIS6, active=False)
wrong_hour = on_server(4, PARIS6, cron="0 5 * * *")
wrong_zone = on_server(5, PARIS6, timezone="UTC")
wrong_params = on_server(6, PARIS6, parameters={"timezone": "Europe/Paris", "hour": 7})
by_hand = on_server(7, PARIS6, slug=None)
by_hand_other = on_server(8, PARIS7, slug=None)
foreign = on_server(9, PARIS6, slug="someone-else")

CASES: list[tuple[str, list[Slot], list[ExistingSchedule], Plan]] = [
    ("nothing anywhere", [], [], Plan()),
    ("first sync creates all", [PARIS6, REUNION6], [], Plan(create=(PARIS6, REUNION6))),
    ("second sync changes nothing", [PARIS6, PARIS7], [p6, p7],
     Plan(keep=((p6, PARIS6), (p7, PARIS7)))),
    ("client moved to a new hour", [PARIS7], [p6], Plan(create=(PARIS7,), delete=(p6,))),
    ("last client of a slot deactivated", [PARIS7], [p6, p7],
     Plan(delete=(p6,), keep=((p7, PARIS7),))),
    ("no active client left", [], [p6, p7], Plan(delete=(p6, p7))),
    ("a paused slot stays paused", [PARIS6], [paused6], Plan(keep=((paused6, PARIS6),))),
    ("cron edited by hand is corrected", [PARIS6], [wrong_hour],
     Plan(update=((wrong_hour, PARIS6),))),
    ("timezone edited by hand is corrected", [PARIS6], [wrong_zone],
     Plan(update=((wrong_zone, PARIS6),))),
    ("parameters edited by hand are corrected", [PARIS6], [wrong_params],
     Plan(update=((wrong_params, PARIS6),))),
    ("a hand-made schedule of the slot is adopted", [PARIS6], [by_hand],
     Plan(update=((by_hand, PARIS6),))),
    ("a hand-made schedule of another slot is deleted", [PARIS6], [by_hand_other],
     Plan(create=(PARIS6,), delete=(by_hand_other,))),
    ("a schedule with another slug is deleted", [PARIS6], [foreign],
     Plan(create=(PARIS6,), delete=(foreign,))),
    ("a slot fired twice keeps one schedule", [PARIS6], [p6, by_hand],
     Plan(delete=(by_hand,), keep=((p6, PARIS6),))),
]


@pytest.mark.parametrize(("desired", "existing", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_plan(desired: list[Slot], existing: list[ExistingSchedule], expected: Plan) -> None:
    assert plan(desired, existing) == expected


@pytest.mark.parametrize(("desired", "existing"), [c[1:3] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_applying_a_plan_leaves_nothing_to_do(desired: list[Slot],
                                              existing: list[ExistingSchedule]) -> None:
    done = plan(desired, existing)
    after = [on_server(100 + i, s) for i, s in enumerate(done.create)]
    after += [ExistingSchedule(e.schedule_id, s.slug, s.cron, s.timezone, s.parameters, e.active)
              for e, s in done.update]
    after += [e for e, _ in done.keep]
    again = plan(desired, after)
    assert again.changes == 0 and len(again.keep) == len(desired)


def test_a_sharded_hour_is_one_schedule_per_shard_with_its_share_in_its_parameters() -> None:
    slots = desired_slots([("Europe/Paris", 6)], shards=3)
    assert [s.slug for s in slots] == ["Europe/Paris@06#0/3", "Europe/Paris@06#1/3",
                                       "Europe/Paris@06#2/3"]
    assert {s.cron for s in slots} == {"0 6 * * *"}
    assert [s.parameters for s in slots] == [
        {"timezone": "Europe/Paris", "hour": 6, "shard": n, "shards": 3} for n in range(3)]
    # Going from one shard to three replaces the hour's schedule by three.
    change = plan(slots, [on_server(1, PARIS6)])
    assert change.create == slots and [e.slug for e in change.delete] == ["Europe/Paris@06"]
    with pytest.raises(ConfigurationError, match="shards must be at least 1"):
        desired_slots([("Europe/Paris", 6)], shards=0)
